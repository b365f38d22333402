"""The client's transport: pooled keep-alive connections, JSON in and out.

Under ``axon.client.Client`` (the one client) and, alone, under what relays or times raw
answers: a node forwarding to the leader, the overview's fan-out, the launcher's proxy and
watch relay, snapshot downloads and the benchmark's load generator.
Works with gevent (the node monkey-patches sockets) and without.

Addresses stay "host:port".  HTTPS is chosen per address by an "https://" prefix
("http://" is accepted too), or for every address when the pool has an SSL context:
a cluster is all-https or all-http, so a node that serves https talks https to its peers.
"""
from __future__ import annotations

import errno
import http.client
import json
import select
import ssl
import threading
from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import quote

from axon.config import parse_addr
from axon.config import ConfigError


class ClientError(Exception):
    """A request failed: transport error (status 0) or an error answer from the server."""

    def __init__(self, message: str, status: int = 0, body: Any = None, unsent: bool = False) -> None:
        """``unsent``: the request never reached the server (e.g. connection refused), so sending
        it again elsewhere cannot apply it twice."""
        super().__init__(message)
        self.status = status
        self.body = body
        self.unsent = unsent


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            raise ClientError(f"server sent invalid JSON (HTTP {self.status})", self.status) from None


_RETRYABLE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError,
              http.client.BadStatusLine)
# Only these may be sent twice: a PUT/DELETE/POST the server received before the connection
# broke may have been applied, and repeating it (a CAS above all) would change its outcome.
_SAFE_TO_RESEND = ("GET", "HEAD")


HTTPS = "https://"
HTTP = "http://"


def split_scheme(addr: str) -> tuple[str | None, str]:
    """'https://h:p' -> ('https', 'h:p'); 'h:p' -> (None, 'h:p'); a trailing '/' is dropped."""
    for scheme, prefix in (("https", HTTPS), ("http", HTTP)):
        if addr[:len(prefix)].lower() == prefix:
            return scheme, addr[len(prefix):].rstrip("/")
    return None, addr


def tls_client_context(cacert: str | None = None, cert_file: str | None = None,
                       key_file: str | None = None) -> ssl.SSLContext:
    """A verifying client context: ``cacert`` (or the system's CAs), and our certificate if given."""
    try:
        ctx = ssl.create_default_context(cafile=cacert)
        if cert_file and key_file:
            ctx.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load TLS material ({cacert or 'system CAs'}): {exc}") from None
    return ctx


class HttpPool:
    """Keep-alive connections per address ('host:port', or 'https://host:port').

    ``ssl_context``: speak HTTPS to every address (a node in an https cluster);
    ``cacert``: the CA file trusted for "https://" addresses when there is no context.
    """

    def __init__(self, timeout: float = 10.0, max_idle: int = 64,
                 ssl_context: ssl.SSLContext | None = None, cacert: str | None = None) -> None:
        self.timeout = timeout
        self.max_idle = max_idle
        self.ssl_context = ssl_context
        self.cacert = cacert
        self.https = ssl_context is not None
        self._idle: dict[str, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()

    def request(self, method: str, addr: str, path: str, body: bytes | None = None,
                headers: Mapping[str, str] | None = None, timeout: float | None = None) -> Response:
        hdrs = {"Content-Type": "application/json"} if body is not None else {}
        hdrs.update(headers or {})
        for attempt in (0, 1):
            conn, reused = self._get(addr, timeout)
            try:
                conn.request(method, path, body=body, headers=hdrs)
                resp = conn.getresponse()
                data = resp.read()
            except _RETRYABLE as exc:
                conn.close()
                if reused and attempt == 0 and method in _SAFE_TO_RESEND:
                    continue   # the server closed an idle keep-alive connection; try a fresh one
                raise ClientError(f"{addr}: connection lost ({exc.__class__.__name__})") from None
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                raise ClientError(f"{addr}: {_describe(exc)}", unsent=_unsent(exc)) from None
            self._put(addr, conn, resp)
            return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
        raise AssertionError("unreachable")

    def _get(self, addr: str, timeout: float | None) -> tuple[http.client.HTTPConnection, bool]:
        """An idle pooled connection (True) or a new one (False)."""
        conn = None
        while True:
            with self._lock:
                idle = self._idle.get(addr)
                conn = idle.pop() if idle else None
            if conn is None or not _dropped(conn):
                break
            conn.close()   # closed by the server while idle (e.g. it restarted): never reuse it
        if conn is not None:
            conn.timeout = timeout or self.timeout
            if conn.sock is not None:
                conn.sock.settimeout(conn.timeout)
            return conn, True
        return self.new_connection(addr, timeout), False

    def new_connection(self, addr: str, timeout: float | None = None) -> http.client.HTTPConnection:
        """A connection of its own (not pooled, not connected yet), e.g. for a streamed answer."""
        scheme, hostport = split_scheme(addr)
        try:
            host, port = parse_addr(hostport)
        except ConfigError as exc:
            raise ClientError(str(exc)) from None
        if scheme == "https" or (scheme is None and self.https):
            try:
                context = self._context()
            except ConfigError as exc:
                raise ClientError(str(exc)) from None
            return http.client.HTTPSConnection(host, port, timeout=timeout or self.timeout, context=context)
        return http.client.HTTPConnection(host, port, timeout=timeout or self.timeout)

    def _context(self) -> ssl.SSLContext:
        if self.ssl_context is None:   # made on first use: most pools never speak https
            self.ssl_context = tls_client_context(self.cacert)
        return self.ssl_context

    def _put(self, addr: str, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse) -> None:
        if resp.will_close:
            conn.close()
            return
        with self._lock:
            idle = self._idle.setdefault(addr, [])
            if len(idle) < self.max_idle:
                idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            conns = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
        for conn in conns:
            conn.close()


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """Whether an idle connection is unusable: readable means EOF (or stray bytes) from the server.

    poll, not select: select() cannot take a descriptor past 1023, and a process holding many
    connections (a node forwarding under load) would then drop every pooled connection.
    """
    if conn.sock is None:
        return True
    try:
        poller = select.poll()
        poller.register(conn.sock, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True


def _unsent(exc: Exception) -> bool:
    """Whether a failure happened before any byte of the request could reach the server."""
    return isinstance(exc, (ConnectionRefusedError, ssl.SSLCertVerificationError)) or \
        (isinstance(exc, OSError) and exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH))


def _describe(exc: Exception) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError) or "timed out" in str(exc):
        return "timed out"
    return getattr(exc, "strerror", None) or str(exc) or exc.__class__.__name__


def kv_path(key: str) -> str:
    return "/kv/" + quote(key, safe="")

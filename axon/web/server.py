"""The HTTP server edge: gevent connections speaking ``httpwire``, one handler call per request.

pywsgi parsed every request through ``email``'s header machinery and the WSGI environ;
that was over a third of a busy leader's CPU.  Here a connection's greenlet feeds the
pure parser and hands each ``Request`` to a handler returning a ``Response``; WSGI
applications (bottle) plug in through ``wsgi_handler``.
"""
from __future__ import annotations

import io
import json
import logging
import socket
import sys
from typing import Any, Callable, Iterable
from urllib.parse import unquote

from gevent.server import StreamServer

from axon.web.wire import CONTINUE, HttpError, Request, RequestParser, Response, format_response

log = logging.getLogger("axon.web.app")

Handler = Callable[[Request], Response]
RECV_SIZE = 64 * 1024
MAX_DISCARD = 64 << 20        # an oversized body is read and dropped up to this, then we close


def json_response(status: int, body: Any, headers: Iterable[tuple[str, str]] = ()) -> Response:
    return Response(status, [("Content-Type", "application/json"), *headers], json.dumps(body).encode())


class HttpServer(StreamServer):
    """Serves ``handler`` on a bound listener; TCP_NODELAY, keep-alive, pipelining."""

    def __init__(self, listener: socket.socket, handler: Handler, max_body: int) -> None:
        super().__init__(listener, self._connection)
        self.handler = handler
        self.max_body = max_body

    def _connection(self, sock: socket.socket, address: Any) -> None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass   # not TCP (tests may hand us a unix socket)
        parser = RequestParser(self.max_body)
        remote = address[0] if isinstance(address, tuple) else str(address)
        answered = False
        try:
            while True:
                try:
                    req = parser.next_request()
                except HttpError as exc:
                    self._refuse(sock, exc)
                    return
                if req is None:
                    if parser.expects_continue:
                        parser.continue_sent = True
                        sock.sendall(CONTINUE)
                    if answered:
                        _wait_readable(sock)
                        answered = False
                    data = sock.recv(RECV_SIZE)
                    if not data:
                        return
                    parser.feed(data)
                    continue
                req.remote = remote
                data, keep_alive = self._answer(req)
                _send(sock, data)
                if not keep_alive:
                    return
                answered = True
        except OSError:
            return   # the client went away or idled out: nothing to answer

    def _answer(self, req: Request) -> tuple[bytes, bool]:
        """The handler's response to ``req`` as bytes, and whether the connection stays open."""
        head_only = req.method == "HEAD"
        try:
            resp = self.handler(req)
            keep_alive = req.keep_alive and not _says_close(resp)
            return format_response(resp.status, resp.headers, resp.body, keep_alive, head_only,
                                   req.version), keep_alive
        except Exception:   # a bug, raised or in an answer we cannot send: log it, answer JSON, keep serving
            log.exception("unhandled error in %s %s", req.method, req.path)
            resp = json_response(500, {"error": "internal error"})
            return format_response(resp.status, resp.headers, resp.body, req.keep_alive, head_only,
                                   req.version), req.keep_alive

    def _refuse(self, sock: socket.socket, exc: HttpError) -> None:
        """Answer a request we cannot read, drop what the client still sends of it, close."""
        sock.sendall(format_response(exc.status, [("Content-Type", "application/json")],
                                     json.dumps({"error": exc.message}).encode(), keep_alive=False))
        left = exc.discard if exc.discard <= MAX_DISCARD else 0
        sock.settimeout(5.0)
        while left > 0:   # so the client reads our answer instead of a reset
            data = sock.recv(min(left, RECV_SIZE))
            if not data:
                break
            left -= len(data)


def _send(sock: socket.socket, data: bytes) -> None:
    """sendall, minus gevent's per-call getsockopt and chunking for the usual small answer."""
    sent = sock.send(data)
    if sent < len(data):
        sock.sendall(memoryview(data)[sent:])


def _wait_readable(sock: socket.socket) -> None:
    """Park until the client sends again, instead of a recv that fails with EAGAIN first.

    After an answer the next request is not there yet; a plain recv would cost a syscall
    and an exception before gevent waits.  The socket's own read watcher is gevent's
    internal API, so fall back to a plain recv when it is missing.
    """
    wait = getattr(sock, "_wait", None)
    event = getattr(sock, "_read_event", None)
    if wait is not None and event is not None:
        wait(event)


def _says_close(resp: Response) -> bool:
    return any(k.lower() == "connection" and v.lower() == "close" for k, v in resp.headers)


def wsgi_handler(app: Callable, server_name: str = "axon") -> Handler:
    """A WSGI application (bottle) as a Handler; answers are collected, not streamed."""
    def handle(req: Request) -> Response:
        started: list = []

        def start_response(status: str, headers: list, exc_info: Any = None) -> Callable:
            started[:] = [status, headers]
            return chunks.append

        chunks: list[bytes] = []
        result = app(_environ(req, server_name), start_response)
        try:
            chunks.extend(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        status, headers = started
        return Response(int(status.split(" ", 1)[0]), list(headers), b"".join(chunks))
    return handle


_NOT_IN_ENVIRON = frozenset(("content-type", "content-length", "transfer-encoding"))


def _environ(req: Request, server_name: str) -> dict:
    environ = {
        "REQUEST_METHOD": req.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote(req.path, encoding="latin-1"),   # PEP 3333: decoded, as latin-1
        "QUERY_STRING": req.query,
        "SERVER_NAME": server_name,
        "SERVER_PORT": "0",
        "SERVER_PROTOCOL": req.version,
        "REMOTE_ADDR": req.remote,
        "CONTENT_LENGTH": str(len(req.body)),
        "CONTENT_TYPE": req.headers.get("content-type", ""),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(req.body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for name, value in req.headers.items():
        # Transfer-Encoding is done with: the body is decoded and CONTENT_LENGTH is its length
        # (bottle would try to de-chunk it again).  A name with '_' would pose as the dashed
        # one (X_Forwarded vs X-Forwarded both become HTTP_X_FORWARDED): dropped, as pywsgi does.
        if name not in _NOT_IN_ENVIRON and "_" not in name:
            environ["HTTP_" + name.upper().replace("-", "_")] = value
    return environ

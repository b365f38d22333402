"""Browser safety: what a web page on another origin may not make a node (or the launcher) do.

A browser lets any page send a "simple" POST (a form, or a no-cors ``text/plain`` fetch)
to any address, the user's loopback included, and does not ask the server first.  So for
the state-changing methods, a request whose ``Origin`` is neither the server's own origin
nor an allowed one is refused (403), and so is one a browser marks ``Sec-Fetch-Site:
cross-site`` or ``same-site`` (another port of localhost is the same site, not the same
origin).  Requests without those headers — curl, the CLI, peers forwarding — are not
browsers' and pass.

DNS rebinding makes an attacker's name resolve to 127.0.0.1: the page is then "same
origin" with the node.  Its requests still say ``Host: attacker.example``, so a server
bound to a loopback address answers only Host names that are loopback or its own bind
address (421), for every method: reads too.

``judge`` is the decision, pure; ``BrowserGuard`` the middleware around it.
"""
from __future__ import annotations

from typing import Iterable, Mapping

from axon.address import is_loopback
from axon.config import ConfigError, parse_addr
from axon.web.middleware import Handler
from axon.web.replies import json_reply
from axon.web.wire import Request, Response

UNSAFE_METHODS = frozenset(("POST", "PUT", "DELETE", "PATCH"))
LOOPBACK_NAMES = frozenset(("localhost", "127.0.0.1", "[::1]", "::1"))
CROSS_ORIGIN = "cross-origin request refused"
_FETCH_SITES_REFUSED = frozenset(("cross-site", "same-site"))
_HOST_CACHE_SIZE = 64   # Host values judged so far (a client could send endless new ones)


def host_name(host_header: str) -> str:
    """The name of a Host header without its port, lower-case: '[::1]:7000' -> '[::1]'."""
    host = host_header.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[:end + 1] if end > 0 else host
    return host.rpartition(":")[0] if ":" in host else host


def allowed_hosts(bind_host: str) -> frozenset[str] | None:
    """Host names a server bound to ``bind_host`` answers; None: any (not a loopback bind)."""
    if not is_loopback(bind_host):
        return None
    bound = bind_host.lower()
    names = set(LOOPBACK_NAMES) | {bound}
    if ":" in bound and not bound.startswith("["):
        names.add(f"[{bound}]")
    return frozenset(names)


def judge(method: str, headers: Mapping[str, str], scheme: str,
          hosts: frozenset[str] | None, origins: frozenset[str]) -> tuple[int, str] | None:
    """None when the request may go on; else the (status, message) to refuse it with.

    ``hosts``: the Host names answered (None: any); ``origins``: the allowed origins
    besides the server's own (``scheme://<Host>``).
    """
    host = headers.get("host")
    if hosts is not None and host is not None and host_name(host) not in hosts:
        return 421, f"this server does not answer for host {host_name(host)!r}"
    if method not in UNSAFE_METHODS:
        return None
    origin = headers.get("origin")
    if origin is not None:
        origin = origin.strip().lower()
        if origin in origins or (host is not None and origin == f"{scheme}://{host.strip().lower()}"):
            return None
        return 403, CROSS_ORIGIN
    if headers.get("sec-fetch-site", "").strip().lower() in _FETCH_SITES_REFUSED:
        return 403, CROSS_ORIGIN
    return None


class BrowserGuard:
    """The middleware: refuses what ``judge`` refuses, as JSON ``{"error": ...}``."""

    def __init__(self, listen: str, https: bool = False, allowed_origins: Iterable[str] = ()) -> None:
        try:
            bind_host = parse_addr(listen)[0]
        except ConfigError:
            bind_host = listen
        self.scheme = "https" if https else "http"
        self.hosts = allowed_hosts(bind_host)
        self.origins = frozenset(o.strip().lower().rstrip("/") for o in allowed_origins)
        self._good_hosts: dict[str, bool] = {}   # Host header -> answered (the hot path's one lookup)

    def __call__(self, req: Request, handler: Handler) -> Response:
        headers = req.headers
        # the hot path (curl, the CLI, peers: no browser headers) is one cached Host lookup and
        # two membership tests; only a refused Host or a browser's write goes through judge
        if self._host_ok(headers.get("host")) and not (
                req.method in UNSAFE_METHODS and ("origin" in headers or "sec-fetch-site" in headers)):
            return handler(req)
        refusal = judge(req.method, headers, self.scheme, self.hosts, self.origins)
        if refusal is not None:
            status, message = refusal
            return json_reply(status, {"error": message})
        return handler(req)

    def _host_ok(self, host: str | None) -> bool:
        if self.hosts is None or host is None:
            return True
        known = self._good_hosts.get(host)
        if known is None:
            known = host_name(host) in self.hosts
            if len(self._good_hosts) < _HOST_CACHE_SIZE:
                self._good_hosts[host] = known
        return known

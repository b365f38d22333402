"""``GET /watch`` through the launcher: a node's event stream passed on as it comes.

The launcher's other proxied calls read a node's whole answer first (axon/launcher/api.py);
a watch never ends, so it gets a pass-through of its own: the first running node that
answers serves it, its bytes go to the browser piece by piece, and the node connection is
closed as soon as the browser leaves (the server interrupts the wait and closes the relay).
The number of relays open at once is bounded, and a node silent for longer than its
progress interval allows is taken for gone (the browser resumes with Last-Event-ID).
"""
from __future__ import annotations

import http.client
from typing import TYPE_CHECKING, Callable, Iterator

from axon.api.errors import Unavailable
from axon.client.http import ClientError
from axon.web import params
from axon.web.replies import JSON
from axon.web.sse import CONTENT_TYPE
from axon.web.wire import Request, Response

if TYPE_CHECKING:
    from axon.launcher.supervisor import Supervisor

MAX_RELAYS = 64                 # watches passed through at once; past it, 503 (a dashboard holds one)
SILENCE_TIMEOUT = 30.0          # a node sends progress at least every 10 s: quiet this long, it is gone
READ_PIECE = 65536
RELAYED_HEADERS = ("Authorization", "Last-Event-ID")
KEPT_HEADERS = ("x-axon-start-revision", "retry-after")


class _Relay:
    """One node's /watch answer as an iterable of bytes; ``close()`` frees the node connection."""

    def __init__(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse,
                 release: Callable[[], None]) -> None:
        self._conn, self._resp, self._release = conn, resp, release

    def __iter__(self) -> Iterator[bytes]:
        while True:
            try:
                piece = self._resp.read1(READ_PIECE)
            except (OSError, ValueError, http.client.HTTPException):
                return   # the node went or fell silent: the browser resumes elsewhere
            if not piece:
                return
            yield piece

    def close(self) -> None:
        if self._release is not None:
            self._conn.close()
            self._release()
            self._release = None


def watch_relay(sup: Supervisor) -> Callable[[Request], Response]:
    """The launcher's ``GET /watch`` handler (the node decides on the client's own token)."""
    open_relays = [0]

    def release() -> None:
        open_relays[0] -= 1

    def handler(req: Request) -> Response:
        if open_relays[0] >= MAX_RELAYS:
            raise Unavailable(f"{MAX_RELAYS} watches are open through this launcher; retry shortly",
                              retry_after=5)
        headers = {name: req.headers[name.lower()] for name in RELAYED_HEADERS if name.lower() in req.headers}
        conn, resp = _open(sup, params.target(req), headers)
        kept = [(name.title(), value) for name, value in resp.getheaders() if name.lower() in KEPT_HEADERS]
        if resp.status != 200:
            try:
                body = resp.read()
            finally:
                conn.close()
            return Response(resp.status, [JSON, *kept], body)
        open_relays[0] += 1
        return Response(200, [("Content-Type", CONTENT_TYPE), ("Cache-Control", "no-cache"),
                              ("X-Accel-Buffering", "no"), *kept], stream=_Relay(conn, resp, release))

    return handler


def _open(sup: Supervisor, target: str,
          headers: dict[str, str]) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    """A /watch answer's head from the first running node that gives one; Unavailable if none does."""
    running = [c for c in sup.children.values() if c.state == "running"]
    last = "no node is running"
    for child in running:
        try:
            conn = sup.pool.new_connection(child.spec.http, SILENCE_TIMEOUT)
        except ClientError as exc:
            last = f"{child.spec.node_id}: {exc}"
            continue
        try:
            conn.request("GET", target, headers=headers)
            return conn, conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            last = f"{child.spec.node_id}: {exc.__class__.__name__}"
    raise Unavailable(f"no running node answered the watch ({last})")

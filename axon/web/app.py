"""HTTP edge: routes -> service (a fast path for single keys, bottle for the rest), JSON errors."""
from __future__ import annotations

import json
import logging
import os
import socket
from typing import Callable

import re
from urllib.parse import unquote_to_bytes

import bottle
from gevent.server import _tcp_listener

from axon.config import parse_addr
from axon.api.errors import AxonError, BadRequest, MethodNotAllowed, NotFound, PayloadTooLarge, Unavailable
from axon.web.server import Handler, HttpServer, wsgi_handler
from axon.web.wire import Request, Response
from axon.api.service import FORWARD_HEADER, ORIGIN_HEADER, KVService, Reply

log = logging.getLogger("axon.web.app")

STATIC_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "static")
bottle.BaseRequest.MEMFILE_MAX = 8 << 20


def json_reply(reply: Reply) -> str:
    bottle.response.status = reply.status
    bottle.response.content_type = "application/json"
    for name, value in reply.headers.items():
        bottle.response.set_header(name, value)
    return json.dumps(reply.body)


def reply_for(err: AxonError) -> Reply:
    """An error as the answer to send: its status and JSON body, Retry-After when unavailable."""
    headers = {"Retry-After": str(err.retry_after)} if isinstance(err, Unavailable) else {}
    return Reply(err.status, err.body(), headers)


def error_reply(err: AxonError) -> str:
    return json_reply(reply_for(err))


def handler(fn: Callable[..., Reply]) -> Callable[..., str]:
    """Wrap a route: Reply -> JSON, AxonError -> its JSON error, a bug -> logged 500."""
    def wrapped(**kwargs: str) -> str:
        try:
            return json_reply(fn(**kwargs))
        except AxonError as err:
            return error_reply(err)
        except Exception:   # a bug: log it, answer JSON, keep serving
            log.exception("unhandled error in %s %s", bottle.request.method, bottle.request.path)
            return json_reply(Reply(500, {"error": "internal error"}))
    wrapped.__name__ = fn.__name__
    return wrapped


def _body(limit: int) -> bytes:
    length = bottle.request.content_length
    if length > limit:
        raise PayloadTooLarge(f"request body is larger than {limit} bytes")
    return bottle.request.body.read(limit + 1)


def request_body_limit(max_value_bytes: int) -> int:
    """Largest request body worth reading: a value JSON-escaped at worst (6 bytes a byte) plus slack."""
    return max_value_bytes * 6 + 4096


def _forwarded(service: KVService) -> int:
    """Hops of a request another node forwarded here (0: straight from a client); checks the forwarder."""
    raw = bottle.request.get_header(FORWARD_HEADER, "0")
    hops = int(raw) if raw.isdigit() else 0
    if hops:
        service.check_forwarder(bottle.request.get_header(ORIGIN_HEADER))
    return hops


def build_app(service: KVService) -> "FastKVHandler":
    """The node's request handler (bottle behind the key fast path)."""
    app = bottle.Bottle(autojson=False, catchall=True)
    req = bottle.request
    body_limit = request_body_limit(service.config.max_value_bytes)

    @app.route("/kv/<key:path>", method="PUT")
    @handler
    def put_key(key: str) -> Reply:
        return service.put(key, _body(body_limit), req.get_header("If-Match"),
                           req.get_header("If-None-Match"), _forwarded(service))

    @app.route("/kv/<key:path>", method="GET")
    @handler
    def get_key(key: str) -> Reply:
        return service.get(key, req.query.get("stale"), _forwarded(service))

    @app.route("/kv/<key:path>", method="DELETE")
    @handler
    def delete_key(key: str) -> Reply:
        return service.delete(key, req.get_header("If-Match"), _forwarded(service))

    @app.route("/kv/", method=["GET", "PUT", "DELETE"])
    @handler
    def empty_key() -> Reply:
        return service.put("", b"", None, None) if req.method == "PUT" else service.get("", None)

    @app.route("/kv", method="GET")
    @handler
    def list_keys() -> Reply:
        q = req.query
        return service.list(q.get("prefix"), q.get("limit"), q.get("after"), q.get("stale"),
                            req.query_string, _forwarded(service))

    @app.route("/cluster/status", method="GET")
    @handler
    def cluster_status() -> Reply:
        return service.status()

    @app.route("/cluster/overview", method="GET")
    @handler
    def cluster_overview() -> Reply:
        return service.overview()

    @app.route("/cluster/members", method="GET")
    @handler
    def cluster_members() -> Reply:
        return service.members()

    @app.route("/cluster/join", method="POST")
    @handler
    def cluster_join() -> Reply:
        return service.join(_body(64 * 1024), _forwarded(service))

    @app.route("/cluster/leave", method="POST")
    @handler
    def cluster_leave() -> Reply:
        return service.leave(_forwarded(service))

    @app.route("/cluster/nodes/<node_id>", method="DELETE")
    @handler
    def cluster_remove(node_id: str) -> Reply:
        return service.remove(node_id, _forwarded(service))

    @app.route("/health", method="GET")
    @handler
    def health() -> Reply:
        return service.health()

    @app.route("/ready", method="GET")
    @handler
    def ready() -> Reply:
        return service.ready()

    add_common_routes(app)
    return FastKVHandler(service, app)


def add_common_routes(app: bottle.Bottle) -> None:
    """The dashboard's static files and JSON answers for bottle's own errors."""
    req = bottle.request

    @app.route("/", method="GET")
    def index() -> object:
        return _static("index.html")

    @app.route("/static/<path:path>", method="GET")
    def static(path: str) -> object:
        return _static(path)

    @app.error(404)
    def not_found(_err: bottle.HTTPError) -> str:
        return error_reply(NotFound(f"no route for {req.method} {req.path}"))

    @app.error(405)
    def not_allowed(_err: bottle.HTTPError) -> str:
        return error_reply(MethodNotAllowed(f"method {req.method} not allowed on {req.path}"))

    @app.error(400)
    def bad_request(err: bottle.HTTPError) -> str:
        return error_reply(BadRequest(str(err.body) or "bad request"))

    @app.error(500)
    def internal(_err: bottle.HTTPError) -> str:
        return json_reply(Reply(500, {"error": "internal error"}))


def _static(path: str) -> object:
    if not os.path.isdir(STATIC_DIR):
        return error_reply(NotFound("dashboard not built"))
    resp = bottle.static_file(path, root=STATIC_DIR)
    if isinstance(resp, bottle.HTTPError):
        return error_reply(NotFound(f"no file {path}"))
    return resp


_SIMPLE_QUERY = re.compile(r"(?:stale=[A-Za-z0-9]*)?")
_FAST_METHODS = ("GET", "PUT", "DELETE")
_JSON = ("Content-Type", "application/json")


class FastKVHandler:
    """The node's request handler: single-key GET/PUT/DELETE straight to the service, all else to bottle.

    The key routes are nearly all of the traffic; bottle's request/response objects and
    router cost more than the rest of the HTTP path.  Anything unusual (other query
    parameters, the empty key) takes the bottle route, whose answers are the same.
    """

    def __init__(self, service: KVService, app: bottle.Bottle) -> None:
        self.service = service
        self.fallback = wsgi_handler(app)

    def __call__(self, req: Request) -> Response:
        path, method = req.path, req.method
        if (method not in _FAST_METHODS or not path.startswith("/kv/") or len(path) == 4
                or not _SIMPLE_QUERY.fullmatch(req.query)):
            return self.fallback(req)
        try:
            reply = self._dispatch(req)
        except AxonError as err:
            reply = reply_for(err)
        except Exception:   # a bug: log it, answer JSON, keep serving
            log.exception("unhandled error in %s %s", method, path)
            reply = Reply(500, {"error": "internal error"})
        headers = [_JSON]
        if reply.headers:
            headers += [(k, str(v)) for k, v in reply.headers.items()]
        return Response(reply.status, headers, json.dumps(reply.body).encode())

    def _dispatch(self, req: Request) -> Reply:
        raw = req.path[4:]
        # bottle decodes the path the same way: percent-decoding, then UTF-8 ignoring errors.
        key = (unquote_to_bytes(raw) if "%" in raw else raw.encode("latin-1")).decode("utf8", "ignore")
        headers = req.headers
        forwarded = self._forwarded(headers)
        if req.method == "GET":
            return self.service.get(key, req.query[6:] if req.query else None, forwarded)
        if req.method == "DELETE":
            return self.service.delete(key, headers.get("if-match"), forwarded)
        return self.service.put(key, req.body, headers.get("if-match"), headers.get("if-none-match"),
                                forwarded)

    def _forwarded(self, headers: dict[str, str]) -> int:
        raw = headers.get("x-axon-forwarded", "0")
        hops = int(raw) if raw.isdigit() else 0
        if hops:
            self.service.check_forwarder(headers.get("x-axon-origin"))
        return hops


def bind(listen: str) -> socket.socket:
    """Bind the listening socket now, so a taken port fails before anything else happens."""
    host, port = parse_addr(listen)
    return _tcp_listener((host, port), reuse_addr=True, backlog=1024)


def serve(handler: Handler, listen: str | socket.socket, max_body: int = 1 << 20) -> HttpServer:
    """Serve ``handler`` (see ``wsgi_handler`` for a bottle app) on ``listen``; returns the started server."""
    listener = bind(listen) if isinstance(listen, str) else listen
    server = HttpServer(listener, handler, max_body)
    server.start()
    return server

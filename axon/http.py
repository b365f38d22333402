"""HTTP edge: bottle routes -> service, JSON errors, the gevent WSGI server with TCP_NODELAY."""
from __future__ import annotations

import json
import logging
import os
import socket
from typing import Callable

import http.client
import re

import bottle
from gevent.pywsgi import WSGIHandler, WSGIServer
from gevent.server import _tcp_listener

from .config import parse_addr
from .errors import AxonError, BadRequest, MethodNotAllowed, NotFound, PayloadTooLarge, Unavailable
from .service import FORWARD_HEADER, ORIGIN_HEADER, KVService, Reply

log = logging.getLogger("axon.http")

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
bottle.BaseRequest.MEMFILE_MAX = 8 << 20


def json_reply(reply: Reply) -> str:
    bottle.response.status = reply.status
    bottle.response.content_type = "application/json"
    for name, value in reply.headers.items():
        bottle.response.set_header(name, value)
    return json.dumps(reply.body)


def error_reply(err: AxonError) -> str:
    headers = {}
    if isinstance(err, Unavailable):
        headers["Retry-After"] = str(err.retry_after)
    return json_reply(Reply(err.status, err.body(), headers))


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


def _forwarded(service: KVService) -> int:
    """Hops of a request another node forwarded here (0: straight from a client); checks the forwarder."""
    raw = bottle.request.get_header(FORWARD_HEADER, "0")
    hops = int(raw) if raw.isdigit() else 0
    if hops:
        service.check_forwarder(bottle.request.get_header(ORIGIN_HEADER))
    return hops


def build_app(service: KVService) -> "FastKVApp":
    """The node's WSGI application (bottle behind the key fast path)."""
    app = bottle.Bottle(autojson=False, catchall=True)
    req = bottle.request
    body_limit = service.config.max_value_bytes * 6 + 4096

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
    return FastKVApp(service, app)


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


class FastKVApp:
    """The node's WSGI entry point: single-key GET/PUT/DELETE straight to the service, all else to bottle.

    The key routes are nearly all of the traffic; bottle's request/response objects and
    router cost more than the rest of the HTTP path.  Anything unusual (chunked bodies,
    other query parameters, the empty key) takes the bottle route, whose answers are the same.
    """

    def __init__(self, service: KVService, app: bottle.Bottle) -> None:
        self.service = service
        self.app = app
        self.body_limit = service.config.max_value_bytes * 6 + 4096

    def __call__(self, environ: dict, start_response: Callable) -> list[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "")
        if (method not in _FAST_METHODS or not path.startswith("/kv/") or len(path) == 4
                or not _SIMPLE_QUERY.fullmatch(environ.get("QUERY_STRING", ""))
                or environ.get("HTTP_TRANSFER_ENCODING")):
            return self.app(environ, start_response)
        try:
            reply = self._dispatch(environ, method, path)
        except AxonError as err:
            headers = {"Retry-After": str(err.retry_after)} if isinstance(err, Unavailable) else {}
            reply = Reply(err.status, err.body(), headers)
        except Exception:   # a bug: log it, answer JSON, keep serving
            log.exception("unhandled error in %s %s", method, path)
            reply = Reply(500, {"error": "internal error"})
        body = json.dumps(reply.body).encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        headers += [(k, str(v)) for k, v in reply.headers.items()]
        start_response(f"{reply.status} {http.client.responses.get(reply.status, 'Unknown')}", headers)
        return [body]

    def _dispatch(self, environ: dict, method: str, path: str) -> Reply:
        # PEP 3333 hands the path over as latin-1; bottle decodes it the same way.
        key = path[4:].encode("latin1").decode("utf8", "ignore")
        forwarded = self._forwarded(environ)
        if method == "GET":
            query = environ.get("QUERY_STRING", "")
            stale = query[6:] if query else None
            return self.service.get(key, stale, forwarded)
        if method == "DELETE":
            return self.service.delete(key, environ.get("HTTP_IF_MATCH"), forwarded)
        return self.service.put(key, self._body(environ), environ.get("HTTP_IF_MATCH"),
                                environ.get("HTTP_IF_NONE_MATCH"), forwarded)

    def _body(self, environ: dict) -> bytes:
        raw = environ.get("CONTENT_LENGTH") or "0"
        length = int(raw) if raw.isdigit() else 0
        if length > self.body_limit:
            raise PayloadTooLarge(f"request body is larger than {self.body_limit} bytes")
        return environ["wsgi.input"].read(length) if length else b""

    def _forwarded(self, environ: dict) -> int:
        raw = environ.get("HTTP_X_AXON_FORWARDED", "0")
        hops = int(raw) if raw.isdigit() else 0
        if hops:
            self.service.check_forwarder(environ.get("HTTP_X_AXON_ORIGIN"))
        return hops


class _OneSendHandler(WSGIHandler):
    """pywsgi's handler, but status line, headers and a fixed-length body leave in one send.

    pywsgi sends headers and body separately: with TCP_NODELAY that is two packets and two
    wake-ups of the client for every small answer.
    """

    def _write_with_headers(self, data: bytes) -> None:
        if self.response_use_chunked or not data:
            super()._write_with_headers(data)
            return
        self.headers_sent = True
        self.finalize_headers()
        towrite = bytearray(b"HTTP/1.1 ")
        towrite += self.status
        towrite += b"\r\n"
        for header, value in self.response_headers:
            towrite += header + b": " + value + b"\r\n"
        towrite += b"\r\n"
        towrite += data
        self._sendall(towrite)


class NoDelayWSGIServer(WSGIServer):
    """gevent's WSGI server with TCP_NODELAY, so small answers don't wait on delayed ACKs."""

    handler_class = _OneSendHandler

    def handle(self, sock: socket.socket, address: tuple) -> None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        super().handle(sock, address)


def bind(listen: str) -> socket.socket:
    """Bind the listening socket now, so a taken port fails before anything else happens."""
    host, port = parse_addr(listen)
    return _tcp_listener((host, port), reuse_addr=True, backlog=1024)


def serve(app: Callable, listen: str | socket.socket) -> NoDelayWSGIServer:
    listener = bind(listen) if isinstance(listen, str) else listen
    server = NoDelayWSGIServer(listener, app, log=None, error_log=logging.getLogger("axon.wsgi"))
    server.start()
    return server

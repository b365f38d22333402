"""The launcher's HTTP API: the supervisor under /api, the nodes' API proxied, the dashboard.

``/cluster/*`` and ``/kv*`` go on to a running node, so the dashboard uses the same
relative URLs whether a launcher or a node serves it.  Requests pass the same error
middleware and browser check as a node's (a page on another origin must not stop or add
nodes, nor read them through DNS rebinding), and the node actions are audited.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from axon.api.errors import NotFound
from axon.audit import AuditLog
from axon.web import params
from axon.web.audit import audit_middleware, launcher_audited
from axon.web.browser import BrowserGuard
from axon.web.dashboard import dashboard_handler
from axon.web.middleware import Handler, Middleware, chain
from axon.web.replies import JSON, error_replies, json_reply, ok
from axon.web.routes import Route, Router
from axon.web.wire import Request, Response

if TYPE_CHECKING:
    from axon.launcher.supervisor import Supervisor

MAX_PROXY_BODY = 8 << 20
PROXIED_PATHS = ("/cluster/<rest:path>", "/kv", "/kv/<rest:path>")
PROXIED_METHODS = ("GET", "PUT", "POST", "DELETE")
PROXIED_HEADERS = ("If-Match", "If-None-Match", "Content-Type")


def build_api(sup: Supervisor, listen: str = "127.0.0.1:0", https: bool = False,
              audit_log: AuditLog | None = None) -> Handler:
    """The launcher's request handler, served on ``listen`` (whose host the browser check needs)."""
    actions = {"start": sup.start, "stop": sup.stop, "restart": sup.restart}

    def action(req: Request, node_id: str, verb: str) -> Response:
        if verb not in actions:
            raise NotFound(f"no action {verb!r}: use start, stop or restart")
        return ok(actions[verb](node_id))

    def proxy(req: Request, *_rest: str) -> Response:
        body = req.body if req.method in ("PUT", "POST") else None
        headers = {name: req.headers[name.lower()] for name in PROXIED_HEADERS if name.lower() in req.headers}
        status, answer, kept = sup.proxy(req.method, params.target(req), body, headers)
        return Response(status, [JSON, *((name.title(), value) for name, value in kept.items())], answer)

    routes = [
        Route("GET", "/api/nodes", lambda req: ok({"nodes": sup.nodes()})),
        Route("POST", "/api/nodes", lambda req: json_reply(201, sup.add())),
        Route("GET", "/api/nodes/<node_id>", lambda req, node_id: ok(sup.node(node_id))),
        Route("DELETE", "/api/nodes/<node_id>", lambda req, node_id: ok(sup.decommission(node_id))),
        Route("POST", "/api/nodes/<node_id>/<verb>", action),
    ]
    routes += [Route(method, path, proxy) for path in PROXIED_PATHS for method in PROXIED_METHODS]
    middlewares: list[Middleware] = [error_replies, BrowserGuard(listen, https)]
    if audit_log is not None:
        middlewares.insert(0, audit_middleware(audit_log, launcher_audited()))
    return chain(middlewares, Router(routes, fallback=dashboard_handler()))

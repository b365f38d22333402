"""The launcher's HTTP API: the supervisor under /api, the nodes' API proxied, the dashboard.

``/cluster/*`` and ``/kv*`` go on to a running node, so the dashboard uses the same
relative URLs whether a launcher or a node serves it.  Requests pass the same error
middleware as a node's.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from axon.api.errors import NotFound
from axon.web import params
from axon.web.dashboard import dashboard_handler
from axon.web.middleware import Handler, chain
from axon.web.replies import JSON, error_replies, json_reply, ok
from axon.web.routes import Route, Router
from axon.web.wire import Request, Response

if TYPE_CHECKING:
    from axon.launcher.supervisor import Supervisor

MAX_PROXY_BODY = 8 << 20
PROXIED_PATHS = ("/cluster/<rest:path>", "/kv", "/kv/<rest:path>")
PROXIED_METHODS = ("GET", "PUT", "POST", "DELETE")
PROXIED_HEADERS = ("If-Match", "If-None-Match", "Content-Type")


def build_api(sup: Supervisor) -> Handler:
    """The launcher's request handler."""
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
    return chain([error_replies], Router(routes, fallback=dashboard_handler()))

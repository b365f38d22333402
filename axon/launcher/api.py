"""The launcher's HTTP API: the supervisor under /api, the nodes' API proxied, the dashboard.

``/cluster/*`` and ``/kv*`` go on to a running node, so the dashboard uses the same
relative URLs whether a launcher or a node serves it.  Requests pass the same error
middleware and browser check as a node's (a page on another origin must not stop or add
nodes, nor read them through DNS rebinding), and the node actions are audited.

With auth on (``axon launch --auth``) every route has a decision, as the node's do: viewing
the processes needs any valid token, changing them an admin token (asked of a node with
GET /auth/whoami, so a revoked token stops working here too). The proxied routes pass the
client's own Authorization on, and the node decides; the launcher's root token is never lent.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from axon.api.auth import Decision
from axon.api.errors import Forbidden, NotFound, TokenRequired, Unavailable
from axon.audit import AuditLog
from axon.launcher.watch_relay import watch_relay
from axon.web import params
from axon.web.audit import audit_middleware, launcher_audited
from axon.web.browser import BrowserGuard
from axon.web.dashboard import dashboard_handler
from axon.web.middleware import Handler, Middleware, chain
from axon.web.replies import JSON, error_replies, json_reply, ok
from axon.web.routes import Gate, Route, Router
from axon.web.wire import Request, Response

if TYPE_CHECKING:
    from axon.launcher.supervisor import Supervisor

MAX_PROXY_BODY = 8 << 20
PROXIED_PATHS = ("/cluster/<rest:path>", "/kv", "/kv/<rest:path>")
PROXIED_METHODS = ("GET", "PUT", "POST", "DELETE")
PROXIED_HEADERS = ("If-Match", "If-None-Match", "Content-Type", "Authorization")
PROXIED_PATHS += ("/auth/whoami",)   # the dashboard's sign-in asks who a token is
WATCH_PATH = "/watch"   # the data view's live updates: streamed through, never buffered
PROXIED_PATHS += (WATCH_PATH,)
GET_ONLY = ("/auth/whoami", WATCH_PATH)
# the node decides a proxied request with the client's own token (passed on), not the launcher
PROXIED = Decision.OPEN


def build_api(sup: Supervisor, listen: str = "127.0.0.1:0", https: bool = False,
              audit_log: AuditLog | None = None) -> Handler:
    """The launcher's request handler, served on ``listen`` (whose host the browser check needs)."""
    middlewares: list[Middleware] = [error_replies, BrowserGuard(listen, https)]
    if audit_log is not None:
        middlewares.insert(0, audit_middleware(audit_log, launcher_audited()))
    router = Router(launcher_routes(sup), fallback=dashboard_handler(), gate=launcher_gate(sup))
    return chain(middlewares, router)


def launcher_routes(sup: Supervisor) -> list[Route]:
    """The launcher's route table, each route with its auth decision."""
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
        Route("GET", "/api/nodes", lambda req: ok({"nodes": sup.nodes()}), Decision.ANY_TOKEN),
        Route("POST", "/api/nodes", lambda req: json_reply(201, sup.add()), Decision.ADMIN),
        Route("GET", "/api/nodes/<node_id>", lambda req, node_id: ok(sup.node(node_id)), Decision.ANY_TOKEN),
        Route("DELETE", "/api/nodes/<node_id>", lambda req, node_id: ok(sup.decommission(node_id)),
              Decision.ADMIN),
        Route("POST", "/api/nodes/<node_id>/<verb>", action, Decision.ADMIN),
    ]
    relay = watch_relay(sup)
    routes += [Route(method, path, relay if path == WATCH_PATH else proxy, PROXIED)
               for path in PROXIED_PATHS for method in PROXIED_METHODS
               if method == "GET" or path not in GET_ONLY]
    return routes


def launcher_gate(sup: Supervisor) -> Gate:
    """The launcher's Gate: nothing to check with auth off; else the route's decision, with the
    token's role asked of a node."""
    def gate(req: Request, decision: Decision, args: tuple) -> None:
        if not sup.auth or decision is Decision.OPEN:
            return
        authorization = req.headers.get("authorization")
        if not authorization:
            raise TokenRequired("a token is required: Authorization: Bearer <token>")
        status, who = sup.whoami(authorization)
        if status == 401:
            raise TokenRequired("unknown token")
        if status != 200 or not isinstance(who, dict):
            raise Unavailable(f"cannot check the token now (a node answered {status}); retry shortly")
        req.principal = str(who.get("name") or "")   # named in the audit log, refused or not
        if decision is Decision.ADMIN and who.get("role") != "admin":
            raise Forbidden(f"token {who.get('name')!r} is not an admin token")
    return gate

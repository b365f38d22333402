"""The node's HTTP edge assembled: one middleware chain in front of the route table and the dashboard.

Every request, a single-key read or write as much as a dashboard file, passes the same
middlewares; the route table (axon/web/endpoints.py) serves the JSON API without bottle,
and what it does not claim goes to bottle for the dashboard's files.
"""
from __future__ import annotations

import socket
import ssl
from typing import Sequence

from gevent.server import _tcp_listener

from axon.api.service import KVService
from axon.api.stats import StatsService
from axon.api.tokens import TokenService
from axon.api.watch import WatchService
from axon.audit import AuditLog
# the server's body limit: node/process.py imports it from here
from axon.api.validate import request_body_limit  # noqa: F401
from axon.client.http import HttpPool
from axon.config import NodeConfig, parse_addr
from axon.metrics import NodeMetrics
from axon.web.auth import AuthGate
from axon.web.audit import audit_middleware, node_audited
from axon.web.browser import BrowserGuard
from axon.web.dashboard import dashboard_handler
from axon.web.endpoints import api_routes
from axon.web.forward import Forwarder
from axon.web.middleware import Handler, Middleware, chain, http_metrics
from axon.web.peers import PeerTrust
from axon.web.replies import error_replies
from axon.web.routes import Router
from axon.web.server import HttpServer

FORWARD_SLACK = 1.0   # the leader answers within its request timeout; allow for the hop


def node_middlewares(trust: PeerTrust, guard: BrowserGuard | None = None,
                     audit: Middleware | None = None, metrics: Middleware | None = None) -> list[Middleware]:
    """What every request passes, outermost first (a new concern is one more entry here).

    The audit and the metrics sit outside error_replies so they record the status the client
    got, refusals included; the browser guard refuses before anything else looks at the request.
    """
    return [*([audit] if audit else []), *([metrics] if metrics else []), error_replies,
            *([guard] if guard else []), trust]


def browser_guard(config: NodeConfig) -> BrowserGuard:
    return BrowserGuard(config.http, https=bool(config.tls_cert_file), allowed_origins=config.allowed_origin)


def build_app(config: NodeConfig, service: KVService, pool: HttpPool,
              extra: Sequence[Middleware] = (), audit_log: AuditLog | None = None,
              watches: WatchService | None = None, metrics: NodeMetrics | None = None,
              stats: StatsService | None = None) -> Handler:
    """The node's request handler; ``extra`` middlewares go innermost (tests record with them).

    ``watches`` serves GET /watch from the node's change feed (without one, from an empty feed);
    with ``metrics`` every request is counted (outside error_replies: the status the client got).
    """
    trust = PeerTrust(config.node_id, config.cluster_key, service)
    forwarder = Forwarder(pool, trust, config.request_timeout + FORWARD_SLACK)
    tokens = TokenService(service.node, lambda: service.store.auth, config.request_timeout,
                          config.max_key_bytes)
    # with a cluster key, a join must prove it (axon/api/admission.py): such a proof stands for a token
    gate = AuthGate(lambda: service.store.auth, config.auth, lambda: config.cluster_key is not None)
    if watches is None:
        watches = WatchService(None, service.node, config.request_timeout, config.watch_progress_interval)
    router = Router(api_routes(service, forwarder, config.node_id, tokens, watches, gate, metrics, stats),
                    fallback=dashboard_handler(), gate=gate)
    audit = audit_middleware(audit_log, node_audited(config.node_id)) if audit_log is not None else None
    measure = http_metrics(metrics.http) if metrics is not None else None
    return chain([*node_middlewares(trust, browser_guard(config), audit, measure), *extra], router)


def bind(listen: str) -> socket.socket:
    """Bind the listening socket now, so a taken port fails before anything else happens."""
    host, port = parse_addr(listen)
    return _tcp_listener((host, port), reuse_addr=True, backlog=1024)


def serve(handler: Handler, listen: str | socket.socket, max_body: int = 1 << 20,
          ssl_context: ssl.SSLContext | None = None, **limits: float) -> HttpServer:
    """Serve ``handler`` on ``listen`` (an address, or a socket from ``bind``); returns the started server.

    ``limits`` are HttpServer's (max_connections, idle_timeout, header_timeout, body_timeout,
    max_inflight_bytes); with ``ssl_context`` the listener speaks TLS.
    """
    listener = bind(listen) if isinstance(listen, str) else listen
    server = HttpServer(listener, handler, max_body, ssl_context=ssl_context, **limits)
    server.start()
    return server

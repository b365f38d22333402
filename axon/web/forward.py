"""Passing a request on to the leader: how a node answers what only the leader can do.

Every leader-only route is wrapped by ``Forwarder.leader_only``: when the service raises
NotLeader, the client's request goes to the leader as it came (method, target, body,
conditions), marked forwarded and signed (axon/web/peers.py), and the leader's answer
comes back as it is.  A request is passed on at most once: if it was forwarded already,
or no leader is known, the answer is 503 with the leader this node knows of.
"""
from __future__ import annotations

from typing import Callable

from axon.api.errors import NotLeader, Unavailable
from axon.client.http import ClientError, HttpPool
from axon.client.http import Response as ClientResponse
from axon.web import params
from axon.web.peers import PeerTrust, forwarded_hops
from axon.web.replies import JSON
from axon.web.routes import Endpoint
from axon.web.wire import Request, Response

# what a leader needs of the client's: its conditions, and its identity (the leader decides again)
PASSED_HEADERS = ("if-match", "if-none-match", "content-type", "authorization")
RELAYED_HEADERS = ("retry-after",)                                # what a client needs of the leader's


class Forwarder:
    def __init__(self, pool: HttpPool, trust: PeerTrust, timeout: float) -> None:
        self.pool = pool
        self.trust = trust
        self.timeout = timeout

    def leader_only(self, endpoint: Endpoint,
                    rewrite: Callable[[Request], Request] | None = None) -> Endpoint:
        """``endpoint``, passing its request on to the leader when it raises NotLeader.

        ``rewrite`` turns the request into the one the leader must get, when that differs.
        """
        def handle(req: Request, *args: str) -> Response:
            try:
                return endpoint(req, *args)
            except NotLeader as exc:
                return self.forward(req if rewrite is None else rewrite(req), exc)
        return handle

    def forward(self, req: Request, exc: NotLeader) -> Response:
        """The leader's answer to ``req``; Unavailable when there is no leader to ask."""
        hops = forwarded_hops(req)
        if exc.leader_http is None or hops >= 1:
            raise Unavailable("no leader available; retry later", leader=exc.leader)
        # HEAD goes on as GET: a HEAD answer has no body to check (our server leaves it out anyway)
        method = "GET" if req.method == "HEAD" else req.method
        path = params.target(req)
        headers = {name: req.headers[name] for name in PASSED_HEADERS if name in req.headers}
        headers.update(self.trust.forward_headers(method, path, hops + 1))
        try:
            answer = self.pool.request(method, exc.leader_http, path, req.body or None, headers,
                                       timeout=self.timeout)
        except ClientError as err:
            raise Unavailable(f"leader {exc.leader} unreachable: {err}", leader=exc.leader) from None
        return _relay(answer, exc.leader)


def _relay(answer: ClientResponse, leader: str | None) -> Response:
    """The leader's answer as ours: its status, JSON body and Retry-After."""
    try:
        valid = bool(answer.body) and answer.json() is not None
    except ClientError:
        valid = False
    if not valid:
        raise Unavailable(f"leader {leader} sent an invalid answer (HTTP {answer.status})", leader=leader)
    headers = [JSON] + [(name.title(), answer.headers[name]) for name in RELAYED_HEADERS
                        if name in answer.headers]
    return Response(answer.status, headers, answer.body)

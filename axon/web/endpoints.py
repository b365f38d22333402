"""The node's HTTP API: its one route table, each endpoint request -> service call -> JSON answer.

Leader-only operations (writes, linearizable reads, membership) are wrapped so that a
follower passes the request on to the leader (axon/web/forward.py).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable
from urllib.parse import quote

from axon.api.auth import Decision
from axon.api.service import KVService
from axon.api.tokens import TokenService
from axon.web.forward import Forwarder
from axon.web.params import query_params
from axon.web.replies import json_reply, ok
from axon.web.routes import Endpoint, Route
from axon.web.wire import Request, Response


OPEN, ANY, ADMIN = Decision.OPEN, Decision.ANY_TOKEN, Decision.ADMIN


def api_routes(service: KVService, forwarder: Forwarder, node_id: str,
               tokens: TokenService) -> list[Route]:
    """Every route of the node's JSON API, each with its auth decision (axon/api/auth.py)."""
    leader_only = forwarder.leader_only

    def get_key(req: Request, key: str) -> Response:
        stale = query_params(req.query).get("stale") if req.query else None
        return ok(service.get(key, stale))

    def put_key(req: Request, key: str) -> Response:
        headers = req.headers
        return ok(service.put(key, req.body, headers.get("if-match"), headers.get("if-none-match")))

    def delete_key(req: Request, key: str) -> Response:
        return ok(service.delete(key, req.headers.get("if-match")))

    def list_keys(req: Request) -> Response:
        query = query_params(req.query)
        return ok(service.list(query.get("prefix"), query.get("limit"), query.get("after"),
                               query.get("stale")))

    def join(req: Request) -> Response:
        answer = service.join(req.body)
        return json_reply(202 if answer["status"] == "learner" else 200, answer)

    def remove(req: Request, member: str) -> Response:
        return ok(service.remove(member))

    def leave(req: Request) -> Response:
        return ok(service.leave())

    def as_removal(req: Request) -> Request:
        """A leave as the leader must get it: the removal of this node, not of the leader."""
        return replace(req, method="DELETE", path="/cluster/nodes/" + quote(node_id, safe=""),
                       query="", body=b"")

    return [
        Route("GET", "/kv/<key:path>", leader_only(get_key), Decision.READ_KEY),
        Route("PUT", "/kv/<key:path>", leader_only(put_key), Decision.WRITE_KEY),
        Route("DELETE", "/kv/<key:path>", leader_only(delete_key), Decision.WRITE_KEY),
        Route("GET", "/kv", leader_only(list_keys), Decision.LIST_PREFIX),
        Route("GET", "/cluster/status", lambda req: ok(service.status()), ANY),
        Route("GET", "/cluster/overview", lambda req: ok(service.overview()), ANY),
        Route("GET", "/cluster/members", lambda req: ok(service.members()), ANY),
        Route("POST", "/cluster/join", leader_only(join), Decision.PEER_OR_ADMIN),
        Route("POST", "/cluster/leave", leader_only(leave, rewrite=as_removal), ADMIN),
        Route("DELETE", "/cluster/nodes/<node_id>", leader_only(remove), ADMIN),
        Route("GET", "/health", lambda req: ok(service.health()), OPEN),
        Route("GET", "/ready", lambda req: ok(service.ready()), OPEN),
        *auth_routes(tokens, leader_only),
    ]


def auth_routes(tokens: TokenService, leader_only: Callable[[Endpoint], Endpoint]) -> list[Route]:
    """Auth administration; changes go to the leader (with the client's token, decided again there)."""
    return [
        Route("POST", "/auth/enable", leader_only(lambda req: json_reply(201, tokens.enable())),
              Decision.AUTH_ENABLE),
        Route("POST", "/auth/tokens", leader_only(lambda req: json_reply(201, tokens.create(req.body))),
              ADMIN),
        Route("GET", "/auth/tokens", lambda req: ok(tokens.list()), ADMIN),
        Route("DELETE", "/auth/tokens/<name>", leader_only(lambda req, name: ok(tokens.revoke(name))),
              ADMIN),
    ]

"""The node's HTTP API: its one route table, each endpoint request -> service call -> JSON answer.

Leader-only operations (writes, linearizable reads, membership) are wrapped so that a
follower passes the request on to the leader (axon/web/forward.py).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable, Iterator
from urllib.parse import quote

from axon import bulk, jsontext
from axon.api.auth import Decision, bearer_token, principal
from axon.api.service import KVService
from axon.api.stats import StatsRing, StatsService
from axon.api.tokens import TokenService
from axon.api.txn import txn_keys
from axon.api.watch import WatchService
from axon.metrics import CONTENT_TYPE as METRICS_TYPE, NodeMetrics
from axon.web.forward import Forwarder
from axon.web.leases import lease_routes
from axon.web.openapi import openapi_routes
from axon.web.params import query_params
from axon.web.replies import JSON, json_reply, ok
from axon.web.routes import Endpoint, Route
from axon.web.auth import AuthGate
from axon.web.maintenance import maintenance_routes
from axon.web.watch import read_now, watch_routes
from axon.web.wire import Request, Response


OPEN, ANY, ADMIN = Decision.OPEN, Decision.ANY_TOKEN, Decision.ADMIN
STREAM_PAGE_ABOVE = 256 << 10   # a listing page with this much text is streamed, not built whole
PAGE_PIECE_BYTES = 64 << 10


def api_routes(service: KVService, forwarder: Forwarder, node_id: str,
               tokens: TokenService, watches: WatchService, gate: AuthGate,
               metrics: NodeMetrics | None = None, stats: StatsService | None = None) -> list[Route]:
    """Every route of the node's JSON API, each with its auth decision (axon/api/auth.py).

    ``metrics`` and ``stats`` are the node's (without them, empty ones: the routes exist anyway).

    ``gate`` also decides what a route's decision alone cannot: a transaction's keys (from
    its body), and a watch's request again while it streams (a revoked token).
    """
    leader_only = forwarder.leader_only

    def get_key(req: Request, key: str) -> Response:
        stale = query_params(req.query).get("stale") if req.query else None
        return ok(service.get(key, stale))

    def put_key(req: Request, key: str) -> Response:
        headers = req.headers
        lease = query_params(req.query).get("lease") if req.query else None
        return ok(service.put(key, req.body, headers.get("if-match"), headers.get("if-none-match"), lease))

    def delete_key(req: Request, key: str) -> Response:
        return ok(service.delete(key, req.headers.get("if-match")))

    def list_keys(req: Request) -> Response:
        query = query_params(req.query)
        return page_reply(service.list(query.get("prefix"), query.get("limit"), query.get("after"),
                                       query.get("stale")))

    def txn(req: Request) -> Response:
        parsed = service.parse_txn(req.body)
        gate.check_keys(req, *txn_keys(parsed))
        return ok(service.txn(parsed))

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

    # Every route of this table is described in axon/web/openapi.json (served at GET /openapi.json):
    # whoever adds, changes or removes a route edits the document too (tests/test_openapi.py checks).
    return [
        Route("GET", "/kv/<key:path>", leader_only(get_key), Decision.READ_KEY),
        Route("PUT", "/kv/<key:path>", leader_only(put_key), Decision.WRITE_KEY),
        Route("DELETE", "/kv/<key:path>", leader_only(delete_key), Decision.WRITE_KEY),
        Route("GET", "/kv", leader_only(list_keys), Decision.LIST_PREFIX),
        Route("POST", "/txn", leader_only(txn), Decision.TXN),
        Route("GET", "/cluster/status", lambda req: ok(service.status()), ANY),
        Route("GET", "/cluster/overview",
              lambda req: ok(service.overview(req.headers.get("authorization"))), ANY),
        Route("GET", "/cluster/members", lambda req: ok(service.members()), ANY),
        Route("POST", "/cluster/join", leader_only(join), Decision.PEER_OR_ADMIN),
        Route("POST", "/cluster/leave", leader_only(leave, rewrite=as_removal), ADMIN),
        Route("DELETE", "/cluster/nodes/<node_id>", leader_only(remove), ADMIN),
        Route("GET", "/health", lambda req: ok(service.health()), OPEN),
        Route("GET", "/ready", lambda req: ok(service.ready()), OPEN),
        *openapi_routes(),
        Route("GET", "/auth/whoami", lambda req: ok(whoami(gate, req)), ANY),
        *ops_routes(service, node_id, metrics, stats),
        *auth_routes(tokens, leader_only),
        *lease_routes(service.leases, forwarder, gate),
        *watch_routes(watches, forwarder, service.config.max_key_bytes,
                      lambda req: gate(req, Decision.WATCH, ())),
        *maintenance_routes(service.store, service.node.wait_applied, service.config.request_timeout,
                            lambda req: read_now(req, watches, forwarder), node_id, service.cluster_id),
    ]


def ops_routes(service: KVService, node_id: str, metrics: NodeMetrics | None,
               stats: StatsService | None) -> list[Route]:
    """Prometheus's scrape and the dashboard's chart samples.

    Any token may read them: they hold counts and timings, never keys or values, and a
    Prometheus server sends its token as a bearer token like any client."""
    if metrics is None:
        metrics = NodeMetrics(process_metrics=False)
    if stats is None:
        stats = StatsService(node_id, StatsRing(), service.status_fetcher, service.member_addresses)

    def cluster_stats(req: Request) -> Response:
        query = query_params(req.query)
        return ok(stats.answer(query.get("since"), query.get("local"), req.headers.get("authorization")))

    return [
        Route("GET", "/metrics", lambda req: Response(200, [("Content-Type", METRICS_TYPE)], metrics.render()),
              ANY),
        Route("GET", "/cluster/stats", cluster_stats, ANY),
    ]


def page_reply(page: dict) -> Response:
    """A listing page as JSON: in one piece when small, else streamed piece by piece."""
    items = page["items"]
    if sum(len(item["key"]) + len(item["value"]) for item in items) < STREAM_PAGE_ABOVE:
        return ok(page)
    return Response(200, [JSON], stream=_page_pieces(items, page["next"]))


def _page_pieces(items: list[dict], nxt: str | None) -> Iterator[bytes]:
    """``{"items": [...], "next": ...}`` in pieces of about PAGE_PIECE_BYTES, letting other
    greenlets run between them (a client that reads fast never makes the send wait).

    A part of the text that long (a big value needing no escapes, ``jsontext.dict_parts``)
    is a piece alone, sent as it is: joined with its neighbours it would be copied again.
    """
    batch: list[bytes] = []
    size = 0
    for part in _page_parts(items, nxt):
        if len(part) >= PAGE_PIECE_BYTES and batch:
            yield b"".join(batch)
            batch, size = [], 0
        batch.append(part)
        size += len(part)
        if size >= PAGE_PIECE_BYTES:
            yield batch[0] if len(batch) == 1 else b"".join(batch)
            batch, size = [], 0
            bulk.pause()
    yield b"".join(batch)   # never empty: the page's closing part comes last


def _page_parts(items: list[dict], nxt: str | None) -> Iterator[bytes]:
    """A listing page's JSON text, as ``jsontext.dumps`` writes it, in parts."""
    yield b'{"items": ['
    for n, item in enumerate(items):
        if n:
            yield b", "
        yield from jsontext.dict_parts(item)
    yield b'], "next": ' + jsontext.dumps(nxt).encode() + b"}"


def whoami(gate: AuthGate, req: Request) -> dict:
    """Who the request's token is (the dashboard shows it and hides what the role may not do)."""
    state = gate.state()
    grant = principal(state, bearer_token(req.headers.get("authorization"))) if state.enabled else None
    if grant is None:   # auth off (the gate let an unknown token through only then)
        return {"auth_enabled": state.enabled, "name": None, "role": None, "prefix": None}
    return {"auth_enabled": True, "name": grant.name, "role": grant.role, "prefix": grant.prefix}


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

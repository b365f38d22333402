"""Every route of the node's table, for every role, through the real chain (in-process nodes).

The walk reads the route table itself, so a new route is walked too: one without an auth
decision cannot be served (the Router refuses it), and one whose decision this test does
not know fails here.
"""
from __future__ import annotations

import json
import re

import pytest

from axon.api.auth import Decision
from axon.testing.inprocess import api_cluster
from axon.web.endpoints import api_routes
from axon.web.routes import Route, Router

ROLES = ("none", "read", "write", "admin")
INSIDE, OUTSIDE = "app/x", "other"
ALLOWED = "allowed"


def table() -> list[Route]:
    """The node's route table (the endpoints are not called: only method, pattern, decision)."""
    node = api_cluster(1)["n1"]
    return api_routes(node.service, _Unused(), "n1", _Unused(), _Unused(), _Unused())


class _Unused:
    def __getattr__(self, name):
        return lambda *a, **k: (lambda *x: None)


def expected(role: str, decision: Decision, key: str) -> object:
    """What each role gets for one decision: 401, 403 or ALLOWED."""
    if decision is Decision.OPEN or role == "admin":
        return ALLOWED
    if role == "none":
        return 401
    if decision is Decision.ANY_TOKEN:
        return ALLOWED
    if decision in (Decision.READ_KEY, Decision.LIST_PREFIX, Decision.WATCH):
        return ALLOWED if key.startswith("app/") else 403
    if decision in (Decision.WRITE_KEY, Decision.TXN):   # the walk's transaction writes ``key``
        return ALLOWED if role == "write" and key.startswith("app/") else 403
    if decision is Decision.LEASE:   # the walk's lease holds no key
        return ALLOWED if role == "write" else 403
    if decision in (Decision.ADMIN, Decision.PEER_OR_ADMIN, Decision.AUTH_ENABLE):
        return 403
    raise AssertionError(f"no expectation for decision {decision}: add it to this test")


def target(route: Route, key: str) -> str:
    """A concrete path for the route's pattern, keys set to ``key``."""
    if route.decision is Decision.LIST_PREFIX:
        return f"{route.pattern}?prefix={key}"
    if route.decision is Decision.WATCH:
        return f"{route.pattern}?prefix={key}"
    path = re.sub(r"<key:path>", key, route.pattern)
    return re.sub(r"<[a-z_]+>", "nobody", path)


def body(route: Route, key: str = "") -> bytes:
    if route.decision is Decision.TXN:
        return json.dumps({"compare": [{"key": key, "exists": False}],
                           "success": [{"op": "put", "key": key, "value": "v"}]}).encode()
    if route.method == "PUT":
        return b'{"value": "v"}'
    if route.pattern == "/cluster/join":
        return json.dumps({"node_id": "n9", "raft": "10.0.0.9:7001", "http": "10.0.0.9:7000"}).encode()
    if route.pattern == "/auth/tokens":
        return b'{"name": "t2", "role": "read", "prefix": ""}'
    return b""


def secured_node(role: str):
    """One node with auth on and a token of ``role`` (None for "none")."""
    node = api_cluster(1)["n1"]
    root = node.call("POST", "/auth/enable")
    assert root.status == 201, root.body
    root_token = json.loads(root.body)["token"]
    if role in ("none", "admin"):
        return node, (None if role == "none" else root_token)
    made = node.call("POST", "/auth/tokens", {"name": role, "role": role, "prefix": "app/"},
                     headers={"Authorization": f"Bearer {root_token}"})
    assert made.status == 201, made.body
    return node, json.loads(made.body)["token"]


CASES = [(route, key) for route in table()
         for key in ((INSIDE, OUTSIDE) if route.decision in
                     (Decision.READ_KEY, Decision.WRITE_KEY, Decision.LIST_PREFIX, Decision.WATCH,
                      Decision.TXN) else ("",))]


def test_every_route_has_a_decision() -> None:
    missing = [f"{r.method} {r.pattern}" for r in table() if r.decision is None]
    assert missing == []


def test_a_route_without_a_decision_cannot_be_served() -> None:
    with pytest.raises(ValueError, match="no auth decision"):
        Router([Route("GET", "/new", lambda req: None)], fallback=lambda req: None,
               gate=lambda req, decision, args: None)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("route, key", CASES,
                         ids=[f"{r.method} {r.pattern} {k}" for r, k in CASES])
def test_route_answers_each_role(route: Route, key: str, role: str) -> None:
    node, token = secured_node(role)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    resp = node.call(route.method, target(route, key), body=body(route, key), headers=headers)
    want = expected(role, route.decision, key)
    got = resp.status if resp.status in (401, 403) else ALLOWED
    assert got == want, (resp.status, resp.body)
    if resp.status == 401:
        assert ("WWW-Authenticate", "Bearer") in resp.headers
        assert "error" in json.loads(resp.body)


def test_auth_off_allows_every_route_as_before() -> None:
    node = api_cluster(1)["n1"]
    for route, key in CASES:
        if route.pattern in ("/cluster/leave", "/auth/enable"):
            continue   # would remove the only node / turn auth on for the routes after it
        resp = node.call(route.method, target(route, key), body=body(route, key or "k"))
        assert resp.status not in (401, 403), (route, resp.status, resp.body)


def test_enable_twice_is_a_conflict_for_the_admin() -> None:
    node, root = secured_node("admin")
    again = node.call("POST", "/auth/enable", headers={"Authorization": f"Bearer {root}"})
    assert again.status == 409


def test_dashboard_files_stay_open() -> None:
    node, _ = secured_node("none")
    assert node.call("GET", "/").status not in (401, 403)


def test_token_list_shows_no_secret_and_revocation_takes_effect() -> None:
    node, root = secured_node("admin")
    admin = {"Authorization": f"Bearer {root}"}
    made = json.loads(node.call("POST", "/auth/tokens", {"name": "r", "role": "read", "prefix": ""},
                                headers=admin).body)
    listed = node.call("GET", "/auth/tokens", headers=admin)
    assert made["token"] not in listed.body.decode() and b'"r"' in listed.body
    reader = {"Authorization": f"Bearer {made['token']}"}
    assert node.call("GET", "/kv?prefix=", headers=reader).status == 200
    assert node.call("DELETE", "/auth/tokens/r", headers=admin).status == 200
    assert node.call("GET", "/kv?prefix=", headers=reader).status == 401
    assert node.call("DELETE", "/auth/tokens/r", headers=admin).status == 404


def test_a_forwarded_request_carries_the_clients_token() -> None:
    nodes = api_cluster(3)
    root = json.loads(nodes["n1"].call("POST", "/auth/enable").body)["token"]
    # the fake nodes keep their own state: give the follower the leader's, as Raft would
    nodes["n2"].raft.store.auth = nodes["n1"].raft.store.auth
    resp = nodes["n2"].call("PUT", "/kv/a", {"value": "1"}, headers={"Authorization": f"Bearer {root}"})
    assert resp.status == 200, resp.body
    forwarded = [r for r in nodes["n2"].net.sent if r.path == "/kv/a"]
    assert forwarded and forwarded[-1].headers.get("authorization") == f"Bearer {root}"

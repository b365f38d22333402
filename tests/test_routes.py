"""Routing and the node's HTTP API in-process: the route table through the whole middleware chain."""
from __future__ import annotations

import json

import pytest

from axon.api.errors import InvalidInput
from axon.testing.inprocess import ApiNode, api_cluster, request
from axon.web.params import decode_component, query_params
from axon.web.routes import MethodNotAllowed, Route, Router
from axon.web.wire import Request, Response


# ---------------------------------------------------------------------- the router
def echo(name: str):
    def endpoint(req: Request, *args: str) -> Response:
        return Response(200, [], json.dumps([name, *args]).encode())
    return endpoint


def fallback(req: Request) -> Response:
    return Response(299, [], b"fallback")


ROUTER = Router([
    Route("GET", "/kv", echo("list")),
    Route("GET", "/kv/<key:path>", echo("get")),
    Route("PUT", "/kv/<key:path>", echo("put")),
    Route("DELETE", "/nodes/<node_id>", echo("remove")),
    Route("POST", "/nodes/<node_id>/<verb>", echo("action")),
], fallback)


def route(method: str, target: str) -> object:
    resp = ROUTER(request(method, target))
    return resp.body.decode() if resp.status == 299 else json.loads(resp.body)


def test_router_matches_exact_and_parameterized_paths() -> None:
    assert route("GET", "/kv") == ["list"]
    assert route("GET", "/kv/a/b/c") == ["get", "a/b/c"]
    assert route("GET", "/kv/") == ["get", ""]
    assert route("PUT", "/kv/x") == ["put", "x"]
    assert route("DELETE", "/nodes/n1") == ["remove", "n1"]
    assert route("POST", "/nodes/n1/stop") == ["action", "n1", "stop"]
    assert route("HEAD", "/kv/x") == ["get", "x"]   # HEAD is routed as GET


def test_router_leaves_unclaimed_paths_to_the_fallback() -> None:
    for target in ("/", "/kvx", "/nodes/a/b/c", "/nodes/", "/static/app.js"):
        assert route("GET", target) == "fallback", target


def test_router_refuses_other_methods_of_a_claimed_path() -> None:
    for method, target in (("POST", "/kv/x"), ("DELETE", "/kv"), ("GET", "/nodes/n1"), ("PATCH", "/kv/")):
        with pytest.raises(MethodNotAllowed):
            ROUTER(request(method, target))


def test_router_refuses_two_routes_for_one_method_and_path() -> None:
    with pytest.raises(ValueError):
        Router([Route("GET", "/a/<x>", echo("1")), Route("GET", "/a/<x>", echo("2"))], fallback)


def test_router_decodes_parameters_strictly() -> None:
    assert route("GET", "/kv/a%2Fb%20c") == ["get", "a/b c"]
    assert route("GET", "/kv/%C3%A9t%C3%A9") == ["get", "été"]
    assert route("GET", "/kv/\xc3\xa9") == ["get", "é"]   # raw UTF-8 bytes, as the server hands them over
    assert route("GET", "/kv/a+b") == ["get", "a+b"]      # '+' is a plus in a path
    for bad in ("/kv/adm%ffin", "/kv/%zz", "/kv/%4", "/kv/%", "/kv/%C3", "/kv/\xff", "/kv/%ED%A0%80"):
        with pytest.raises(InvalidInput):
            ROUTER(request("GET", bad))


def test_decode_component_and_query_params() -> None:
    assert decode_component("plain", "x") == "plain"
    assert query_params("") == {}
    assert query_params("prefix=a%2Fb&limit=2&&stale") == {"prefix": "a/b", "limit": "2", "stale": ""}
    assert query_params("after=x+y&after=z") == {"after": "z"}
    for bad in ("prefix=%ff", "a%zz=1", "after=%"):
        with pytest.raises(InvalidInput):
            query_params(bad)


# ---------------------------------------------------------------------- the node's API, in-process
@pytest.fixture
def leader() -> ApiNode:
    return api_cluster()["n1"]


def body_of(resp: Response) -> object:
    assert ("Content-Type", "application/json") in resp.headers, resp
    return json.loads(resp.body)


def test_crud_cas_and_listing(leader: ApiNode) -> None:
    put = leader.call("PUT", "/kv/a%2Fb", {"value": "v1"})
    assert put.status == 200 and body_of(put) == {"key": "a/b", "value": "v1", "revision": 1}
    assert body_of(leader.call("GET", "/kv/a%2Fb")) == body_of(put)
    assert body_of(leader.call("GET", "/kv/a%2Fb?stale=true")) == body_of(put)
    head = leader.call("HEAD", "/kv/a%2Fb")
    assert head.status == 200
    clash = leader.call("PUT", "/kv/a%2Fb", {"value": "v2"}, {"If-Match": "7"})
    assert clash.status == 412 and body_of(clash)["revision"] == 1
    assert leader.call("PUT", "/kv/a%2Fb", {"value": "v2"}, {"If-None-Match": "*"}).status == 412
    swapped = leader.call("PUT", "/kv/a%2Fb", {"value": "v2"}, {"If-Match": '"1"'})
    assert swapped.status == 200
    leader.call("PUT", "/kv/a%2Fc", {"value": "x"})
    page = body_of(leader.call("GET", "/kv?prefix=a%2F&limit=1"))
    assert [i["key"] for i in page["items"]] == ["a/b"] and page["next"] == "a/b"
    page = body_of(leader.call("GET", "/kv?prefix=a/&limit=1&after=a/b"))
    assert [i["key"] for i in page["items"]] == ["a/c"] and page["next"] is None
    revision = str(body_of(swapped)["revision"])
    deleted = leader.call("DELETE", "/kv/a%2Fb", headers={"If-Match": revision})
    assert deleted.status == 200 and body_of(deleted)["key"] == "a/b"
    assert leader.call("GET", "/kv/a%2Fb").status == 404
    assert leader.call("DELETE", "/kv/a%2Fb").status == 404


def test_cluster_routes(leader: ApiNode) -> None:
    assert body_of(leader.call("GET", "/health")) == {"status": "ok", "node_id": "n1"}
    assert body_of(leader.call("GET", "/ready"))["leader"] == "n1"
    assert body_of(leader.call("GET", "/cluster/status"))["leader_http"] == "10.0.0.1:7000"
    assert [m["node_id"] for m in body_of(leader.call("GET", "/cluster/members"))] == ["n1", "n2", "n3"]
    join = leader.call("POST", "/cluster/join",
                       {"node_id": "n4", "raft": "10.0.0.4:7001", "http": "10.0.0.4:7000"})
    assert join.status == 202 and body_of(join)["status"] == "learner"
    again = leader.call("POST", "/cluster/join",
                        {"node_id": "n2", "raft": "10.0.0.2:7001", "http": "10.0.0.2:7000"})
    assert again.status == 200 and body_of(again)["status"] == "voter"
    assert body_of(leader.call("DELETE", "/cluster/nodes/n4")) == {"removed": "n4"}
    assert leader.call("DELETE", "/cluster/nodes/n4").status == 404


BAD_REQUESTS = [
    # (method, target, body, headers, status): what a client may send must never be a 500
    ("PUT", "/kv/k", b"not json", {}, 400),
    ("PUT", "/kv/k", b"", {}, 400),
    ("PUT", "/kv/k", b'{"value": 5}', {}, 400),
    ("PUT", "/kv/k", b'\xff\xfe{"value": "x"}', {}, 400),
    ("PUT", "/kv/", b'{"value": "x"}', {}, 400),
    ("GET", "/kv/", b"", {}, 400),
    ("DELETE", "/kv/", b"", {}, 400),
    ("PUT", "/kv/adm%ffin", b'{"value": "x"}', {}, 400),     # once written as key "admin"
    ("GET", "/kv/adm%ffin", b"", {}, 400),
    ("DELETE", "/kv/%zz", b"", {}, 400),
    ("PUT", "/kv/\xff", b'{"value": "x"}', {}, 400),
    ("PUT", "/kv/a%00b", b'{"value": "x"}', {}, 400),
    ("PUT", "/kv/" + "k" * 1025, b'{"value": "x"}', {}, 400),
    ("PUT", "/kv/k", b'{"value": "x"}', {"If-Match": "\u00b9"}, 400),
    ("PUT", "/kv/k", b'{"value": "x"}', {"If-Match": "\u0663"}, 400),
    ("PUT", "/kv/k", b'{"value": "x"}', {"If-Match": "9" * 40}, 400),
    ("PUT", "/kv/k", b'{"value": "x"}', {"If-None-Match": "abc"}, 400),
    ("PUT", "/kv/k", b'{"value": "' + b"x" * 1001 + b'"}', {}, 413),
    ("GET", "/kv?limit=\u00b9", b"", {}, 400),
    ("GET", "/kv?limit=" + "9" * 5000, b"", {}, 400),
    ("GET", "/kv?prefix=%ff", b"", {}, 400),
    ("GET", "/kv?stale=maybe", b"", {}, 400),
    ("GET", "/kv/k?stale=maybe", b"", {}, 400),
    ("GET", "/kv/k?stale=%", b"", {}, 400),
    ("GET", "/nope", b"", {}, 404),
    ("POST", "/kv/k", b'{"value": "x"}', {}, 405),
    ("PATCH", "/kv/k", b'{"value": "x"}', {}, 405),
    ("DELETE", "/kv", b"", {}, 405),
    ("PUT", "/cluster/status", b"{}", {}, 405),
    ("POST", "/cluster/join", b"nope", {}, 400),
    ("POST", "/cluster/join", b'{"node_id": "x", "raft": "nohost", "http": "127.0.0.1:1"}', {}, 400),
    ("DELETE", "/cluster/nodes/ghost", b"", {}, 404),
    ("DELETE", "/cluster/nodes/%ff", b"", {}, 400),
]


# the leader, and a follower (which checks the input before passing anything on)
@pytest.mark.parametrize("node_id", ["n1", "n2"])
def test_bad_input_is_a_4xx_json_error(node_id: str) -> None:
    cluster = api_cluster()
    node = cluster[node_id]
    problems = []
    for method, target, body, headers, status in BAD_REQUESTS:
        resp = node.call(method, target, headers=headers, body=body)
        try:
            assert resp.status == status, f"HTTP {resp.status}"
            assert isinstance(body_of(resp)["error"], str)
        except AssertionError as exc:
            problems.append(f"{method} {target[:50]} {body[:40]!r} {headers}: {exc}: {resp.body[:200]!r}")
    assert not problems, "\n".join(problems)
    assert cluster["n1"].raft.store.data == {}
    assert cluster["n1"].raft.changes == []


def test_unavailable_is_503_with_retry_after_and_the_leader() -> None:
    node = api_cluster()["n1"]
    node.raft.lose_quorum()
    resp = node.call("PUT", "/kv/k", {"value": "x"})
    assert resp.status == 503 and dict(resp.headers)["Retry-After"] == "1"
    assert body_of(resp)["leader"] == "n1"


def test_without_a_leader_every_leader_only_route_is_503_leader_null() -> None:
    node = api_cluster(leader=None)["n2"]
    for method, target, payload in (("PUT", "/kv/k", {"value": "x"}), ("GET", "/kv/k", None),
                                    ("DELETE", "/kv/k", None), ("GET", "/kv", None), ("GET", "/ready", None),
                                    ("POST", "/cluster/leave", None)):
        resp = node.call(method, target, payload)
        assert resp.status == 503, (method, target, resp)
        assert int(dict(resp.headers)["Retry-After"]) >= 1
        assert body_of(resp)["leader"] is None
    assert node.call("GET", "/kv/k?stale=true").status == 404   # local: the key simply is not there


def test_deeply_nested_json_is_a_400_not_a_500() -> None:
    nodes = api_cluster()
    deep = b"[" * 4_000 + b"]" * 4_000   # deeper than the decoder recurses, within the body limit
    for target, method in (("/kv/k", "PUT"), ("/cluster/join", "POST")):
        resp = nodes["n1"].call(method, target, body=b'{"value": ' + deep + b"}")
        assert resp.status == 400, (target, resp.status, resp.body[:200])
        assert b"error" in resp.body

"""One "not the leader" strategy, and the internal headers honoured from peers only (in-process)."""
from __future__ import annotations

import json

import pytest

from axon.testing.inprocess import CLIENT_HOST, ApiNode, api_cluster, request
from axon.web.peers import FORWARDED, ORIGIN, SIGNATURE, TIMESTAMP, MAX_CLOCK_SKEW, PeerTrust
from axon.web.wire import Request, Response

KEY = b"k" * 32


def body_of(resp: Response) -> dict:
    assert ("Content-Type", "application/json") in resp.headers, resp
    return json.loads(resp.body)


def host_of(node: ApiNode) -> str:
    return node.service.config.http.rpartition(":")[0]


# ---------------------------------------------------------------------- forwarding
def test_a_follower_passes_writes_and_reads_on_and_answers_with_the_leaders_result() -> None:
    nodes = api_cluster()
    n1, n2 = nodes["n1"], nodes["n2"]
    put = n2.call("PUT", "/kv/k", {"value": "v"})
    assert put.status == 200 and body_of(put) == {"key": "k", "value": "v", "revision": 1}
    assert n1.raft.store.get("k") == ("v", 1) and n2.raft.store.get("k") is None
    [sent] = n1.net.sent
    assert (sent.method, sent.path, sent.body) == ("PUT", "/kv/k", b'{"value": "v"}')
    assert sent.headers[FORWARDED] == "1" and sent.headers[ORIGIN] == "n2"
    assert body_of(n2.call("GET", "/kv/k")) == body_of(put)
    assert body_of(n2.call("GET", "/kv?prefix=k&limit=5"))["items"] == [body_of(put)]
    assert n1.net.sent[-1].path == "/kv" and n1.net.sent[-1].query == "prefix=k&limit=5"
    assert n2.call("GET", "/kv/k?stale=true").status == 404   # stale: n2's own (empty) copy
    assert body_of(n2.call("DELETE", "/kv/k"))["key"] == "k"
    assert n1.raft.store.get("k") is None


def test_conditions_travel_and_the_leaders_refusal_comes_back_as_is() -> None:
    nodes = api_cluster()
    n1, n2 = nodes["n1"], nodes["n2"]
    first = body_of(n1.call("PUT", "/kv/k", {"value": "a"}))
    clash = n2.call("PUT", "/kv/k", {"value": "b"}, {"If-Match": str(first["revision"] + 5)})
    assert clash.status == 412 and body_of(clash)["revision"] == first["revision"]
    assert n2.call("PUT", "/kv/k", {"value": "b"}, {"If-None-Match": "*"}).status == 412
    assert n2.call("DELETE", "/kv/k", headers={"If-Match": str(first["revision"])}).status == 200
    n1.raft.lose_quorum()
    busy = n2.call("PUT", "/kv/k", {"value": "c"})
    assert busy.status == 503 and dict(busy.headers)["Retry-After"] == "1"
    assert body_of(busy)["leader"] == "n1"


def test_join_through_a_follower_is_the_leaders_answer() -> None:
    nodes = api_cluster()
    answer = nodes["n3"].call("POST", "/cluster/join",
                              {"node_id": "n4", "raft": "10.0.0.4:7001", "http": "10.0.0.4:7000"})
    assert answer.status == 202 and body_of(answer)["status"] == "learner"
    assert [(c.op, c.node_id) for c in nodes["n1"].raft.changes] == [("add_learner", "n4")]
    assert nodes["n3"].raft.changes == []


def test_leave_through_a_follower_removes_that_follower() -> None:
    nodes = api_cluster()
    resp = nodes["n2"].call("POST", "/cluster/leave")
    assert resp.status == 200 and body_of(resp) == {"removed": "n2"}
    assert [(c.op, c.node_id) for c in nodes["n1"].raft.changes] == [("remove", "n2")]
    [sent] = nodes["n1"].net.sent
    assert (sent.method, sent.path, sent.body) == ("DELETE", "/cluster/nodes/n2", b"")


def test_remove_through_a_follower() -> None:
    nodes = api_cluster()
    assert body_of(nodes["n2"].call("DELETE", "/cluster/nodes/n3")) == {"removed": "n3"}
    assert [(c.op, c.node_id) for c in nodes["n1"].raft.changes] == [("remove", "n3")]


def test_a_request_is_passed_on_at_most_once() -> None:
    nodes = api_cluster()
    nodes["n2"].raft.follow("n3")   # n2 and n3 each believe the other leads
    nodes["n3"].raft.follow("n2")
    resp = nodes["n2"].call("PUT", "/kv/k", {"value": "x"})
    assert resp.status == 503 and body_of(resp)["leader"] == "n2"   # n3's answer: it knows n2 as leader
    assert int(dict(resp.headers)["Retry-After"]) >= 1
    assert len(nodes["n1"].net.sent) == 1


def test_an_unreachable_leader_is_503() -> None:
    nodes = api_cluster()
    nodes["n1"].net.detach("10.0.0.1:7000")
    resp = nodes["n2"].call("GET", "/kv/k")
    assert resp.status == 503 and body_of(resp)["leader"] == "n1"
    assert "unreachable" in body_of(resp)["error"]


# ---------------------------------------------------------------------- internal headers, no cluster key
def test_a_client_posing_as_a_forwarding_member_is_treated_as_a_client() -> None:
    nodes = api_cluster()
    n1, n2 = nodes["n1"], nodes["n2"]
    for headers in ({"X-Axon-Forwarded": "1", "X-Axon-Origin": "n1"}, {"X-Axon-Forwarded": "1"},
                    {"X-Axon-Forwarded": "\u00b9", "X-Axon-Origin": "n3"}, {"X-Axon-Origin": "ghost"},
                    {"X-Axon-Forwarded": "9" * 5000, "X-Axon-Origin": "n2"}):
        resp = n2.call("PUT", "/kv/k", {"value": "x"}, headers)
        assert resp.status == 200, (headers, resp)   # passed on to the leader as any request
        assert n1.net.sent[-1].headers[FORWARDED] == "1"
        assert n1.net.sent[-1].headers[ORIGIN] == "n2"
        assert n1.call("GET", "/kv/k", headers=headers).status == 200   # the leader serves it


def test_without_a_key_a_members_host_may_use_the_internal_headers() -> None:
    nodes = api_cluster()
    n2, n3 = nodes["n2"], nodes["n3"]
    honoured = n2.call("PUT", "/kv/k", {"value": "x"}, {"X-Axon-Forwarded": "1", "X-Axon-Origin": "n3"},
                       remote=host_of(n3))
    assert honoured.status == 503   # forwarded already: not passed on a second time
    posing = n2.call("PUT", "/kv/k", {"value": "x"}, {"X-Axon-Forwarded": "1", "X-Axon-Origin": "n1"},
                     remote=host_of(n3))
    assert posing.status == 200     # n3's host is not n1's: stripped


def test_a_removed_members_forward_is_refused_and_a_client_naming_it_is_not() -> None:
    nodes = api_cluster()
    n1, n3 = nodes["n1"], nodes["n3"]
    assert body_of(n1.call("DELETE", "/cluster/nodes/n3")) == {"removed": "n3"}
    # n3 never learns of it and goes on passing writes to n1
    refused = n1.call("PUT", "/kv/k", {"value": "x"}, {"X-Axon-Forwarded": "1", "X-Axon-Origin": "n3"},
                      remote=host_of(n3))
    assert refused.status == 503 and "not a member" in body_of(refused)["error"]
    client = n1.call("PUT", "/kv/k", {"value": "x"}, {"X-Axon-Forwarded": "1", "X-Axon-Origin": "n3"})
    assert client.status == 200


# ---------------------------------------------------------------------- internal headers, with a cluster key
def test_with_a_key_signed_forwards_work_and_unsigned_headers_are_stripped() -> None:
    nodes = api_cluster(cluster_key=KEY)
    n1, n2, n3 = nodes["n1"], nodes["n2"], nodes["n3"]
    assert n2.call("PUT", "/kv/k", {"value": "x"}).status == 200
    sent = n1.net.sent[-1]
    assert len(sent.headers[SIGNATURE]) == 64 and sent.headers[TIMESTAMP].isdigit()
    # from n3's own host, but unsigned: a key makes the address worth nothing
    unsigned = n2.call("PUT", "/kv/k", {"value": "y"}, {"X-Axon-Forwarded": "1", "X-Axon-Origin": "n3"},
                       remote=host_of(n3))
    assert unsigned.status == 200
    n2.raft.follow("n3")   # n2 and n3 each believe the other leads: the signed second hop is refused
    n3.raft.follow("n2")
    resp = n2.call("PUT", "/kv/k", {"value": "z"})
    assert resp.status == 503 and len(n1.net.sent) == 3   # n2 -> n3 once, and no further


def signed(trust: PeerTrust, method: str, target: str, **changes: str) -> Request:
    headers = trust.forward_headers(method, target, 1)
    headers.update(changes)
    return request(method, target, headers=headers, remote=CLIENT_HOST)


class Members:
    def __init__(self, addresses: dict[str, str]) -> None:
        self.addresses = addresses

    def member_addresses(self) -> dict[str, str]:
        return self.addresses

    def known_addresses(self) -> dict[str, str]:
        return self.addresses

    def leader(self) -> str | None:
        return "n1"


def judge(trust: PeerTrust, req: Request) -> Request | int:
    """The request as the endpoint gets it, or the status the middleware answered with."""
    reached: list[Request] = []

    def endpoint(r: Request) -> Response:
        reached.append(r)
        return Response(200, [], b"")
    try:
        trust(req, endpoint)
    except Exception as exc:   # Unavailable, answered 503 by the error middleware
        return type(exc).__name__  # type: ignore[return-value]
    return reached[0]


@pytest.mark.parametrize("tamper,kept", [
    ({}, True),
    ({TIMESTAMP: "0"}, False),                         # too old
    ({SIGNATURE: "0" * 64}, False),
    ({SIGNATURE: "\u00e9" * 64}, False),               # not even hex: no error either
    ({TIMESTAMP: "\u00b9"}, False),
    ({ORIGIN: "n3"}, False),                           # signed for n2
])
def test_signature_checks(tamper: dict, kept: bool) -> None:
    clock = [1_700_000_000.0]
    members = Members({"n1": "10.0.0.1:7000", "n2": "10.0.0.2:7000", "n3": "10.0.0.3:7000"})
    sender = PeerTrust("n2", KEY, members, clock=lambda: clock[0])
    receiver = PeerTrust("n1", KEY, members, clock=lambda: clock[0] + MAX_CLOCK_SKEW - 1)
    seen = judge(receiver, signed(sender, "PUT", "/kv/k", **tamper))
    assert isinstance(seen, Request)
    assert (FORWARDED in seen.headers and ORIGIN in seen.headers) is kept
    if not kept:
        assert not any(name in seen.headers for name in (FORWARDED, ORIGIN, SIGNATURE, TIMESTAMP))


def test_a_signature_covers_method_target_and_time() -> None:
    members = Members({"n1": "10.0.0.1:7000", "n2": "10.0.0.2:7000"})
    sender = PeerTrust("n2", KEY, members, clock=lambda: 1000.0)
    late = PeerTrust("n1", KEY, members, clock=lambda: 1000.0 + MAX_CLOCK_SKEW + 1)
    other_key = PeerTrust("n1", b"x" * 32, members, clock=lambda: 1000.0)
    in_time = PeerTrust("n1", KEY, members, clock=lambda: 1000.0)
    good = sender.forward_headers("PUT", "/kv/k", 1)
    assert ORIGIN in judge(in_time, request("PUT", "/kv/k", headers=good)).headers
    for receiver, method, target in ((late, "PUT", "/kv/k"), (other_key, "PUT", "/kv/k"),
                                     (in_time, "DELETE", "/kv/k"), (in_time, "PUT", "/kv/other")):
        seen = judge(receiver, request(method, target, headers=good))
        assert isinstance(seen, Request) and ORIGIN not in seen.headers, (method, target)


def test_a_signed_forward_from_a_former_member_is_refused() -> None:
    sender = PeerTrust("n3", KEY, Members({}), clock=lambda: 1000.0)
    members = Members({"n1": "10.0.0.1:7000", "n2": "10.0.0.2:7000"})
    receiver = PeerTrust("n1", KEY, members, clock=lambda: 1000.0)
    assert judge(receiver, signed(sender, "PUT", "/kv/k")) == "Unavailable"

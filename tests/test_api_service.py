"""The API's rules in-process: KVService against a fake Raft node (no sockets, no processes)."""
from __future__ import annotations

import json
from typing import Iterator

import pytest

from axon.api.admission import MAX_SKEW, JoinAdmission, join_key, make_proof
from axon.api.errors import (Conflict, InvalidInput, NotFound, NotLeader, RevisionMismatch,
                             TooLarge, Unauthenticated, Unavailable)
from axon.api.service import KVService
from axon.api.validate import JoinRequest
from axon.client.http import HttpPool
from axon.config import NodeConfig
from axon.raft.types import Member
from axon.testing.fake_raft import FakeRaftNode

MEMBERS = {f"n{i}": Member(f"10.0.0.{i}:7001", f"10.0.0.{i}:7000") for i in (1, 2, 3)}


def body(value: object) -> bytes:
    return json.dumps({"value": value}).encode()


@pytest.fixture
def node() -> FakeRaftNode:
    return FakeRaftNode("n1", MEMBERS, leader="n1")


@pytest.fixture
def service(node: FakeRaftNode, tmp_path) -> Iterator[KVService]:
    config = NodeConfig(node_id="n1", data_dir=str(tmp_path), http=MEMBERS["n1"].http,
                        raft=MEMBERS["n1"].raft, max_value_bytes=100)
    pool = HttpPool()
    try:
        yield KVService(config, node, node.store, pool)
    finally:
        pool.close()


# ---------------------------------------------------------------------- keys
def test_put_get_delete(service: KVService) -> None:
    put = service.put("a/b", body("v1"))
    assert put == {"key": "a/b", "value": "v1", "revision": put["revision"]}
    assert service.get("a/b") == put
    again = service.put("a/b", body("v2"))
    assert again["revision"] > put["revision"]
    deleted = service.delete("a/b")
    assert deleted["key"] == "a/b" and deleted["value"] == "v2"
    with pytest.raises(NotFound) as err:
        service.get("a/b")
    assert err.value.details == {"key": "a/b"}
    with pytest.raises(NotFound):
        service.delete("a/b")


def test_if_match_compares_revisions(service: KVService) -> None:
    first = service.put("k", body("a"))
    with pytest.raises(RevisionMismatch) as err:
        service.put("k", body("b"), if_match=str(first["revision"] + 1))
    assert err.value.details == {"key": "k", "revision": first["revision"]}
    swapped = service.put("k", body("b"), if_match=f'"{first["revision"]}"')   # ETag quotes
    assert swapped["value"] == "b"
    with pytest.raises(RevisionMismatch):
        service.delete("k", if_match=str(first["revision"]))
    assert service.delete("k", if_match=str(swapped["revision"]))["key"] == "k"
    assert service.put("k", body("c"), if_match="0")["value"] == "c"   # 0: must be absent


def test_if_none_match_star_creates_only(service: KVService) -> None:
    created = service.put("k", body("a"), if_none_match="*")
    with pytest.raises(RevisionMismatch) as err:
        service.put("k", body("b"), if_none_match="*")
    assert err.value.details["revision"] == created["revision"]
    assert service.get("k")["value"] == "a"


def test_list_pages_in_key_order(service: KVService) -> None:
    for key in ("p/3", "p/1", "q/1", "p/2"):
        service.put(key, body(key))
    page = service.list("p/", "2")
    assert [i["key"] for i in page["items"]] == ["p/1", "p/2"] and page["next"] == "p/2"
    rest = service.list("p/", "2", after=page["next"])
    assert [i["key"] for i in rest["items"]] == ["p/3"] and rest["next"] is None
    assert len(service.list()["items"]) == 4
    assert service.list(stale="true") == service.list()


@pytest.mark.parametrize("call", [
    lambda s: s.put("", body("x")),
    lambda s: s.put("a\x00b", body("x")),
    lambda s: s.put("k" * 1025, body("x")),
    lambda s: s.put("\ud800", body("x")),
    lambda s: s.put("k", b"not json"),
    lambda s: s.put("k", b""),
    lambda s: s.put("k", b"[1]"),
    lambda s: s.put("k", b"{}"),
    lambda s: s.put("k", body(5)),
    lambda s: s.put("k", body("\ud800")),
    lambda s: s.put("k", body("x"), if_match="abc"),
    lambda s: s.put("k", body("x"), if_match="-1"),
    lambda s: s.put("k", body("x"), if_match="\u00b9"),      # a Unicode digit: isdigit() says yes
    lambda s: s.put("k", body("x"), if_match="\u0663"),      # ARABIC-INDIC DIGIT THREE
    lambda s: s.put("k", body("x"), if_match="9" * 40),
    lambda s: s.put("k", body("x"), if_none_match="abc"),
    lambda s: s.delete("k", if_match="x"),
    lambda s: s.get("k", stale="maybe"),
    lambda s: s.list(limit="0"),
    lambda s: s.list(limit="1001"),
    lambda s: s.list(limit="\u00b9"),
    lambda s: s.list(limit="9" * 5000),
    lambda s: s.list(stale="maybe"),
    lambda s: s.join(b"nope"),
    lambda s: s.join(b"{}"),
    lambda s: s.join(json.dumps({"node_id": "bad id!", "raft": "h:1", "http": "h:2"}).encode()),
    lambda s: s.join(json.dumps({"node_id": "x", "raft": "nohost", "http": "h:2"}).encode()),
    lambda s: s.join(json.dumps({"node_id": 5, "raft": "h:1", "http": "h:2"}).encode()),
    # join addresses go through the one strict parser: the leader will connect where they say
    lambda s: s.join(json.dumps({"node_id": "x", "raft": "h:1\n", "http": "h:2"}).encode()),
    lambda s: s.join(json.dumps({"node_id": "x", "raft": "h\u0000:1", "http": "h:2"}).encode()),
    lambda s: s.join(json.dumps({"node_id": "x", "raft": "h:1", "http": "h:7\u00b2"}).encode()),
    lambda s: s.join(json.dumps({"node_id": "x", "raft": "h:1", "http": "h :2"}).encode()),
    lambda s: s.join(json.dumps({"node_id": "x", "raft": "h:1", "http": "h:2", "gossip": "h:\t3"}).encode()),
    lambda s: s.join(json.dumps({"node_id": "x", "raft": "h:1", "http": "h:2", "gossip": 5}).encode()),
    lambda s: s.join(json.dumps({"node_id": "x", "raft": "h:1", "http": "h:2", "cluster_id": "ABC"}).encode()),
    lambda s: s.join(json.dumps({"node_id": "x", "raft": "h:1", "http": "h:2", "cluster_id": 7}).encode()),
])
def test_bad_input_is_invalid_input(service: KVService, call) -> None:
    with pytest.raises(InvalidInput):
        call(service)
    assert service.list()["items"] == []


def test_value_limit_counts_utf8_bytes(service: KVService) -> None:
    assert service.put("k", body("é" * 50))["value"] == "é" * 50
    for value in ("x" * 101, "é" * 51):
        with pytest.raises(TooLarge):
            service.put("k", body(value))
    with pytest.raises(TooLarge):
        service.put("k", b'{"value": "' + b"x" * 10_000 + b'"}')


# ---------------------------------------------------------------------- leadership
def test_a_follower_refuses_leader_only_operations_naming_the_leader(service: KVService,
                                                                    node: FakeRaftNode) -> None:
    service.put("k", body("v"))
    node.follow("n2")
    for call in (lambda: service.put("k", body("x")), lambda: service.delete("k"),
                 lambda: service.get("k"), lambda: service.list(),
                 lambda: service.remove("n3"), lambda: service.leave(),
                 lambda: service.join(json.dumps({"node_id": "n4", "raft": "h:1", "http": "h:2"}).encode())):
        with pytest.raises(NotLeader) as err:
            call()
        assert (err.value.leader, err.value.leader_http) == ("n2", MEMBERS["n2"].http)
    assert service.get("k", stale="true")["value"] == "v"   # a stale read stays local
    assert service.list(stale="1")["items"][0]["key"] == "k"
    assert node.changes == []


def test_without_a_leader_not_leader_names_nobody(service: KVService, node: FakeRaftNode) -> None:
    node.follow(None)
    with pytest.raises(NotLeader) as err:
        service.put("k", body("x"))
    assert (err.value.leader, err.value.leader_http) == (None, None)


def test_no_quorum_is_unavailable_with_the_leader(service: KVService, node: FakeRaftNode) -> None:
    node.lose_quorum()
    for call in (lambda: service.put("k", body("x")), lambda: service.get("k"), lambda: service.remove("n3")):
        with pytest.raises(Unavailable) as err:
            call()
        assert not isinstance(err.value, NotLeader)
        assert err.value.leader == "n1" and err.value.retry_after >= 1


# ---------------------------------------------------------------------- membership
def join_body(node_id: str, raft: str, http: str) -> bytes:
    return json.dumps({"node_id": node_id, "raft": raft, "http": http}).encode()


def test_join_adds_a_learner_once_and_names_every_member(service: KVService, node: FakeRaftNode) -> None:
    answer = service.join(join_body("n4", "10.0.0.4:7001", "10.0.0.4:7000"))
    assert answer["status"] == "learner" and answer["leader"] == "n1"
    assert answer["members"]["n4"] == {"raft": "10.0.0.4:7001", "http": "10.0.0.4:7000", "gossip": ""}
    assert set(answer["members"]) == {"n1", "n2", "n3", "n4"}
    assert service.join(join_body("n4", "10.0.0.4:7001", "10.0.0.4:7000"))["status"] == "learner"
    assert [c.op for c in node.changes] == ["add_learner"]   # asking again adds nothing
    assert service.join(join_body("n2", MEMBERS["n2"].raft, MEMBERS["n2"].http))["status"] == "voter"


def test_join_with_other_addresses_is_a_conflict(service: KVService) -> None:
    with pytest.raises(Conflict):
        service.join(join_body("n2", "10.9.9.9:1", MEMBERS["n2"].http))


def test_remove_and_leave(service: KVService, node: FakeRaftNode) -> None:
    with pytest.raises(NotFound):
        service.remove("ghost")
    assert service.remove("n3") == {"removed": "n3"}
    assert "n3" not in node.config.voters
    assert service.leave() == {"removed": "n1"}
    assert set(node.config.voters) == {"n2"} and node.leader_id is None


def test_member_addresses_and_members_without_gossip(service: KVService) -> None:
    assert service.member_addresses() == {nid: m.http for nid, m in MEMBERS.items()}
    assert [(m["node_id"], m["status"], m["http"]) for m in service.members()] == \
        [(nid, "unknown", m.http) for nid, m in sorted(MEMBERS.items())]


def test_status_names_every_member_and_the_leader(service: KVService) -> None:
    st = service.status()
    assert (st["node_id"], st["leader"], st["leader_http"]) == ("n1", "n1", MEMBERS["n1"].http)
    assert [n["node_id"] for n in st["nodes"]] == ["n1", "n2", "n3"]
    assert all(n["voter"] and n["online"] is None for n in st["nodes"])


def test_health_and_ready(service: KVService, node: FakeRaftNode) -> None:
    assert service.health() == {"status": "ok", "node_id": "n1"}
    assert service.ready() == {"status": "ready", "leader": "n1"}
    node.lag(101)
    with pytest.raises(Unavailable, match="catching up"):
        service.ready()
    node.lag(0)
    node.follow(None)
    with pytest.raises(Unavailable) as err:
        service.ready()
    assert err.value.leader is None


# ---------------------------------------------------------------------- join admission
KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
CLUSTER = "0123456789abcdef0123456789abcdef"
N4 = JoinRequest("n4", "10.0.0.4:7001", "10.0.0.4:7000", "10.0.0.4:7002")


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def keyed(node: FakeRaftNode, clock: Clock, tmp_path) -> Iterator[KVService]:
    """The leader of a cluster with a key and an id."""
    config = NodeConfig(node_id="n1", data_dir=str(tmp_path), http=MEMBERS["n1"].http,
                        raft=MEMBERS["n1"].raft, cluster_key=KEY)
    pool = HttpPool()
    try:
        yield KVService(config, node, node.store, pool, cluster_id=lambda: CLUSTER,
                        admission=JoinAdmission(KEY, clock=clock, max_nonces=8))
    finally:
        pool.close()


def signed_body(req: JoinRequest, key: bytes = KEY, clock: Clock | None = None, **changes: object) -> bytes:
    """A join body for ``req`` with a proof under ``key``; ``changes`` alter the body after signing."""
    proof = make_proof(join_key(key), req, clock or Clock())
    data: dict = {"node_id": req.node_id, "raft": req.raft, "http": req.http, "gossip": req.gossip,
                  "proof": proof}
    if req.cluster_id is not None:
        data["cluster_id"] = req.cluster_id
    data.update(changes)
    return json.dumps(data).encode()


def test_a_join_proving_the_key_is_admitted_and_names_the_cluster(keyed: KVService, node: FakeRaftNode,
                                                                    clock: Clock) -> None:
    answer = keyed.join(signed_body(N4, clock=clock))
    assert answer["status"] == "learner" and answer["cluster_id"] == CLUSTER
    assert [(c.op, c.node_id) for c in node.changes] == [("add_learner", "n4")]
    assert keyed.status()["cluster_id"] == CLUSTER and keyed.status()["join_requires_proof"] is True
    # a joiner that already belongs to this cluster names it, and is admitted as well
    member = JoinRequest("n2", MEMBERS["n2"].raft, MEMBERS["n2"].http, cluster_id=CLUSTER)
    assert keyed.join(signed_body(member, clock=clock))["status"] == "voter"


@pytest.mark.parametrize("make_body", [
    lambda clock: json.dumps({"node_id": "n4", "raft": N4.raft, "http": N4.http}).encode(),   # no proof
    lambda clock: signed_body(N4, OTHER_KEY, clock),                                          # another key
    lambda clock: signed_body(N4, clock=clock, http="10.6.6.6:7000"),        # the proof of another request
    lambda clock: signed_body(N4, clock=clock, node_id="n5"),
    lambda clock: signed_body(N4, clock=clock, gossip=""),
    lambda clock: signed_body(N4, clock=clock, cluster_id=CLUSTER),          # a field added after signing
    lambda clock: signed_body(N4, clock=Clock(clock.now - MAX_SKEW - 1)),    # too old
    lambda clock: signed_body(N4, clock=Clock(clock.now + MAX_SKEW + 1)),    # too far ahead
    lambda clock: signed_body(N4, clock=clock, proof="nope"),
    lambda clock: signed_body(N4, clock=clock, proof={"time": True, "nonce": "00" * 16, "mac": "00" * 32}),
    lambda clock: signed_body(N4, clock=clock, proof={"time": 10 ** 400, "nonce": "00" * 16, "mac": "00" * 32}),
    lambda clock: signed_body(N4, clock=clock, proof={"time": int(clock.now), "nonce": "00", "mac": "00" * 32}),
    lambda clock: signed_body(N4, clock=clock, proof={"time": int(clock.now), "nonce": "00" * 16, "mac": "AB" * 32}),
])
def test_a_join_without_a_valid_proof_is_refused_and_changes_nothing(keyed: KVService, node: FakeRaftNode,
                                                                     clock: Clock, make_body, caplog) -> None:
    with pytest.raises(Unauthenticated) as err:
        keyed.join(make_body(clock))
    assert err.value.message.startswith("join refused: ") and "cluster key" in err.value.message
    assert node.changes == []
    [line] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert line.startswith("join refused: ") and "(node n" in line and "raft " in line


def test_a_proof_admits_once(keyed: KVService, node: FakeRaftNode, clock: Clock) -> None:
    once = signed_body(N4, clock=clock)
    assert keyed.join(once)["status"] == "learner"
    with pytest.raises(Unauthenticated, match="used before"):
        keyed.join(once)
    assert keyed.join(signed_body(N4, clock=clock))["status"] == "learner"   # a fresh proof is fine
    assert len(node.changes) == 1


def test_nonces_are_forgotten_once_out_of_the_window_and_their_number_is_bounded(keyed: KVService,
                                                                                clock: Clock) -> None:
    for _ in range(8):
        keyed.join(signed_body(N4, clock=clock))
    with pytest.raises(Unavailable, match="too many joins"):   # max_nonces=8 within one window
        keyed.join(signed_body(N4, clock=clock))
    clock.now += MAX_SKEW + 1
    keyed.join(signed_body(N4, clock=clock))                 # the old ones aged out


def test_a_wrong_proof_is_not_remembered(keyed: KVService, clock: Clock) -> None:
    """Only a verified proof takes a place in the replay memory: no key, no filling it."""
    for _ in range(20):
        with pytest.raises(Unauthenticated):
            keyed.join(signed_body(N4, OTHER_KEY, clock))
    assert keyed.join(signed_body(N4, clock=clock))["status"] == "learner"


def test_a_joiner_of_another_cluster_is_refused(keyed: KVService, node: FakeRaftNode, clock: Clock,
                                                caplog) -> None:
    other = JoinRequest(**{**N4.__dict__, "cluster_id": "f" * 32})
    with pytest.raises(Conflict) as err:
        keyed.join(signed_body(other, clock=clock))
    assert err.value.message == f"join refused: node n4 belongs to cluster {'f' * 32}, not {CLUSTER}; refusing"
    assert err.value.details == {"cluster_id": CLUSTER}
    assert node.changes == []
    assert any("belongs to cluster" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")


def test_a_cluster_without_an_id_refuses_a_joiner_that_names_one(service: KVService, node: FakeRaftNode) -> None:
    with pytest.raises(Conflict, match="which has no id"):
        service.join(json.dumps({"node_id": "n4", "raft": N4.raft, "http": N4.http, "cluster_id": CLUSTER}).encode())
    assert node.changes == []


def test_without_a_key_joins_need_no_proof_and_a_proof_is_ignored(service: KVService) -> None:
    assert service.join(join_body("n4", N4.raft, N4.http))["status"] == "learner"
    assert service.join(signed_body(N4, OTHER_KEY))["status"] == "learner"
    assert service.status()["cluster_id"] is None and service.status()["join_requires_proof"] is False


def test_a_follower_passes_a_join_on_without_judging_its_proof(keyed: KVService, node: FakeRaftNode,
                                                               clock: Clock) -> None:
    """The leader verifies (and remembers the nonce); a follower must not use the proof up."""
    node.follow("n2")
    body_once = signed_body(N4, clock=clock)
    with pytest.raises(NotLeader):
        keyed.join(body_once)
    with pytest.raises(NotLeader):
        keyed.join(b'{"node_id": "n4", "raft": "10.0.0.4:7001", "http": "10.0.0.4:7000"}')   # no proof
    node.lead()
    assert keyed.join(body_once)["status"] == "learner"


def test_a_disk_alarm_anywhere_refuses_what_adds_data_and_nothing_else(node: FakeRaftNode, tmp_path) -> None:
    """Puts, txns with puts and lease grants get NoSpace (507); deletes and reads go on."""
    from axon.api.errors import NoSpace
    config = NodeConfig(node_id="n1", data_dir=str(tmp_path), http=MEMBERS["n1"].http,
                        raft=MEMBERS["n1"].raft)
    alarms: list[str] = []
    pool = HttpPool()
    try:
        service = KVService(config, node, node.store, pool, alarms=lambda: [],
                            cluster_alarms=lambda: alarms)
        service.put("k", body("v"))
        alarms.append("nospace")
        for refused in (lambda: service.put("k2", body("v")),
                        lambda: service.txn(service.parse_txn(json.dumps(
                            {"compare": [], "success": [{"op": "put", "key": "k3", "value": "v"}],
                             "failure": []}).encode())),
                        lambda: service.leases.grant(b'{"ttl": 10}')):
            with pytest.raises(NoSpace):
                refused()
        assert service.get("k")["value"] == "v"
        service.txn(service.parse_txn(json.dumps(
            {"compare": [], "success": [{"op": "get", "key": "k"}], "failure": []}).encode()))
        service.delete("k")
        alarms.clear()
        service.put("k2", body("v"))
    finally:
        pool.close()

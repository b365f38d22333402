"""Leases without sockets: the commands' wire form, the applied table (in the store: persisted,
snapshotted), the leader's deadlines, and the API's parsing and answers over a fake Raft node."""
from __future__ import annotations

import json

import pytest

from axon.api.auth import token_hash
from axon.api.errors import Conflict, InvalidInput, NotFound, NotLeader, TooLarge
from axon.api.leases import Deadlines, min_ttl, parse_lease_id
from axon.api.txn import parse_txn
from axon.config import NodeConfig
from axon.kv.commands import (CommandError, Delete, LeaseGrant, LeaseRevoke, Put, Txn, decode_commands,
                              encode_commands)
from axon.kv.authstate import AuthState, Grant
from axon.kv.leases import MAX_LEASE_KEYS, LeaseTable
from axon.kv.store import Slot, Store, StoreError
from axon.testing.inprocess import api_cluster
from axon.web.auth import AuthGate
from axon.web.wire import Request


def test_lease_commands_round_trip_and_a_put_without_a_lease_keeps_its_old_row() -> None:
    cmds = [LeaseGrant(5, 10), LeaseRevoke(5), LeaseRevoke(6, expired=True), LeaseRevoke(7, within="app/"),
            Put("k", "v", lease=5), Txn((), (Put("a", "1", lease=5),), ())]
    assert decode_commands(encode_commands(cmds)) == cmds
    assert encode_commands([Put("k", "v")]) == encode_commands([Put("k", "v", lease=0)])
    assert len(encode_commands([Put("k", "v")])) < len(encode_commands([Put("k", "v", lease=5)]))
    for bad in (LeaseGrant(0, 10), LeaseGrant(5, 0), LeaseGrant(-1, 5), Put("k", "v", lease=-3)):
        with pytest.raises(CommandError):
            encode_commands([bad])


def apply(store: Store, *cmds, changes: list | None = None) -> list:
    [results] = store.apply([Slot(store.applied_index + 1, 1, encode_commands(list(cmds)))], changes)
    return results


def test_the_store_attaches_detaches_and_revokes_in_one_revision(tmp_path) -> None:
    with Store.open(str(tmp_path / "s")) as store:
        assert apply(store, LeaseGrant(7, 10))[0].ok
        assert not apply(store, LeaseGrant(7, 10))[0].ok          # an id is never given twice
        r = apply(store, Put("a", "1", lease=7), Put("b", "1", lease=7), Put("c", "1", lease=7))
        assert all(x.ok for x in r)
        assert apply(store, Put("x", "1", lease=99))[0].error == "lease_not_found"
        assert store.get("x") is None
        apply(store, Put("b", "2"))                               # re-put without a lease: detached
        apply(store, Delete("c"))                                 # deleted: detached
        assert store.leases.get(7).keys == {"a"}
        changes: list = []
        [revoked] = apply(store, LeaseRevoke(7), changes=changes)
        assert revoked.ok and changes == [("a", store.applied_index, None)]
        assert store.get("a") is None and store.get("b") == ("2", 5)
        assert store.leases.get(7) is None and apply(store, LeaseRevoke(7))[0].error == "lease_not_found"


def test_a_revocation_within_a_prefix_holds_only_while_every_key_is_under_it(tmp_path) -> None:
    with Store.open(str(tmp_path / "s")) as store:
        apply(store, LeaseGrant(7, 10), Put("app/a", "1", lease=7))
        apply(store, Put("other/x", "1", lease=7))   # attached after the revoker's keys were checked
        [refused] = apply(store, LeaseRevoke(7, within="app/"))
        assert not refused.ok and refused.error == "lease_keys_outside"
        assert store.leases.get(7).keys == {"app/a", "other/x"} and store.get("other/x") is not None
        apply(store, Delete("other/x"))
        [revoked] = apply(store, LeaseRevoke(7, within="app/"))
        assert revoked.ok and store.get("app/a") is None and store.leases.get(7) is None


def test_the_auth_gate_confines_a_revocation_to_the_tokens_prefix() -> None:
    grants = {token_hash("w"): Grant("w", "write", "app/"), token_hash("root"): Grant("root", "admin", "")}
    state = AuthState(enabled=True, grants=grants)
    gate = AuthGate(lambda: state)

    def scope(token: str | None) -> str | None:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return gate.write_scope(Request("DELETE", "/leases/7", "", "HTTP/1.1", headers, b"", True))
    assert scope("w") == "app/" and scope("root") is None
    auth_off = AuthGate(lambda: AuthState())
    assert auth_off.write_scope(Request("DELETE", "/leases/7", "", "HTTP/1.1", {}, b"", True)) is None


def test_the_service_refuses_a_revocation_whose_lease_gained_a_key_outside_the_scope() -> None:
    nodes = api_cluster(3, leader="n1")
    leases, service = nodes["n1"].service.leases, nodes["n1"].service
    lease_id = leases.grant(b'{"ttl": 10}')["id"]
    service.put("app/a", b'{"value": "v"}', lease=str(lease_id))
    service.put("other/x", b'{"value": "v"}', lease=str(lease_id))
    with pytest.raises(Conflict):
        leases.revoke(str(lease_id), within="app/")
    assert leases.show(str(lease_id))["keys"] == ["app/a", "other/x"]
    assert leases.revoke(str(lease_id))["deleted"] == 2


def test_a_txn_put_takes_a_lease_and_an_unknown_lease_refuses_the_whole_txn(tmp_path) -> None:
    with Store.open(str(tmp_path / "s")) as store:
        apply(store, LeaseGrant(3, 10))
        [ok] = apply(store, Txn((), (Put("l/a", "1", lease=3), Put("l/b", "1")), ()))
        assert ok.ok and store.leases.get(3).keys == {"l/a"}
        [refused] = apply(store, Txn((), (Put("l/c", "1"),), (Put("l/d", "1", lease=4),)))
        assert not refused.ok and refused.error == "lease_not_found" and store.get("l/c") is None


def test_a_lease_holds_a_bounded_number_of_keys(tmp_path) -> None:
    with Store.open(str(tmp_path / "s")) as store:
        apply(store, LeaseGrant(3, 10))
        apply(store, *[Put(f"k{i}", "v", lease=3) for i in range(MAX_LEASE_KEYS)])
        assert apply(store, Put("one-more", "v", lease=3))[0].error == "lease_full"
        assert apply(store, Put("k1", "again", lease=3))[0].ok   # already attached: no new key


def test_leases_persist_across_reopen_and_travel_in_snapshots(tmp_path) -> None:
    path = str(tmp_path / "s")
    with Store.open(path) as store:
        apply(store, LeaseGrant(1, 10), LeaseGrant(2, 20))
        apply(store, Put("a", "1", lease=1), Put("b", "1", lease=2), Put("c", "1", lease=2))
        apply(store, Delete("c"))
    with Store.open(path) as store:
        assert store.leases.to_obj() == [[1, 10, ["a"]], [2, 20, ["b"]]]
        assert store.leases.lease_of("b") == 2
        at, stream = store.snapshot_reader()
        chunks = list(stream)
    with Store.open(str(tmp_path / "t")) as other:
        apply(other, LeaseGrant(9, 5), Put("z", "1", lease=9))
        other.restore(at, chunks)
        assert other.leases.to_obj() == [[1, 10, ["a"]], [2, 20, ["b"]]]
    with Store.open(str(tmp_path / "t")) as other:          # restored records are on disk too
        assert other.leases.to_obj() == [[1, 10, ["a"]], [2, 20, ["b"]]]
        apply(other, LeaseRevoke(2))
        assert other.get("b") is None and other.get("a") is not None


def test_lease_table_from_obj_refuses_malformed_rows() -> None:
    for bad in ([[0, 10, []]], [[1, 0, []]], [[1, 10, "a"]], [[1, 10, ["a"]], [2, 10, ["a"]]], "x"):
        with pytest.raises(ValueError):
            LeaseTable.from_obj(bad)


def table_with(*leases: tuple[int, int]) -> LeaseTable:
    table = LeaseTable()
    for lease_id, ttl in leases:
        table.load(lease_id, ttl, ())
    return table


def test_deadlines_restart_every_ttl_in_full_in_a_new_term() -> None:
    table = table_with((1, 10), (2, 5))
    d = Deadlines()
    d.sync(3, 100.0, table)
    assert d.due(104.9) == [] and d.due(105.0) == [2]
    assert d.due(106.0) == []                 # being revoked: not due twice
    assert not d.start(2, 5, 106.0)           # nor kept alive
    d.sync(None, 107.0, table)                # a follower keeps nothing
    assert d.due(1000.0) == [] and d.remaining(1, 107.0) is None
    d.sync(4, 200.0, table)                   # leader again: full TTLs from now
    assert d.remaining(1, 200.0) == 10 and d.due(209.0) == [2]


def test_deadlines_follow_keepalives_and_the_table() -> None:
    table = table_with((1, 10))
    d = Deadlines()
    d.sync(1, 0.0, table)
    assert d.start(1, 10, 8.0) and d.due(17.0) == [] and d.due(18.0) == [1]
    d.release([1])                            # the revocation failed: due again
    assert d.due(18.5) == [1]
    table.load(2, 3, ())                      # a lease new to the table gets its TTL from now
    d.sync(1, 20.0, table)
    assert d.remaining(2, 20.0) == 3
    table.revoke(LeaseRevoke(1), 9)
    d.sync(1, 21.0, table)
    assert d.remaining(1, 21.0) is None


def test_ttl_and_id_limits() -> None:
    config = NodeConfig(node_id="n1", data_dir="unused")
    assert min_ttl(config) == 2              # 1.5 x the longest election timeout (1 s)
    assert parse_lease_id("42") == 42
    for bad in ("", "0", "-1", "x", "1" * 17, "٣"):
        with pytest.raises(InvalidInput):
            parse_lease_id(bad)
    txn = parse_txn(json.dumps({"success": [{"op": "put", "key": "a", "value": "1", "lease": 5}]}).encode(),
                    100, 100)
    assert txn.success == (Put("a", "1", lease=5),)
    with pytest.raises(InvalidInput):
        parse_txn(b'{"success": [{"op": "put", "key": "a", "value": "1", "lease": "5"}]}', 100, 100)


def test_the_service_grants_keeps_alive_shows_and_revokes_on_the_leader() -> None:
    nodes = api_cluster(3, leader="n1")
    leases = nodes["n1"].service.leases
    granted = leases.grant(b'{"ttl": 9.5}')
    assert granted["ttl"] == 10
    lease_id = granted["id"]
    nodes["n1"].service.put("k", b'{"value": "v"}', lease=str(lease_id))
    shown = leases.show(str(lease_id))
    assert shown["keys"] == ["k"] and 9 < shown["remaining"] <= 10
    assert leases.keepalive(str(lease_id)) == {"id": lease_id, "ttl": 10}
    with pytest.raises(NotLeader):
        nodes["n2"].service.leases.keepalive(str(lease_id))
    assert leases.revoke(str(lease_id))["deleted"] == 1
    assert nodes["n1"].raft.store.get("k") is None
    for call in (leases.keepalive, leases.show, leases.revoke):
        with pytest.raises(NotFound):
            call(str(lease_id))
    with pytest.raises(NotFound):
        nodes["n1"].service.put("k", b'{"value": "v"}', lease=str(lease_id))
    for body in (b'{"ttl": 1}', b'{"ttl": "5"}', b'{"ttl": true}', b'{"ttl": 1e9}', b'{"ttl": 5, "x": 1}', b"[]"):
        with pytest.raises(InvalidInput):
            leases.grant(body)
    with pytest.raises(TooLarge):
        leases.grant(b'{"ttl": 5' + b" " * 2000 + b"}")


def test_the_lease_routes_answer_json_and_followers_pass_them_on() -> None:
    nodes = api_cluster(3, leader="n1")
    follower = nodes["n2"]
    granted = follower.call("POST", "/leases", {"ttl": 5})
    assert granted.status == 201
    lease_id = json.loads(granted.body)["id"]
    assert follower.call("PUT", f"/kv/a?lease={lease_id}", {"value": "1"}).status == 200
    assert follower.call("PUT", "/kv/b?lease=123", {"value": "1"}).status == 404
    assert follower.call("PUT", "/kv/b?lease=x", {"value": "1"}).status == 400
    assert follower.call("POST", f"/leases/{lease_id}/keepalive").status == 200
    shown = json.loads(follower.call("GET", f"/leases/{lease_id}").body)
    assert shown["keys"] == ["a"] and shown["ttl"] == 5
    txn = follower.call("POST", "/txn", {"success": [{"op": "put", "key": "t", "value": "1", "lease": 77}]})
    assert txn.status == 404 and "lease" in json.loads(txn.body)["error"]
    assert follower.call("DELETE", f"/leases/{lease_id}").status == 200
    assert follower.call("GET", f"/leases/{lease_id}").status == 404
    assert follower.call("GET", "/leases/abc").status == 400
    assert follower.call("POST", "/leases", {"ttl": 0}).status == 400


def test_the_expiry_duty_revokes_through_the_log_only_while_leading() -> None:
    from axon.node.duties import LeaseExpirer
    nodes = api_cluster(3, leader="n1")
    leader = nodes["n1"]
    service = leader.service.leases
    lease_id = service.grant(b'{"ttl": 5}')["id"]
    leader.service.put("x", b'{"value": "v"}', lease=str(lease_id))
    expirer = LeaseExpirer(leader.raft, service, timeout=1.0)
    now = service.clock()
    expirer.step(now + 4.9)
    assert leader.raft.store.get("x") is not None
    leader.raft.follow("n2")                      # a follower never expires a lease
    expirer.step(now + 100)
    assert leader.raft.store.get("x") is not None
    leader.raft.lead()
    leader.raft.term += 1                         # leader again, in a new term: a full TTL from now
    expirer.step(now + 100)
    expirer.step(now + 104.9)
    assert leader.raft.store.get("x") is not None
    expirer.step(now + 105)
    assert leader.raft.store.get("x") is None and leader.raft.store.leases.get(lease_id) is None


def test_a_lease_table_larger_than_a_piece_travels_in_several_and_a_bad_piece_is_refused(tmp_path) -> None:
    with Store.open(str(tmp_path / "s")) as store:
        apply(store, *[LeaseGrant(i, 10) for i in range(1, 301)])
        apply(store, *[Put(f"{i:03d}/{j}-" + "x" * 100, "v", lease=i) for i in range(1, 301) for j in range(10)])
        at, stream = store.snapshot_reader()
        chunks = b"".join(stream)
        assert chunks.count(b"\xa6leases") >= 2
        expected = store.leases.to_obj()
    with Store.open(str(tmp_path / "t")) as other:
        other.restore(at, [chunks])
        assert other.leases.to_obj() == expected
        with pytest.raises(StoreError):
            other.restore(at, [chunks.replace(b"\xa6leases", b"\xa6leaser", 1)])
        assert other.applied_index == 0 and len(other.leases) == 0

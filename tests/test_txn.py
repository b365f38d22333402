"""Transactions: the pure evaluation and encoding, the store applying one atomically, and
POST /txn on a real cluster (from a follower too, seen by a watch, refused when malformed)."""
from __future__ import annotations

import json

import pytest

from axon.api.errors import InvalidInput, TooLarge
from axon.api.txn import MAX_TXN_OPS, parse_txn, txn_keys
from axon.client import Client
from axon.client.http import ClientError
from axon.kv.commands import (CommandError, Compare, Delete, Put, Txn, TxnGet, compare_holds,
                              decode_commands, encode_commands, evaluate_txn)
from axon.kv.store import Slot, Store
from axon.testing.cluster import Cluster


def cas(key: str, revision: int, value: str) -> Txn:
    return Txn((Compare(key, "revision", "==", revision),), (Put(key, value),), (TxnGet(key),))


@pytest.mark.parametrize("compare,state,holds", [
    (Compare("k", "revision", "==", 0), None, True),
    (Compare("k", "revision", "==", 3), ("v", 3), True),
    (Compare("k", "revision", "<", 3), ("v", 2), True),
    (Compare("k", "revision", ">", 3), ("v", 2), False),
    (Compare("k", "value", "==", "v"), ("v", 1), True),
    (Compare("k", "value", "!=", "v"), None, False),        # a value compare on a missing key never holds
    (Compare("k", "value", "<", "w"), ("v", 1), True),
    (Compare("k", "exists", "==", False), None, True),
    (Compare("k", "exists", "!=", True), ("v", 1), False),
])
def test_compare_holds(compare: Compare, state, holds: bool) -> None:
    assert compare_holds(compare, state) is holds


def test_a_txn_branch_sees_its_own_writes_and_reports_each_operation() -> None:
    txn = Txn((Compare("a", "exists", "==", True),),
              (Delete("a"), TxnGet("a"), Put("b", "2"), TxnGet("b"), Delete("missing")), ())
    result, writes = evaluate_txn(txn, {"a": ("1", 4)}.get, 9)
    assert result.succeeded and result.revision == 9
    assert [(r.ok, r.key, r.value) for r in result.results] == [
        (True, "a", "1"), (False, "a", None), (True, "b", "2"), (True, "b", "2"), (False, "missing", None)]
    assert writes == [("a", None), ("b", "2")]


def test_a_failed_compare_runs_the_failure_branch_only() -> None:
    result, writes = evaluate_txn(cas("k", 1, "new"), {"k": ("old", 5)}.get, 9)
    assert not result.succeeded and writes == []
    assert result.results[0].value == "old" and result.results[0].revision == 5


def test_encoding_round_trips_and_refuses_what_is_not_a_txn() -> None:
    txn = Txn((Compare("a", "value", "!=", "x"), Compare("b", "exists", "==", True)),
              (Put("a", "1"), Delete("b"), TxnGet("c")), (TxnGet("a"),))
    assert decode_commands(encode_commands([txn])) == [txn]
    with pytest.raises(CommandError):
        encode_commands([Txn((), (Put("a", "1", if_revision=3),), ())])   # conditions go in compares
    with pytest.raises(CommandError):
        encode_commands([Txn((Compare("a", "exists", "<", True),), (), ())])
    with pytest.raises(CommandError):
        decode_commands(encode_commands([Put("x", "y")]).replace(b"\x00", b"\x05", 1))


def test_the_store_applies_a_txn_in_one_batch_and_reports_its_changes(tmp_path) -> None:
    store = Store.open(str(tmp_path / "s"))
    try:
        changes: list = []
        [[put]] = store.apply([Slot(1, 1, encode_commands([Put("a", "1")]))], changes)
        txn = Txn((Compare("a", "revision", "==", 1),), (Put("a", "2"), Put("b", "3"), Delete("a")), ())
        [[result]] = store.apply([Slot(2, 1, encode_commands([txn]))], changes)
        assert result.succeeded and result.revision == 2
        assert store.get("a") is None and store.get("b") == ("3", 2)
        assert changes == [("a", 1, "1"), ("a", 2, "2"), ("b", 2, "3"), ("a", 2, None)]
    finally:
        store.close()


def test_parse_txn_reads_the_documented_shape() -> None:
    body = json.dumps({"compare": [{"key": "a", "revision": 7}, {"key": "b", "exists": False, "op": "!="},
                                   {"key": "c", "value": "x", "op": "<"}],
                       "success": [{"op": "put", "key": "a", "value": "1"}, {"op": "delete", "key": "b"}],
                       "failure": [{"op": "get", "key": "c"}]}).encode()
    txn = parse_txn(body, 100, 100)
    assert txn.compares[1] == Compare("b", "exists", "!=", False)
    assert txn_keys(txn) == (["a", "b", "c", "c"], ["a", "b"])


@pytest.mark.parametrize("body,error", [
    (b"[]", InvalidInput),
    ({"compare": [{"key": "a"}]}, InvalidInput),
    ({"compare": [{"key": "a", "revision": 1, "value": "x"}]}, InvalidInput),
    ({"compare": [{"key": "a", "revision": "1"}]}, InvalidInput),
    ({"compare": [{"key": "a", "revision": True}]}, InvalidInput),
    ({"compare": [{"key": "a", "revision": -1}]}, InvalidInput),
    ({"compare": [{"key": "a", "exists": True, "op": ">"}]}, InvalidInput),
    ({"compare": [{"key": "a", "value": "x", "op": "~"}]}, InvalidInput),
    ({"success": [{"op": "put", "key": "a"}]}, InvalidInput),
    ({"success": [{"op": "put", "key": "a", "value": 1}]}, InvalidInput),
    ({"success": [{"op": "merge", "key": "a"}]}, InvalidInput),
    ({"success": [{"op": "put", "key": "", "value": "x"}]}, InvalidInput),
    ({"success": [{"op": "put", "key": "a", "value": "x", "lease": "3"}]}, InvalidInput),
    ({"success": [{"op": "put", "key": "a", "value": "x"}, {"op": "delete", "key": "a"}]}, InvalidInput),
    ({"success": [{"op": "put", "key": "a", "value": "x" * 101}]}, TooLarge),
    ({"success": [{"op": "get", "key": str(i)} for i in range(MAX_TXN_OPS + 1)]}, TooLarge),
    ({"extra": []}, InvalidInput),
])
def test_parse_txn_refuses_malformed_bodies(body, error) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(error):
        parse_txn(raw, 100, 100)


# ---------------------------------------------------------------------- a real cluster

@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("txn"), n=3)
    try:
        yield c
    finally:
        c.close()


def txn_call(node, body: dict, ok=(200,)):
    return node.client.call("POST", "/txn", body, ok=ok)


@pytest.mark.slow
def test_compare_and_swap_over_two_keys_is_atomic_from_any_node(cluster: Cluster) -> None:
    leader = cluster.leader()
    follower = next(n for n in cluster.nodes if n is not leader)
    a = leader.client.put("t/a", "1")["revision"]
    body = {"compare": [{"key": "t/a", "revision": a}, {"key": "t/b", "exists": False}],
            "success": [{"op": "put", "key": "t/a", "value": "2"}, {"op": "put", "key": "t/b", "value": "x"},
                        {"op": "get", "key": "t/a"}],
            "failure": [{"op": "get", "key": "t/a"}, {"op": "get", "key": "t/b"}]}
    first = txn_call(follower, body)            # passed on to the leader
    assert first["succeeded"] is True
    rev = first["revision"]
    assert first["results"] == [{"op": "put", "key": "t/a", "revision": rev},
                                {"op": "put", "key": "t/b", "revision": rev},
                                {"op": "get", "key": "t/a", "value": "2", "revision": rev}]
    again = txn_call(leader, body)              # the compares no longer hold
    assert again["succeeded"] is False
    assert [r["value"] for r in again["results"]] == ["2", "x"]
    for node in cluster.nodes:
        assert node.client.get("t/b")["revision"] == rev


@pytest.mark.slow
def test_bad_transactions_are_4xx_with_an_error(cluster: Cluster) -> None:
    node = cluster.nodes[1]
    for body, status in [({"success": [{"op": "nope", "key": "a"}]}, 400),
                         ({"compare": "x"}, 400),
                         ({"success": [{"op": "get", "key": "k"}] * (MAX_TXN_OPS + 1)}, 413)]:
        with pytest.raises(ClientError) as err:
            txn_call(node, body)
        assert err.value.status == status and "error" in err.value.body


@pytest.mark.slow
def test_txn_auth_decides_each_key(tmp_path) -> None:
    c = Cluster(tmp_path, n=1)
    try:
        node = c.nodes[0]
        root = node.client.auth_enable()["token"]
        with Client(node.http, token=root, retry_for=0) as admin:
            writer = admin.token_create("w", "write", "app/")["token"]
            reader = admin.token_create("r", "read", "app/")["token"]
        inside = {"success": [{"op": "put", "key": "app/x", "value": "1"}]}
        outside_read = {"compare": [{"key": "other", "exists": False}], "success": inside["success"]}
        as_writer = {"Authorization": f"Bearer {writer}"}
        assert node.client.call("POST", "/txn", inside, headers=as_writer)["succeeded"]
        for body, token in [(outside_read, writer), (inside, reader)]:
            with pytest.raises(ClientError) as err:
                node.client.call("POST", "/txn", body, headers={"Authorization": f"Bearer {token}"})
            assert err.value.status == 403
        with pytest.raises(ClientError) as err:
            node.client.call("POST", "/txn", inside)
        assert err.value.status == 401
    finally:
        c.close()

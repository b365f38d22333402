"""The linearizability checker on transactions over several keys (histories with ``txn`` ops).

Per-key checking cannot see a torn transaction: each key alone may have a legal order while no
single order explains both keys.  ``check_history`` checks keys joined by transactions together.
"""
from __future__ import annotations

import functools
import random

import pytest

from axon.testing.history import History, HistoryError, Op
from axon.testing.linearizability import check_group, check_history, key_groups


def txn(invoke, complete, compares=(), success=(), failure=(), *, result=None, status="ok", client=0):
    parts = (tuple(compares), tuple(success), tuple(failure))
    keys = sorted({k for k, _ in parts[0]} | {p[1] for p in parts[1] + parts[2]})
    return Op(0, client, "+".join(keys), "txn", None, None, float(invoke),
              None if complete is None else float(complete), status, result, parts)


def read(key, invoke, complete, value, revision, client=0):
    return Op(0, client, key, "read", None, None, float(invoke), float(complete), "ok", (value, revision))


def write(key, invoke, complete, value, revision, client=0):
    return Op(0, client, key, "write", value, None, float(invoke), float(complete), "ok", revision)


def put(key, value):
    return ("put", key, value)


def get(key):
    return ("get", key, None)


def check(*ops):
    return check_history(History.from_ops(ops), timeout_per_key=10.0)


def expect(ok: bool, *ops):
    result = check(*ops)
    assert result.ok is ok and not result.timed_out, result.explanation
    return result


legal, illegal = functools.partial(expect, True), functools.partial(expect, False)


def test_a_two_key_compare_and_set_then_a_snapshot_read() -> None:
    legal(write("a", 0, 1, "a1", 1), write("b", 2, 3, "b1", 2),
          txn(4, 5, [("a", 1), ("b", 2)], [put("a", "a2"), put("b", "b2")], result=(True, 3, ())),
          txn(6, 7, [], [get("a"), get("b")], result=(True, 3, (("a", "a2", 3), ("b", "b2", 3)))))


def test_a_snapshot_read_that_sees_half_a_transaction_is_refuted() -> None:
    result = illegal(
        write("a", 0, 1, "a1", 1), write("b", 2, 3, "b1", 2),
        txn(4, 5, [("a", 1), ("b", 2)], [put("a", "a2"), put("b", "b2")], result=(True, 3, ())),
        txn(6, 7, [], [get("a"), get("b")], result=(True, 7, (("a", "a2", 3), ("b", "b1", 2)))))
    assert "'a'+'b'" in result.explanation


def test_concurrent_transactions_seen_in_two_orders_are_refuted_though_each_key_alone_is_legal() -> None:
    # T1 writes a=1,b=1 and T2 writes a=2,b=2, concurrently, revisions never reported. Afterwards
    # a reads 1 (T1 last) and b reads 2 (T2 last): each key alone has an order, both keys none.
    t1 = txn(0, 2, [], [put("a", "1"), put("b", "1")], result=(True, None, ()), client=1)
    t2 = txn(0, 2, [], [put("a", "2"), put("b", "2")], result=(True, None, ()), client=2)
    ra, rb = read("a", 3, 4, "1", None), read("b", 5, 6, "2", None)
    illegal(t1, t2, ra, rb)
    legal(t1, t2, ra, read("b", 5, 6, "1", None))   # T2 then T1 explains both keys


def test_a_failed_compare_must_have_been_false_and_its_gets_observe() -> None:
    base = [write("a", 0, 1, "a1", 1), write("b", 2, 3, "b1", 2)]
    cas = [("a", 1), ("b", 2)]
    illegal(*base, txn(4, 5, cas, [put("a", "x"), put("b", "y")], [get("a"), get("b")],
                       result=(False, 4, (("a", "a1", 1), ("b", "b1", 2)))))   # both held: it must run
    legal(*base, write("b", 4, 5, "b2", 4),
          txn(6, 7, cas, [put("a", "x"), put("b", "y")], [get("a"), get("b")],
              result=(False, 6, (("a", "a1", 1), ("b", "b2", 4)))))


def test_an_unknown_transaction_may_or_may_not_have_run_but_not_halfway() -> None:
    unknown = txn(0, 1, [], [put("a", "x"), put("b", "y")], status="unknown")
    legal(unknown, read("a", 5, 6, None, None), read("b", 7, 8, None, None))    # never ran
    legal(unknown, read("a", 5, 6, "x", 3), read("b", 7, 8, "y", 3))            # ran
    illegal(unknown, read("a", 5, 6, "x", 3), read("b", 7, 8, None, None))      # half of it


def test_keys_are_grouped_only_when_a_transaction_joins_them() -> None:
    ops = History.from_ops([write("a", 0, 1, "1", 1), write("c", 0, 1, "3", 2),
                            txn(2, 3, [], [put("a", "2"), put("b", "2")], result=(True, 3, ()))]).ops()
    assert [sorted({k for op in group for k in op.keys()}) for group in key_groups(ops)] == [["a", "b"], ["c"]]


def test_txn_ops_round_trip_through_a_dump(tmp_path) -> None:
    history = History()
    op = history.invoke_txn(1, [("a", 0)], [put("a", "1"), get("a")], [get("a")])
    history.ok(op, (True, 5, [("a", "1", 5)]))
    history.dump(str(tmp_path / "h.jsonl"))
    loaded = History.load(str(tmp_path / "h.jsonl")).ops()
    assert loaded[0].parts == op.parts and loaded[0].result == (True, 5, (("a", "1", 5),))
    assert loaded[0].key == "a"
    with pytest.raises(HistoryError):
        history.ok(history.invoke_txn(1, [], [get("a")]), (True, 5, ()))   # a get without its read
    with pytest.raises(HistoryError):
        history.invoke_txn(1, [("a", -1)], [])


def _simulate(seed: int, n: int = 60) -> list[Op]:
    """A legal history: an atomic store, each op taking effect at a random point of its interval."""
    rng = random.Random(seed)
    store: dict[str, tuple[str, int]] = {}
    points = []
    for i in range(n):
        invoke = rng.uniform(0, 30)
        points.append((invoke, rng.uniform(invoke, invoke + 3), i))
    ops = []
    revision = 0
    for at, i in sorted((rng.uniform(inv, done), i) for inv, done, i in points):
        invoke, complete, _ = points[i]
        roll = rng.random()
        if roll < 0.4:
            a, b = rng.sample("abc", 2)
            expected = [(k, store.get(k, (None, 0))[1] if rng.random() < 0.7 else 99) for k in (a, b)]
            ok = all(store.get(k, (None, 0))[1] == r for k, r in expected)
            if ok:
                revision += 1
                for k in (a, b):
                    store[k] = (f"v{i}{k}", revision)
            reads = () if ok else tuple((k, *store.get(k, (None, 0))) for k in (a, b))
            op = txn(invoke, complete, expected, [put(a, f"v{i}{a}"), put(b, f"v{i}{b}")],
                     [get(a), get(b)], result=(ok, revision, reads), client=i)
            if rng.random() < 0.15:
                op.status, op.result = "unknown", None
        elif roll < 0.7:
            k = rng.choice("abc")
            value, rev = store.get(k, (None, 0))
            op = read(k, invoke, complete, value, rev if value is not None else None, client=i)
        else:
            k = rng.choice("abc")
            revision += 1
            store[k] = (f"v{i}", revision)
            op = write(k, invoke, complete, f"v{i}", revision, client=i)
        ops.append(op)
    return ops


@pytest.mark.parametrize("seed", range(12))
def test_random_histories_of_an_atomic_store_are_linearizable(seed: int) -> None:
    legal(*_simulate(seed))


def test_a_random_history_with_one_read_changed_is_refuted() -> None:
    refuted = 0
    for seed in range(12):
        ops = _simulate(seed)
        reads = [op for op in ops if op.kind == "read" and op.result[0] is not None]
        victim = reads[len(reads) // 2]
        victim.result = ("never-written", victim.result[1])
        refuted += not check(*ops).ok
    assert refuted == 12


def test_check_group_takes_ops_of_several_keys() -> None:
    ops = History.from_ops([write("a", 0, 1, "1", 1), write("b", 2, 3, "2", 2)]).ops()
    assert check_group(ops).ok


@pytest.mark.slow
@pytest.mark.chaos
@pytest.mark.timeout(400)
def test_transactions_stay_linearizable_while_leaders_are_killed(tmp_path) -> None:
    from axon.testing.chaos import ChaosConfig, run_chaos
    report = run_chaos(ChaosConfig("kill-leader", duration=30, nodes=3, seed=16, clients=3, txn_clients=4,
                                   out_dir=str(tmp_path)))
    print(report.summary())
    assert report.ok, report.summary()
    assert len(report.faults) >= 3, report.summary()
    assert report.txn_counts.get("ok", 0) >= 100, report.summary()
    txns = History.load(str(tmp_path / "txn_history.jsonl")).ops()
    assert sum(1 for op in txns if op.kind == "txn" and op.status == "ok" and op.result[0]
               and op.parts[1] and op.parts[1][0][0] == "put") >= 20   # two-key CAS that succeeded

"""The driver's wait deadlines (axon/raft/deadlines.py): never early, at most a slot late, and
what ended in time is never failed."""
from __future__ import annotations

from gevent.event import AsyncResult

from axon.raft.deadlines import Deadlines


def test_a_wait_expires_once_its_deadline_has_passed_never_before() -> None:
    deadlines = Deadlines(0.05)
    result = AsyncResult()
    deadlines.add(10.0, 1.0, result, "w")
    assert deadlines.expire(10.99) == []
    assert deadlines.expire(11.0) == []          # the deadline itself may still be in time
    assert deadlines.expire(11.06) == [(result, "w")]   # at most one slot late
    assert deadlines.expire(12.0) == []          # and only once
    assert len(deadlines) == 0


def test_a_removed_or_answered_wait_is_not_failed() -> None:
    deadlines = Deadlines(0.05)
    removed, answered, late = AsyncResult(), AsyncResult(), AsyncResult()
    entry = deadlines.add(0.0, 0.5, removed, "removed")
    deadlines.add(0.0, 0.5, answered, "answered")
    deadlines.add(0.0, 0.5, late, "late")
    deadlines.remove(entry)
    answered.set(1)
    assert deadlines.expire(1.0) == [(late, "late")]


def test_waits_expire_in_deadline_order_across_slots() -> None:
    deadlines = Deadlines(0.1)
    results = {t: AsyncResult() for t in (3.0, 0.2, 1.0)}
    for timeout, result in results.items():
        deadlines.add(0.0, timeout, result, timeout)
    assert [label for _, label in deadlines.expire(1.5)] == [0.2, 1.0]
    assert [label for _, label in deadlines.expire(5.0)] == [3.0]


def test_a_wait_added_after_a_sweep_is_not_lost_behind_it() -> None:
    deadlines = Deadlines(0.05)
    deadlines.expire(100.0)
    result = AsyncResult()
    deadlines.add(99.0, 0.0, result, "zero")   # a clock reading older than the sweep
    assert deadlines.expire(100.06) == [(result, "zero")]

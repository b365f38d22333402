"""WriteBudget: large writes take turns for the log; small ones never wait."""
import gevent
import pytest

from axon.api.errors import Unavailable
from axon.api.writebudget import WriteBudget

KiB = 1024


def _holder(budget, size, started, release, log, name):
    share = budget.acquire(size, timeout=5)
    log.append(name)
    started.set()
    release.wait()
    budget.release(share)


def test_small_writes_never_wait_and_large_ones_take_turns_in_order():
    budget = WriteBudget(limit=2048 * KiB, small=64 * KiB)
    log, events = [], {}
    for name in ("a", "b", "c", "d"):
        events[name] = (gevent.event.Event(), gevent.event.Event())
    greenlets = [gevent.spawn(_holder, budget, 1024 * KiB, *events[n], log, n) for n in "abcd"]
    gevent.sleep(0)
    assert log == ["a", "b"] and budget.used == 2048 * KiB   # c and d wait, in order
    assert budget.acquire(10 * KiB, timeout=0) == 0           # a small write goes straight on
    events["b"][1].set()
    gevent.sleep(0)
    gevent.sleep(0)
    assert log == ["a", "b", "c"]
    events["a"][1].set()
    events["c"][1].set()
    events["d"][1].set()
    gevent.joinall(greenlets, timeout=5, raise_error=True)
    assert log == ["a", "b", "c", "d"] and budget.used == 0


def test_a_write_bigger_than_the_budget_holds_all_of_it():
    budget = WriteBudget(limit=1024 * KiB, small=64 * KiB)
    share = budget.acquire(5000 * KiB, timeout=1)
    assert share == budget.used == 1024 * KiB
    budget.release(share)
    assert budget.used == 0


def test_a_wait_past_the_timeout_is_unavailable_and_gives_nothing_away():
    budget = WriteBudget(limit=1024 * KiB, small=64 * KiB)
    release = gevent.event.Event()
    holder = gevent.spawn(_holder, budget, 1024 * KiB, gevent.event.Event(), release, [], "a")
    gevent.sleep(0)
    with pytest.raises(Unavailable):
        budget.acquire(512 * KiB, timeout=0.05)
    release.set()
    holder.join(timeout=5)
    assert budget.used == 0 and not budget._waiters
    assert budget.acquire(1024 * KiB, timeout=0.05) == 1024 * KiB   # the budget is whole again

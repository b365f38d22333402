"""WriteBudget: large writes take turns for the log; small ones never wait; while others are
about, large writes leave the log free as long as they held it."""
import gevent
import pytest

from axon.api.errors import Unavailable
from axon.api.writebudget import MAX_PAUSE_SECONDS, NO_SHARE, OTHERS_ABOUT_SECONDS, WriteBudget

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
    assert budget.acquire(10 * KiB, timeout=0) == NO_SHARE    # a small write goes straight on
    budget._other_seen = float("-inf")   # (and the pauses while others are about are tested below)
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
    assert share.size == budget.used == 1024 * KiB
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
    assert budget.acquire(1024 * KiB, timeout=0.05).size == 1024 * KiB   # the budget is whole again


class FakeTime:
    """A clock the test moves, and the pauses the budget asked for (run by the test)."""

    def __init__(self) -> None:
        self.now = 100.0
        self.pauses: list[tuple[float, object, tuple]] = []

    def clock(self) -> float:
        return self.now

    def later(self, seconds: float, fn, *args) -> None:
        self.pauses.append((seconds, fn, args))

    def run_pauses(self) -> None:
        pauses, self.pauses = self.pauses, []
        for _seconds, fn, args in pauses:
            fn(*args)


def _budget(fake: FakeTime) -> WriteBudget:
    return WriteBudget(limit=1024 * KiB, small=64 * KiB, clock=fake.clock, later=fake.later)


def test_with_no_one_else_about_large_writes_go_back_to_back():
    fake = FakeTime()
    budget = _budget(fake)
    share = budget.acquire(1024 * KiB, timeout=1)
    fake.now += 0.020
    budget.release(share)
    assert budget.used == 0 and fake.pauses == []


@pytest.mark.parametrize("other", ["small write", "read"])
def test_while_others_are_about_a_large_write_pauses_as_long_as_it_held_the_log(other):
    fake = FakeTime()
    budget = _budget(fake)
    share = budget.acquire(1024 * KiB, timeout=1)
    fake.now += 0.010
    if other == "small write":
        assert budget.acquire(100, timeout=1) == NO_SHARE
    else:
        budget.note_other_request()
    fake.now += 0.010
    budget.release(share)
    assert budget.used == 1024 * KiB          # still held: the next large write waits
    [(seconds, _fn, _args)] = fake.pauses
    assert seconds == pytest.approx(0.020)     # as long as the write held it
    fake.run_pauses()
    assert budget.used == 0


def test_the_pause_is_bounded_and_others_count_only_while_recent():
    fake = FakeTime()
    budget = _budget(fake)
    budget.note_other_request()
    share = budget.acquire(1024 * KiB, timeout=1)
    fake.now += 5.0                            # an election held the write up
    budget.release(share)
    assert budget.used == 0 and fake.pauses == []   # the other request is too old to count
    budget.note_other_request()
    share = budget.acquire(1024 * KiB, timeout=1)
    fake.now += OTHERS_ABOUT_SECONDS / 2 + 5.0
    budget.note_other_request()
    budget.release(share)
    [(seconds, _fn, _args)] = fake.pauses
    assert seconds == MAX_PAUSE_SECONDS


def test_a_paused_share_still_turns_away_the_next_large_write_until_it_comes_back():
    budget = WriteBudget(limit=1024 * KiB, small=64 * KiB)   # real clock, real gevent timers
    budget.note_other_request()
    share = budget.acquire(1024 * KiB, timeout=1)
    gevent.sleep(0.05)
    budget.release(share)
    started = gevent.get_hub().loop.now()
    second = budget.acquire(1024 * KiB, timeout=2)
    waited = gevent.get_hub().loop.now() - started
    assert waited >= 0.04, waited              # the first write's ~50 ms, paused
    budget._other_seen = float("-inf")
    budget.release(second)
    assert budget.used == 0

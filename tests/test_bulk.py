"""Bulk work's lane on the event loop (axon/bulk.py): a few steps a turn, in order, and a
woken request never waits behind every bulk step."""
from __future__ import annotations

import gevent
import pytest
from gevent.event import Event

from axon import bulk
from axon.bulk import BulkLane


class TurnCounter:
    """Counts turns of the loop (a prepare watcher) and notes the turn of each step."""

    def __init__(self) -> None:
        self.turn = 0
        self._watcher = gevent.get_hub().loop.prepare(ref=False)
        self._watcher.start(self._tick)

    def _tick(self) -> None:
        self.turn += 1

    def close(self) -> None:
        self._watcher.stop()
        self._watcher.close()


def test_a_lane_lets_a_few_steps_go_on_each_turn_in_order() -> None:
    lane = BulkLane(per_turn=2)
    turns = TurnCounter()
    steps: list[tuple[int, int]] = []   # (worker, turn)

    def worker(n: int) -> None:
        for _ in range(5):
            lane.pause()
            steps.append((n, turns.turn))

    try:
        gevent.joinall([gevent.spawn(worker, n) for n in range(10)], timeout=10, raise_error=True)
    finally:
        turns.close()
    assert len(steps) == 50
    per_turn: dict[int, int] = {}
    for _, turn in steps:
        per_turn[turn] = per_turn.get(turn, 0) + 1
    assert max(per_turn.values()) <= 2
    assert [n for n, _ in steps[:10]] == list(range(10))   # first come, first on
    assert lane.parked == 0


def test_a_woken_greenlet_runs_before_the_bulk_work_is_through() -> None:
    """With 50 bulk greenlets queued, a wake-up waits for a couple of steps, not for all 50."""
    lane = BulkLane(per_turn=2)
    steps = [0]
    woken = Event()
    seen: list[int] = []

    def worker() -> None:
        for _ in range(3):
            lane.pause()
            steps[0] += 1

    def request() -> None:
        woken.wait()
        seen.append(steps[0])

    waiting = gevent.spawn(request)
    workers = [gevent.spawn(worker) for _ in range(50)]
    gevent.sleep(0)   # every worker parked once
    woken.set()
    waiting.join(timeout=10)
    gevent.joinall(workers, timeout=10, raise_error=True)
    assert seen and seen[0] <= 4, seen   # gevent.sleep(0) in their place: all 50 would have gone first
    assert steps[0] == 150


def test_a_greenlet_killed_while_parked_leaves_the_lane() -> None:
    lane = BulkLane(per_turn=1)
    parked = gevent.spawn(lane.pause)
    after = gevent.spawn(lane.pause)
    gevent.sleep(0)
    assert lane.parked == 2
    parked.kill()
    assert lane.parked == 1
    after.join(timeout=5)
    assert after.successful() and lane.parked == 0


def test_the_module_pause_uses_one_lane_per_loop() -> None:
    done = []
    gevent.joinall([gevent.spawn(lambda: (bulk.pause(), done.append(1))) for _ in range(5)], timeout=5)
    assert done == [1] * 5


@pytest.mark.parametrize("per_turn", [1, 3])
def test_parked_greenlets_alone_do_not_hang_the_loop(per_turn: int) -> None:
    lane = BulkLane(per_turn=per_turn)
    g = gevent.spawn(lambda: [lane.pause() for _ in range(4)])
    g.join(timeout=5)
    assert g.successful()

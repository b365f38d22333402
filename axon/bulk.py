"""Bulk work's share of the event loop: a few bulk steps per turn, in arrival order.

A greenlet that reads a big body, scans or streams a listing pauses between its steps.
With ``gevent.sleep(0)`` it would go to the end of the hub's one queue of ready callbacks,
the queue that also wakes the Raft driver, the WAL syncer, the applier and every request
waiting for its answer: with dozens of such greenlets, each pass through that queue ran
dozens of bulk steps (a trace: 27 ms) before a woken read ran again.  ``pause()`` parks
the greenlet in a queue of its own instead, and each turn of the loop lets the first
``per_turn`` of them go on.  A busy loop gives bulk work a bounded share of each turn; an
idle one turns quickly, and bulk work goes at full speed.
"""
from __future__ import annotations

import collections
import weakref

import gevent
from gevent.hub import Waiter

STEPS_PER_TURN = 2


class BulkLane:
    """Parked bulk greenlets, released ``per_turn`` at a time, once a turn of the loop."""

    def __init__(self, per_turn: int = STEPS_PER_TURN) -> None:
        self.per_turn = per_turn
        self._parked: collections.deque[Waiter] = collections.deque()
        self._turn = None

    def pause(self) -> None:
        """Let other work run, and come back in a later turn of the loop, after those parked first."""
        waiter = Waiter()
        self._parked.append(waiter)
        self._arm()
        try:
            waiter.get()
        except BaseException:   # killed or interrupted while parked: not to be released later
            try:
                self._parked.remove(waiter)
            except ValueError:
                pass   # released already, just as the interrupt came
            raise

    @property
    def parked(self) -> int:
        return len(self._parked)

    def _arm(self) -> None:
        # A zero timer: due at once, so the loop polls without blocking, and it fires once a
        # turn (restarted in its callback, it is due only in the next turn).
        if self._turn is None:
            self._turn = gevent.get_hub().loop.timer(0.0)
        if not self._turn.active:
            self._turn.start(self._release)

    def _release(self) -> None:
        """(In the hub, once a turn.)  Queue the oldest parked greenlets' wake-ups, at most ``per_turn``."""
        run_callback = gevent.get_hub().loop.run_callback
        for _ in range(min(self.per_turn, len(self._parked))):
            run_callback(self._parked.popleft().switch, None)
        if self._parked:
            self._turn.start(self._release)


_lanes: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()   # hub -> its lane


def pause() -> None:
    """``BulkLane.pause`` on the lane of this thread's event loop."""
    hub = gevent.get_hub()
    lane = _lanes.get(hub)
    if lane is None:
        lane = _lanes[hub] = BulkLane()
    lane.pause()

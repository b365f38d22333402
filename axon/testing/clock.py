"""A manual clock for deterministic simulations: time moves only when a test advances it."""
from __future__ import annotations

import heapq
import itertools
from typing import Callable


class Handle:
    """A scheduled callback; ``cancel()`` keeps it from running."""

    __slots__ = ("when", "fn", "cancelled")

    def __init__(self, when: float, fn: Callable[[], None]) -> None:
        self.when = when
        self.fn = fn
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """Runs callbacks in time order (ties in scheduling order) as time is advanced."""

    def __init__(self, start: float = 0.0) -> None:
        self.now: float = float(start)
        self._queue: list[tuple[float, int, Handle]] = []
        self._order = itertools.count()

    def call_at(self, when: float, fn: Callable[[], None]) -> Handle:
        """Schedule ``fn`` at absolute time ``when`` (a past time runs at the next advance)."""
        handle = Handle(max(float(when), self.now), fn)
        heapq.heappush(self._queue, (handle.when, next(self._order), handle))
        return handle

    def call_later(self, delay: float, fn: Callable[[], None]) -> Handle:
        return self.call_at(self.now + max(0.0, float(delay)), fn)

    def advance(self, dt: float) -> None:
        """Run every callback due up to ``now + dt`` (including ones scheduled meanwhile), then set now."""
        target = self.now + max(0.0, float(dt))
        while self._queue and self._queue[0][0] <= target:
            when, _, handle = heapq.heappop(self._queue)
            if handle.cancelled:
                continue
            self.now = max(self.now, when)
            handle.fn()
        self.now = target

    def run_until(self, predicate: Callable[[], bool], timeout: float, step: float = 0.01) -> bool:
        """Advance in ``step`` increments until ``predicate()`` holds or ``timeout`` simulated seconds pass."""
        deadline = self.now + timeout
        while True:
            if predicate():
                return True
            if self.now >= deadline:
                return False
            self.advance(min(step, deadline - self.now))

    def pending(self) -> int:
        """How many callbacks are scheduled and not cancelled."""
        return sum(1 for _, _, h in self._queue if not h.cancelled)

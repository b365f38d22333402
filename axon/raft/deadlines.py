"""Deadlines of the driver's waits, kept in slots of one tick and expired by the ticker.

Every client write and linearizable read waits for the driver once; a gevent timer per wait
(``AsyncResult.get(timeout=...)``) costs about as much as the rest of the wait's bookkeeping.
Here a wait costs two dict operations instead, and the ticker, which runs every tick anyway,
fails whatever is overdue.  A deadline may therefore pass up to one tick late.
"""
from __future__ import annotations

import itertools
from typing import Any

from gevent.event import AsyncResult


class Deadlines:
    """Results to fail once their time is up, grouped by the tick in which that happens."""

    def __init__(self, resolution: float) -> None:
        self.resolution = resolution
        self._slots: dict[int, dict[int, tuple[AsyncResult, Any]]] = {}
        self._ids = itertools.count()
        self._swept = -1     # every slot up to this one has expired

    def add(self, now: float, timeout: float, result: AsyncResult, label: Any) -> tuple[int, int]:
        """Watch ``result`` until ``now + timeout``; ``label`` comes back with it from ``expire``.
        The handle is what ``remove`` takes."""
        slot = max(int((now + timeout) / self.resolution) + 1, self._swept + 1)
        waiting = self._slots.get(slot)
        if waiting is None:
            waiting = self._slots[slot] = {}
        handle = next(self._ids)
        waiting[handle] = (result, label)
        return slot, handle

    def remove(self, entry: tuple[int, int]) -> None:
        """Stop watching (the wait ended, however)."""
        waiting = self._slots.get(entry[0])
        if waiting is not None:
            waiting.pop(entry[1], None)

    def expire(self, now: float) -> list[tuple[AsyncResult, Any]]:
        """Take out everything whose deadline is ``now`` or earlier and is not yet answered."""
        due = int(now / self.resolution)
        overdue = []
        if due > self._swept and self._slots:
            for slot in sorted(s for s in self._slots if s <= due):
                overdue += [(r, label) for r, label in self._slots.pop(slot).values() if not r.ready()]
        self._swept = max(self._swept, due)
        return overdue

    def __len__(self) -> int:
        return sum(map(len, self._slots.values()))

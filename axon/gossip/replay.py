"""Replay protection for authenticated gossip packets: a time window plus a bounded memory of ids.

Pure: the caller passes its wall clock.  A packet is admitted once, only if its timestamp
is within ``window`` seconds of ours and its id (sender boot id + counter) has not been
admitted before.  Memory is bounded: when ``capacity`` ids are remembered, or an id's
timestamp leaves the window, the id with the oldest timestamp is forgotten and ``floor``
rises to that timestamp; from then on nothing stamped at or below the floor is admitted.
So every admitted id is either remembered or at/below the floor, and a replay is refused
whatever the memory pressure and even if our clock steps back.
"""
from __future__ import annotations

import heapq
import math


class ReplayGuard:
    """Admits each authenticated packet id once, near our clock; bounded memory."""

    def __init__(self, window: float = 30.0, capacity: int = 16384) -> None:
        self.window = window
        self.capacity = capacity
        self.floor = -math.inf
        self._seen: set[bytes] = set()
        self._by_time: list[tuple[float, bytes]] = []

    def __len__(self) -> int:
        return len(self._seen)

    def admit(self, packet_id: bytes, timestamp: float, wall: float) -> str | None:
        """None if the packet is fresh (and remember it), else the drop reason: "stale" or "replayed"."""
        self._expire(wall)
        if abs(timestamp - wall) > self.window:
            return "stale"
        if timestamp <= self.floor or packet_id in self._seen:
            return "replayed"
        self._seen.add(packet_id)
        heapq.heappush(self._by_time, (timestamp, packet_id))
        while len(self._seen) > self.capacity:
            self._forget_oldest()
        return None

    def _expire(self, wall: float) -> None:
        horizon = wall - self.window
        while self._by_time and self._by_time[0][0] < horizon:
            self._forget_oldest()

    def _forget_oldest(self) -> None:
        timestamp, packet_id = heapq.heappop(self._by_time)
        self._seen.discard(packet_id)
        self.floor = max(self.floor, timestamp)

"""How often a warning about one peer may be logged: pure, bounded memory and bounded volume."""
from __future__ import annotations

from typing import Hashable


class LogLimiter:
    """At most one line per key per ``interval`` seconds, and at most ``capacity`` keys per interval.

    The second bound keeps a flood of packets from spoofed addresses from flooding the log
    (or memory): beyond ``capacity`` recent keys, new keys stay silent until old ones age out.
    """

    def __init__(self, interval: float = 30.0, capacity: int = 64) -> None:
        self.interval = interval
        self.capacity = capacity
        self._last: dict[Hashable, float] = {}

    def allow(self, key: Hashable, now: float) -> bool:
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            return False
        if last is None and len(self._last) >= self.capacity:
            self._last = {k: t for k, t in self._last.items() if now - t < self.interval}
            if len(self._last) >= self.capacity:
                return False
        self._last[key] = now
        return True

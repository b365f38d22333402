"""Lifeguard suspicion timers: log(N)-scaled, shortened by independent confirmations."""
from __future__ import annotations

import math


def suspicion_timeout(mult: int, members: int, probe_interval: float) -> float:
    """The minimum suspicion timeout: mult * max(1, log10(N)) * probe interval."""
    scale = max(1.0, math.log10(max(1.0, float(members))))
    return mult * scale * probe_interval


class Suspicion:
    """A suspicion about one member, started at ``start``; ``deadline`` shrinks as confirmations arrive."""

    def __init__(self, suspector: str, start: float, min_timeout: float, max_timeout: float,
                 expected_confirmations: int) -> None:
        self.start = start
        self._min = min_timeout
        self._max = max(min_timeout, max_timeout)
        self._k = max(0, expected_confirmations)
        self._confirmers: set[str] = {suspector}
        self.deadline = start + self._timeout()

    @property
    def confirmations(self) -> int:
        return len(self._confirmers) - 1

    def confirm(self, suspector: str) -> bool:
        """Count an independent suspector; True when it is new (and the deadline may have moved)."""
        if self.confirmations >= self._k or suspector in self._confirmers:
            return False
        self._confirmers.add(suspector)
        self.deadline = self.start + self._timeout()
        return True

    def _timeout(self) -> float:
        if self._k < 1:
            return self._min
        fraction = math.log(self.confirmations + 1) / math.log(self._k + 1)
        return max(self._min, self._max - fraction * (self._max - self._min))

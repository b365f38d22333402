"""A simulated datagram network on a FakeClock: delay, reordering, loss, duplication, partitions."""
from __future__ import annotations

import random
from typing import Callable, Iterable

from axon.testing.clock import FakeClock

Handler = Callable[[str, object], None]


class SimNetwork:
    """Delivers payloads between registered addresses; deterministic for a given rng seed."""

    def __init__(self, clock: FakeClock, rng: random.Random, *, loss: float = 0.0, min_delay: float = 0.0005,
                 max_delay: float = 0.005, duplicate: float = 0.0) -> None:
        if not 0.0 <= min_delay <= max_delay:
            raise ValueError("need 0 <= min_delay <= max_delay")
        self._clock = clock
        self._rng = rng
        self._loss = _probability(loss)
        self._duplicate = _probability(duplicate)
        self._min_delay = min_delay
        self._max_delay = max_delay
        self._handlers: dict[str, Handler] = {}
        self._groups: dict[str, int] = {}
        self._node_delay: dict[str, float] = {}
        self.stats: dict[str, int] = {"sent": 0, "delivered": 0, "lost": 0, "duplicated": 0, "partitioned": 0}

    def register(self, addr: str, handler: Handler) -> None:
        self._handlers[addr] = handler

    def unregister(self, addr: str) -> None:
        self._handlers.pop(addr, None)

    def send(self, src: str, dst: str, payload: object) -> None:
        self.stats["sent"] += 1
        if not self.can_talk(src, dst):
            self.stats["partitioned"] += 1
            return
        if self._loss and self._rng.random() < self._loss:
            self.stats["lost"] += 1
            return
        copies = 1
        if self._duplicate and self._rng.random() < self._duplicate:
            copies = 2
            self.stats["duplicated"] += 1
        for _ in range(copies):
            delay = self._rng.uniform(self._min_delay, self._max_delay)
            delay += self._node_delay.get(src, 0.0) + self._node_delay.get(dst, 0.0)
            self._clock.call_later(delay, lambda: self._deliver(src, dst, payload))

    def _deliver(self, src: str, dst: str, payload: object) -> None:
        if not self.can_talk(src, dst):
            self.stats["partitioned"] += 1
            return
        handler = self._handlers.get(dst)
        if handler is None:
            self.stats["lost"] += 1
            return
        self.stats["delivered"] += 1
        handler(src, payload)

    def can_talk(self, a: str, b: str) -> bool:
        """False only when both addresses are in different partition groups."""
        ga, gb = self._groups.get(a), self._groups.get(b)
        return ga is None or gb is None or ga == gb

    def partition(self, *groups: Iterable[str]) -> None:
        self._groups = {}
        for index, group in enumerate(groups):
            for addr in group:
                self._groups[addr] = index

    def heal(self) -> None:
        self._groups = {}

    def set_loss(self, loss: float) -> None:
        self._loss = _probability(loss)

    def set_node_delay(self, addr: str, extra: float) -> None:
        if extra < 0:
            raise ValueError("extra delay must be >= 0")
        self._node_delay[addr] = float(extra)


def _probability(p: float) -> float:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"probability out of range: {p!r}")
    return float(p)

"""Transmit-limited broadcast queue: piggybacked dissemination of membership updates."""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass


def retransmit_limit(mult: int, members: int) -> int:
    """How many times each update is sent: mult * ceil(log10(N + 1)), at least 1."""
    return max(1, mult * math.ceil(math.log10(members + 1)))


@dataclass(slots=True)
class _Item:
    key: str
    data: bytes
    order: int
    transmits: int = 0


class BroadcastQueue:
    """One pending update per member name; fewest-sent (then newest) updates go first."""

    def __init__(self) -> None:
        self._items: dict[str, _Item] = {}
        self._order = itertools.count()

    def __len__(self) -> int:
        return len(self._items)

    def queue(self, key: str, data: bytes) -> None:
        """Add an update, replacing (invalidating) any older one about the same member."""
        self._items[key] = _Item(key, data, next(self._order))

    def pending(self, key: str) -> bool:
        return key in self._items

    def take(self, budget: int, limit: int) -> list[bytes]:
        """Updates whose sizes fit ``budget`` bytes; each one taken counts as a transmission."""
        if budget <= 0 or not self._items:
            return []
        chosen: list[bytes] = []
        for item in sorted(self._items.values(), key=lambda i: (i.transmits, -i.order)):
            if len(item.data) > budget:
                continue
            chosen.append(item.data)
            budget -= len(item.data)
            item.transmits += 1
            if item.transmits >= limit:
                del self._items[item.key]
            if budget < 8:
                break
        return chosen

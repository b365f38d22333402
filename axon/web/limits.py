"""What the HTTP server may hold at once, as plain counters (no I/O): connections and body bytes.

The server asks before it takes (``try_open``, ``take``) and gives back when done, so a
refusal happens before the memory or file descriptor is spent, not after.
"""
from __future__ import annotations


class ConnectionCount:
    """Open connections against a cap."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"the connection limit must be at least 1, not {limit}")
        self.limit = limit
        self.open = 0

    def try_open(self) -> bool:
        """Count one more connection; False (and nothing counted) when at the cap."""
        if self.open >= self.limit:
            return False
        self.open += 1
        return True

    def close(self) -> None:
        self.open -= 1


class ByteBudget:
    """Bytes held against a limit: a holder takes before it buffers and gives back when done."""

    def __init__(self, limit: int) -> None:
        if limit < 0:
            raise ValueError(f"a byte budget cannot be negative: {limit}")
        self.limit = limit
        self.used = 0

    @property
    def available(self) -> int:
        return self.limit - self.used

    def take(self, n: int) -> bool:
        """Hold ``n`` more bytes; False (and nothing held) when they would pass the limit."""
        if self.used + n > self.limit:
            return False
        self.used += n
        return True

    def give(self, n: int) -> None:
        self.used -= n


def connection_cap(wanted: int, nofile: int, reserve: int, claimed: int = 0) -> int:
    """How many connections fit in a file descriptor limit of ``nofile``.

    ``reserve`` descriptors stay for the rest of the process (WAL, LevelDB, peer sockets)
    and ``claimed`` are promised to other listeners.  When the limit is too low for the
    reserve, the reserve shrinks to half the limit rather than leave no connection at all.
    """
    reserve = min(reserve, nofile // 2)
    return max(1, min(wanted, nofile - reserve - claimed))

"""How many bytes of large writes may be on their way through the Raft log at once.

Every write shares one log: a small write proposed after several MiB of large values commits
only once those are on disk on a majority, so a client writing 1 MiB values at full speed
would make everyone's small writes wait hundreds of milliseconds.  Large writes (``small``
bytes or more) therefore take a share of a budget before they are proposed and give it back
once answered; past the budget they wait their turn, in order.  Small writes never wait here,
so they queue behind at most ``limit`` bytes of large ones.
"""
from __future__ import annotations

import collections
import time

from gevent.event import Event

from axon.api.errors import Unavailable

SMALL_WRITE_BYTES = 64 << 10


class WriteBudget:
    """A byte budget for large writes, handed out first come, first served."""

    def __init__(self, limit: int, small: int = SMALL_WRITE_BYTES) -> None:
        self.limit = limit
        self.small = small
        self.used = 0
        self._waiters: collections.deque[tuple[int, Event]] = collections.deque()

    def acquire(self, size: int, timeout: float) -> int:
        """Take a write of ``size`` bytes' share (a write bigger than the budget takes all of it;
        a small one nothing) and return it for ``release``; Unavailable if it is not free
        within ``timeout`` seconds."""
        if size < self.small:
            return 0
        need = min(size, self.limit)
        self._acquire(need, timeout)
        return need

    def release(self, share: int) -> None:
        """Give back what ``acquire`` returned, once the write is answered."""
        if share:
            self.used -= share
            self._wake_next()

    def _acquire(self, need: int, timeout: float) -> None:
        if not self._waiters and self.used + need <= self.limit:
            self.used += need
            return
        turn = (need, Event())
        self._waiters.append(turn)
        deadline = time.monotonic() + timeout
        try:
            while not turn[1].is_set():
                if not turn[1].wait(max(0.0, deadline - time.monotonic())):
                    raise Unavailable("too many large writes are waiting for the log; retry later",
                                      retry_after=1)
        except BaseException:
            if turn in self._waiters:
                self._waiters.remove(turn)
                self._wake_next()   # the ones behind may fit now
            else:                   # granted just as the wait ended: give it back
                self.used -= need
                self._wake_next()
            raise

    def _wake_next(self) -> None:
        """Grant waiting writes, oldest first, while they fit."""
        while self._waiters and self.used + self._waiters[0][0] <= self.limit:
            need, event = self._waiters.popleft()
            self.used += need
            event.set()

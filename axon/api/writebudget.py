"""How many bytes of large writes may be on their way through the Raft log at once.

Every write shares one log: a small write proposed after several MiB of large values commits
only once those are on disk on a majority, so a client writing 1 MiB values at full speed
would make everyone's small writes wait hundreds of milliseconds.  Large writes (``small``
bytes or more) therefore take a share of a budget before they are proposed and give it back
once answered; past the budget they wait their turn, in order.  Small writes never wait here,
so they queue behind at most ``limit`` bytes of large ones.

While other requests are being served, a large write's share comes back only after a pause
as long as the write held it, so large writes hold the log at most half the time.  Back to
back, 1 MiB writes kept two cores busy on a three-node host, and a small write then took
the whole pipeline's share of a busy CPU (p99 80-100 ms; with the pause, 50-60 ms).  With
no one else about, large writes go back to back.
"""
from __future__ import annotations

import collections
import time
from dataclasses import dataclass
from typing import Callable

import gevent
from gevent.event import Event

from axon.api.errors import Unavailable

SMALL_WRITE_BYTES = 64 << 10
OTHERS_ABOUT_SECONDS = 1.0   # other requests count as being served if one came this recently
MAX_PAUSE_SECONDS = 0.5      # a write held up by a slow disk or an election pauses no longer


@dataclass(frozen=True)
class Share:
    """The part of the budget a write holds, and when it was granted."""
    size: int
    granted: float


NO_SHARE = Share(0, 0.0)


class WriteBudget:
    """A byte budget for large writes, handed out first come, first served."""

    def __init__(self, limit: int, small: int = SMALL_WRITE_BYTES, *,
                 clock: Callable[[], float] = time.monotonic,
                 later: Callable[..., object] = gevent.spawn_later) -> None:
        self.limit = limit
        self.small = small
        self.used = 0
        self._clock = clock
        self._later = later
        self._other_seen = float("-inf")   # when the last request that is not a large write came
        self._waiters: collections.deque[tuple[int, Event]] = collections.deque()

    def acquire(self, size: int, timeout: float) -> Share:
        """Take a write of ``size`` bytes' share (a write bigger than the budget takes all of it;
        a small one nothing) and return it for ``release``; Unavailable if it is not free
        within ``timeout`` seconds."""
        if size < self.small:
            self.note_other_request()
            return NO_SHARE
        need = min(size, self.limit)
        self._acquire(need, timeout)
        return Share(need, self._clock())

    def note_other_request(self) -> None:
        """A request that is not a large write is being served (a read, a small write)."""
        self._other_seen = self._clock()

    def release(self, share: Share) -> None:
        """Give back what ``acquire`` returned, once the write is answered: after a pause as
        long as the write held it while others are about, at once otherwise."""
        if not share.size:
            return
        now = self._clock()
        if now - self._other_seen < OTHERS_ABOUT_SECONDS:
            self._later(min(now - share.granted, MAX_PAUSE_SECONDS), self._give_back, share.size)
        else:
            self._give_back(share.size)

    def _give_back(self, size: int) -> None:
        self.used -= size
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

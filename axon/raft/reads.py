"""Linearizable read barriers (ReadIndex) and waits for the applied index.

Every barrier asked for while the driver's loop was busy shares one ReadIndex request, so a
burst of reads costs the leader one heartbeat round.
"""
from __future__ import annotations

import heapq
import itertools
from typing import Callable, Sequence

from gevent.event import AsyncResult

from axon.raft.core import RaftCore, ReadState
from axon.raft.errors import NotLeader


class Reads:
    """Read barriers waiting for the core, and callers waiting for an applied index."""

    def __init__(self) -> None:
        self._queued: list[AsyncResult] = []
        self._asked: dict[int, list[AsyncResult]] = {}      # ReadIndex ctx -> barriers
        self._ctx = itertools.count(1)
        self._applied_waiters: list[tuple[int, int, AsyncResult]] = []   # heap by index
        self._waiter_ids = itertools.count()

    def queue(self) -> AsyncResult:
        """A barrier for the next round; its result is the index to wait for."""
        result = AsyncResult()
        self._queued.append(result)
        return result

    def flush(self, core: RaftCore) -> None:
        """Ask the core for one read index covering every queued barrier."""
        if not self._queued:
            return
        ctx = next(self._ctx)
        self._asked[ctx], self._queued = self._queued, []
        core.read_index(ctx)

    def answered(self, read_states: Sequence[ReadState], failed: Sequence[int],
                 not_leader: Callable[[], NotLeader]) -> None:
        """The core's answers: read indexes granted, or reads this node can no longer serve."""
        for rs in read_states:
            for result in self._asked.pop(rs.ctx, ()):
                result.set(rs.index)
        if failed:
            err = not_leader()
            for ctx in failed:
                for result in self._asked.pop(ctx, ()):
                    result.set_exception(err)

    def wait_applied(self, index: int) -> AsyncResult:
        """Set once ``applied(i)`` is called with i >= index."""
        result = AsyncResult()
        heapq.heappush(self._applied_waiters, (index, next(self._waiter_ids), result))
        return result

    def applied(self, index: int) -> None:
        waiters = self._applied_waiters
        while waiters and waiters[0][0] <= index:
            heapq.heappop(waiters)[2].set(None)

    def fail_all(self, err: Exception) -> None:
        for result in self._queued:
            result.set_exception(err)
        self._queued.clear()
        for results in self._asked.values():
            for result in results:
                result.set_exception(err)
        self._asked.clear()
        for _, _, result in self._applied_waiters:
            result.set_exception(err)
        self._applied_waiters.clear()

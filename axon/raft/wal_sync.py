"""Where the WAL's fdatasync runs: on the hub's own thread while syncs are quick, in a worker
thread once they are slow.

Inline, a sync blocks every greenlet for its duration; in a worker the others run meanwhile,
but handing the sync over and back costs two thread wake-ups and two GIL hand-offs, which is
more than a quick sync takes.  A moving average of past syncs decides.
"""
from __future__ import annotations

import time
from typing import Callable

import gevent

from axon.raft.wal import WAL

# Syncs whose moving average is below this run inline.
INLINE_SYNC_BELOW = 0.001
_WEIGHT = 0.2    # of the newest sync in the moving average


class WalSyncer:
    """Runs the log's syncs where they cost least."""

    def __init__(self) -> None:
        self.average = 0.0   # moving average of fdatasync seconds
        self.on_sync: Callable[[float], None] = _ignore   # each sync's seconds (the node's metrics)

    def run(self, wal: WAL) -> None:
        """Make everything appended to ``wal`` so far durable; returns when it is."""
        if self.average < INLINE_SYNC_BELOW:
            took = _timed(wal.sync)
        else:
            took = gevent.get_hub().threadpool.apply(_timed, (wal.begin_sync().run,))
        self.average += _WEIGHT * (took - self.average)
        self.on_sync(took)


def _ignore(seconds: float) -> None:
    pass


def _timed(sync: Callable[[], None]) -> float:
    started = time.perf_counter()
    sync()
    return time.perf_counter() - started

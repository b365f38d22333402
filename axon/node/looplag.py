"""Event-loop lag: how late the gevent loop runs a timer.

Everything a node does shares one loop, Raft heartbeats included: a call that holds the loop
(a long scan, a big encode, a slow disk call on the hub's thread) delays every greenlet, and
one held past the election timeout costs the leader its role.  A greenlet sleeps ``interval``
over and over and records by how much each wake-up came late; ``/cluster/status`` shows the
last lag, the largest since start and the largest of the recent ones.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from typing import Callable

import gevent

from axon.gossip.ratelimit import LogLimiter

log = logging.getLogger("axon.node.looplag")

INTERVAL = 0.05     # one Raft tick: a stall shows within a tick of its length
RECENT = 200        # samples in "recent_max": 10 s at the default interval
WARN_ABOVE = 0.25   # half the shortest election timeout: a stall this long is worth a line
WARN_EVERY = 10.0   # at most one such line per this many seconds


class LoopLag:
    """Measures the loop's lag while ``run`` runs in a greenlet of that loop."""

    def __init__(self, interval: float = INTERVAL, recent: int = RECENT,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self.last = 0.0
        self.max = 0.0
        self._recent: deque[float] = deque(maxlen=recent)
        self._warnings = LogLimiter(WARN_EVERY)

    def run(self) -> None:
        """Sleep, measure, forever (spawn it; kill the greenlet to stop)."""
        while True:
            start = self.clock()
            gevent.sleep(self.interval)
            self.record(self.clock() - start - self.interval)

    def record(self, lag: float) -> None:
        """One wake-up ``lag`` seconds late (a timer firing a little early counts as 0)."""
        lag = max(0.0, lag)
        self.last = lag
        self.max = max(self.max, lag)
        self._recent.append(lag)
        if lag > WARN_ABOVE and self._warnings.allow("stall", self.clock()):
            log.warning("the event loop stalled for %.0f ms; a leader stalled past its election "
                        "timeout loses its role", lag * 1000)

    def snapshot(self) -> dict[str, float]:
        """{"last", "max", "recent_max"} in milliseconds, as /cluster/status shows them."""
        recent = max(self._recent, default=0.0)
        return {"last": _ms(self.last), "max": _ms(self.max), "recent_max": _ms(recent)}


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)

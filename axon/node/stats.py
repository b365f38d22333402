"""What a node tells about itself beyond Raft: version, uptime and sizes for its status, the
once-a-second samples behind the dashboard's charts, and the collectors ``GET /metrics`` reads."""
from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Callable

import gevent

import axon
from axon.api.overview import GOSSIP_STATUSES
from axon.api.stats import INTERVAL_S, Reading, StatsRing, sample
from axon.metrics import Metric, NodeMetrics, counter, gauge, gossip_families, raft_families
from axon.node.disk import DiskUsage

if TYPE_CHECKING:   # only for the annotation: the process imports this module
    from axon.node.process import NodeProcess

class NodeFacts:
    """Version, uptime and the data dir's and WAL's sizes (``/cluster/status``).

    The sizes are the disk alarm's last reading (axon/node/disk.py, every second, off the
    event loop): one walk of LevelDB's files serves the alarm, the status and the metrics.
    """

    def __init__(self, usage: Callable[[], DiskUsage | None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        """``usage()``: the last reading of the data dir, None before the first (sizes 0 then)."""
        self.usage = usage
        self.clock = clock
        self.started = clock()

    def sizes(self) -> tuple[int, int]:
        """(data bytes, WAL bytes) of the last reading."""
        usage = self.usage()
        return (usage.data_bytes, usage.wal_bytes) if usage is not None else (0, 0)

    def uptime(self) -> float:
        """Seconds since the node started, to a tenth."""
        return round(self.clock() - self.started, 1)

    def __call__(self) -> dict:
        data, wal = self.sizes()
        return {"version": axon.__version__, "uptime_s": self.uptime(), "data_bytes": data, "wal_bytes": wal}


class StatsSampler:
    """Turns the node's counters into one chart sample a second (``run`` in a greenlet)."""

    def __init__(self, metrics: NodeMetrics, ring: StatsRing | None = None,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self.metrics = metrics
        self.ring = ring if ring is not None else StatsRing()
        self.clock = clock
        self.wall = wall

    def reading(self) -> Reading:
        """The counters now."""
        m = self.metrics
        return Reading(self.clock(), m.http.writes, m.http.reads, tuple(m.commit.counts), tuple(m.fsync.counts))

    def step(self, before: Reading) -> Reading:
        """Take a reading and add the sample since ``before``; returns the new reading."""
        after = self.reading()
        if after.at > before.at:
            self.ring.add(sample(before, after, self.wall(), self.metrics.commit.bounds))
        return after

    def run(self) -> None:
        """Sample every INTERVAL_S, forever (kill the greenlet to stop)."""
        last = self.reading()
        while True:
            gevent.sleep(INTERVAL_S)
            last = self.step(last)


def register_collectors(metrics: NodeMetrics, process: "NodeProcess", facts: NodeFacts) -> None:
    """Everything /metrics reads off the node's own state at scrape time."""
    node = process.node
    node.on_commit = metrics.commit.observe
    node.wal_syncer.on_sync = metrics.fsync.observe
    metrics.add(lambda: raft_families(node.status(), node.counts))
    metrics.add(lambda: gossip_families(process.membership.members_view(), GOSSIP_STATUSES))

    def node_families() -> list[Metric]:
        lag = process.loop_lag
        data, wal = facts.sizes()
        out = [gauge("axon_event_loop_lag_seconds", "how late the event loop last ran a timer", lag.last),
               gauge("axon_event_loop_lag_max_seconds", "the largest event-loop lag since start", lag.max),
               gauge("axon_data_bytes", "bytes of files in the data dir", data),
               gauge("axon_wal_bytes", "bytes of the Raft WAL", wal),
               gauge("axon_watchers", "watch streams open on this node", process.feed.subscriber_count),
               gauge("axon_uptime_seconds", "seconds since the node process started", facts.uptime()),
               gauge("axon_build_info", "the node's version", 1, {"version": axon.__version__})]
        server = process.http
        if server is not None:
            out += [gauge("axon_http_connections", "client connections open", server.connections.open),
                    gauge("axon_http_connections_max", "client connections allowed", server.connections.limit),
                    counter("axon_http_connections_refused", "connections turned away at the cap",
                            server.turned_away),
                    gauge("axon_http_inflight_body_bytes", "request body bytes held", server.inflight_bytes)]
        return out
    metrics.add(node_families)


def wal_dir(data_dir: str) -> str:
    """Where the node's Raft log lives (as node/process.py lays the data dir out)."""
    return os.path.join(data_dir, "raft")

"""The node's one metrics registry: what ``GET /metrics`` shows, in Prometheus's text format.

The hot path (a request, a commit, an fsync) only adds to plain counters and bucket lists
(``Histogram``, ``HttpMetrics``): no lock and no label lookup in prometheus_client per
event, since everything that observes runs on the hub's one thread.  Everything else (Raft
indexes, gossip members, loop lag, connections, sizes) is read from the node's own state
when a scrape asks (``Callback`` collectors).  Each node process has its own
``CollectorRegistry``, so several nodes in one test process do not clash.
"""
from __future__ import annotations

from bisect import bisect_left
from typing import Callable, Iterable, Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily,
                                    Metric)
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# seconds; fine steps between 0.1 ms and 10 s, so a p99 read off the buckets is close
LATENCY_BUCKETS = (0.0001, 0.0002, 0.0003, 0.0005, 0.0007, 0.001, 0.0015, 0.002, 0.003, 0.005,
                   0.007, 0.01, 0.015, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.3, 0.5, 0.7,
                   1.0, 1.5, 2.0, 3.0, 5.0, 7.0, 10.0)
# HTTP latency has a series per route and status: fewer buckets keep a scrape small
HTTP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
OTHER_ROUTE = "other"   # a path no route claims (dashboard files, 404s): one label, not one per path
WRITE_ROUTES = frozenset({("PUT", "/kv/<key:path>"), ("DELETE", "/kv/<key:path>"), ("POST", "/txn")})
READ_ROUTES = frozenset({("GET", "/kv/<key:path>"), ("GET", "/kv")})


class Histogram:
    """Observations counted into fixed buckets (``counts[i]``: bounds[i-1] < v <= bounds[i]; the
    last one past every bound), plus their sum; one thread only."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Count one observation."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        """Observations so far."""
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, float]]:
        """Prometheus's ``le`` buckets: (bound, observations at or below it)."""
        out, total = [], 0
        for bound, n in zip((*map(repr, self.bounds), "+Inf"), self.counts):
            total += n
            out.append((bound, total))
        return out


def quantile(bounds: Sequence[float], counts: Sequence[int], q: float) -> float | None:
    """The ``q`` quantile of bucketed observations (None when there are none), interpolated
    linearly inside its bucket as Prometheus's histogram_quantile does; past the last bound
    it is that bound."""
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    for i, n in enumerate(counts):
        if n and seen + n >= rank:
            if i == len(bounds):
                return bounds[-1]
            lower = bounds[i - 1] if i else 0.0
            return lower + (bounds[i] - lower) * (rank - seen) / n
        seen += n
    return bounds[-1]


class HttpMetrics:
    """Requests by method, route pattern and status, with their latency; plus the client reads
    and writes this node answered (each counted once in the cluster: not again on the leader a
    follower passed it to)."""

    def __init__(self) -> None:
        self.series: dict[tuple[str, str, int], Histogram] = {}
        self.writes = 0
        self.reads = 0

    def observe(self, method: str, route: str, status: int, seconds: float, forwarded: bool) -> None:
        """One answered request (``forwarded``: a peer passed it on, so it was counted there)."""
        key = (method, route, status)
        hist = self.series.get(key)
        if hist is None:
            hist = self.series[key] = Histogram(HTTP_BUCKETS)
        hist.observe(seconds)
        if 200 <= status < 300 and not forwarded:
            if (method, route) in WRITE_ROUTES:
                self.writes += 1
            elif (method, route) in READ_ROUTES:
                self.reads += 1

    def families(self) -> Iterable[Metric]:
        """The requests counter and latency histogram, one series per method, route and status."""
        labels = ["method", "route", "status"]
        total = CounterMetricFamily("axon_http_requests", "HTTP requests answered", labels=labels)
        latency = HistogramMetricFamily("axon_http_request_seconds",
                                        "time to the response's head (a stream's body not included)",
                                        labels=labels)
        for (method, route, status), hist in sorted(self.series.items()):
            values = [method, route, str(status)]
            total.add_metric(values, hist.count)
            latency.add_metric(values, hist.cumulative(), hist.sum)
        return [total, latency]


class Callback(Collector):
    """A collector whose families are made at scrape time by a function."""

    def __init__(self, families: Callable[[], Iterable[Metric]]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families()

    def describe(self) -> Iterable[Metric]:
        return []   # nothing to check at registration: the node's state may not exist yet


class NodeMetrics:
    """One node's registry: the hot path's counters and the collectors read at scrape time."""

    def __init__(self, process_metrics: bool = True) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.http = HttpMetrics()
        self.commit = Histogram()      # propose -> applied, on the leader
        self.fsync = Histogram()       # one WAL fdatasync
        self.add(self.http.families)
        self.add(lambda: [histogram("axon_commit_seconds", "a write from proposal to applied (leader)",
                                    self.commit),
                          histogram("axon_wal_fsync_seconds", "one WAL fdatasync", self.fsync)])
        if process_metrics:   # CPU, memory, open files of this process (what `ps` would say)
            from prometheus_client import ProcessCollector
            ProcessCollector(namespace="axon", registry=self.registry)

    def add(self, families: Callable[[], Iterable[Metric]]) -> None:
        """Read ``families()`` at every scrape."""
        self.registry.register(Callback(families))

    def render(self) -> bytes:
        """The text a scrape gets."""
        return generate_latest(self.registry)


def histogram(name: str, documentation: str, hist: Histogram) -> HistogramMetricFamily:
    """One unlabelled histogram family from ``hist``."""
    family = HistogramMetricFamily(name, documentation)
    family.add_metric([], hist.cumulative(), hist.sum)
    return family


def gauge(name: str, documentation: str, value: float | None, labels: dict[str, str] | None = None) -> GaugeMetricFamily:
    """One gauge (NaN when the value is unknown)."""
    family = GaugeMetricFamily(name, documentation, labels=list(labels or {}))
    family.add_metric(list((labels or {}).values()), float("nan") if value is None else value)
    return family


def counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    """One counter (its name gets ``_total`` in the text)."""
    return CounterMetricFamily(name, documentation, value=value)


def raft_families(status: dict, counters: dict[str, int]) -> list[Metric]:
    """Raft's gauges from RaftNode.status() and its counters (RaftNode.counters())."""
    role = GaugeMetricFamily("axon_raft_role", "1 for this node's Raft role", labels=["role"])
    for name in ("leader", "follower", "candidate", "learner"):
        role.add_metric([name], 1.0 if status.get("state") == name else 0.0)
    out: list[Metric] = [
        gauge("axon_raft_term", "current Raft term", status.get("term")),
        role,
        gauge("axon_raft_commit_index", "highest log index known committed", status.get("commit_index")),
        gauge("axon_raft_applied_index", "highest log index applied here", status.get("applied_index")),
        gauge("axon_raft_last_index", "last index of the local log", status.get("last_index")),
        gauge("axon_raft_snapshot_index", "index the log was last compacted to", status.get("snapshot_index")),
        gauge("axon_raft_log_bytes", "bytes of Raft log held in memory", status.get("log_bytes")),
        gauge("axon_raft_voters", "voters in the configuration", len(status.get("voters") or [])),
        gauge("axon_raft_has_leader", "1 while a leader is known", 1.0 if status.get("leader") else 0.0),
    ]
    docs = {"leader_changes": "times the known leader changed",
            "proposals": "client write batches proposed here",
            "snapshots_sent": "snapshot streams started to followers",
            "snapshots_installed": "snapshots received and installed",
            "compactions": "log compactions (a snapshot of the store taken)"}
    out += [counter(f"axon_raft_{name}", doc, counters.get(name, 0)) for name, doc in docs.items()]
    return out


def gossip_families(members: list[dict] | None, statuses: Sequence[str]) -> list[Metric]:
    """Gossip members by state (nothing when this node runs no gossip)."""
    if members is None:
        return []
    family = GaugeMetricFamily("axon_gossip_members", "members gossip knows, by state", labels=["state"])
    for state in statuses:
        family.add_metric([state], sum(1 for m in members if m.get("status") == state))
    return [family]

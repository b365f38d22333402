"""The dashboard's charts without a Prometheus server: each node's last minutes, second by second.

Every second a node reads its counters (``Reading``: client writes and reads answered, the
commit and fsync histograms' buckets) and turns the difference from the previous reading
into one sample: writes/s, reads/s, commit p99 and fsync p99 in ms (``sample``, pure).
``StatsRing`` keeps the last 300.  ``GET /cluster/stats`` answers this node's ring and every
member's, asked concurrently as the overview asks for statuses (``collect_stats``).
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence
from urllib.parse import quote

from axon.api import validate
from axon.api.errors import InvalidInput
from axon.api.overview import StatusFetcher
from axon.metrics import quantile

INTERVAL_S = 1
KEEP_SAMPLES = 300      # 5 minutes at one a second
P99 = 0.99


@dataclass(frozen=True)
class Reading:
    """Cumulative counters at one moment (``at``: a monotonic clock, seconds)."""
    at: float
    writes: int
    reads: int
    commit: tuple[int, ...]     # bucket counts, as metrics.Histogram.counts
    fsync: tuple[int, ...]


def sample(before: Reading, after: Reading, wall: float, bounds: Sequence[float]) -> dict:
    """One chart point for the time between two readings; a p99 is None when nothing was observed."""
    elapsed = after.at - before.at
    if elapsed <= 0:
        raise ValueError("readings must be taken in order")

    def p99_ms(a: Sequence[int], b: Sequence[int]) -> float | None:
        value = quantile(bounds, [y - x for x, y in zip(a, b)], P99)
        return None if value is None else round(value * 1000, 3)

    return {"t": round(wall, 3),
            "writes_per_s": round((after.writes - before.writes) / elapsed, 2),
            "reads_per_s": round((after.reads - before.reads) / elapsed, 2),
            "commit_p99_ms": p99_ms(before.commit, after.commit),
            "fsync_p99_ms": p99_ms(before.fsync, after.fsync)}


class StatsRing:
    """The last ``size`` samples, oldest first."""

    def __init__(self, size: int = KEEP_SAMPLES) -> None:
        self._samples: deque[dict] = deque(maxlen=size)

    def add(self, point: dict) -> None:
        self._samples.append(point)

    def since(self, t: float | None = None) -> list[dict]:
        """Every sample newer than ``t`` (all when None)."""
        if t is None:
            return list(self._samples)
        return [s for s in self._samples if s["t"] > t]


def since_param(raw: str | None) -> float | None:
    """The ``since`` query value: unix seconds, finite."""
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise InvalidInput(f"since must be a number of unix seconds, not {raw[:40]!r}") from None
    if not math.isfinite(value):
        raise InvalidInput("since must be a finite number")
    return value


def local_answer(node_id: str, ring: StatsRing, since: float | None) -> dict:
    """What a node answers for itself (``GET /cluster/stats?local=1``)."""
    return {"node_id": node_id, "interval_s": INTERVAL_S, "samples": ring.since(since)}


def merge_stats(node_id: str, own: dict, answers: Mapping[str, object]) -> dict:
    """The cluster's answer: this node's samples and each member's, or why a member has none."""
    nodes: dict[str, dict] = {node_id: {"samples": own["samples"]}}
    for nid, answer in sorted(answers.items()):
        if isinstance(answer, dict) and answer.get("node_id") == nid \
                and isinstance(answer.get("samples"), list):
            nodes[nid] = {"samples": answer["samples"]}
        else:
            nodes[nid] = {"error": answer if isinstance(answer, str) else "no answer"}
    return {"interval_s": INTERVAL_S, "nodes": nodes}


def collect_stats(fetcher: StatusFetcher, node_id: str, own: dict, members: Mapping[str, str],
                  since: float | None, headers: Mapping[str, str] | None = None) -> dict:
    """Ask every other member (node id -> http address) for its samples at once, then merge."""
    targets = {nid: addr for nid, addr in members.items() if nid != node_id}
    # quoted: a float may print as 1e+16, and a query's "+" means a space
    path = "/cluster/stats?local=1" + ("" if since is None else "&since=" + quote(repr(since), safe=""))
    answers = fetcher.fetch(targets, headers, path=path)
    return merge_stats(node_id, own, answers)


class StatsService:
    """``GET /cluster/stats``: this node's ring, and with it every member's (``members()``:
    node id -> http address)."""

    def __init__(self, node_id: str, ring: StatsRing, fetcher: StatusFetcher,
                 members: Callable[[], Mapping[str, str]]) -> None:
        self.node_id = node_id
        self.ring = ring
        self.fetcher = fetcher
        self.members = members

    def answer(self, since: str | None, local: str | None, authorization: str | None = None) -> dict:
        """The raw ``since`` and ``local`` query values in; the cluster's samples (or ours alone) out."""
        after = since_param(since)
        own = local_answer(self.node_id, self.ring, after)
        if validate.boolean(local, "local"):
            return own
        headers = {"Authorization": authorization} if authorization else None
        return collect_stats(self.fetcher, self.node_id, own, self.members(), after, headers)

"""Load generator for a running cluster: N keep-alive HTTP connections on gevent, one workload.

Workloads: ``write`` (PUT), ``read`` (linearizable GET), ``stale`` (GET ?stale=true) and
``mixed`` (90 % linearizable reads, 10 % writes).  The statistics part (:class:`Recorder`,
:func:`summarize`, :func:`format_summary`) is pure; :func:`run_bench` does the I/O and
expects gevent's monkey patching to be in place (``axon bench`` does it).
"""
from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from typing import Callable

from axon.client import Client
from axon.client.http import ClientError, HttpPool, kv_path

WORKLOADS = ("write", "read", "stale", "mixed")
MIXED_WRITE_SHARE = 0.10
PREFILL_MAX_KEYS = 100_000   # read workloads write their key space first, unless it is larger


class BenchError(Exception):
    """The benchmark cannot run as asked (bad options, no leader, unreachable cluster)."""


@dataclass(frozen=True)
class BenchConfig:
    addrs: tuple[str, ...]
    workload: str = "write"
    connections: int = 16
    duration: float = 10.0
    value_size: int = 100
    keys: int = 1000
    timeout: float = 10.0
    to_leader: bool = True      # send to the leader (found through the first address); stale reads
                                # go to every address
    prefill: bool = True

    def validate(self) -> "BenchConfig":
        if self.workload not in WORKLOADS:
            raise BenchError(f"unknown workload {self.workload!r}; use one of {', '.join(WORKLOADS)}")
        if not self.addrs:
            raise BenchError("give at least one node address")
        if not 1 <= self.connections <= 10_000:
            raise BenchError("connections must be between 1 and 10000")
        if not 0 < self.duration <= 24 * 3600:
            raise BenchError("duration must be positive (and at most a day)")
        if not 0 <= self.value_size <= 64 << 20:
            raise BenchError("value size must be between 0 and 64 MiB")
        if self.keys < 1:
            raise BenchError("the key space needs at least one key")
        if self.timeout <= 0:
            raise BenchError("timeout must be positive")
        return self


@dataclass
class Recorder:
    """Latencies of successful operations and error counts by HTTP status (0: transport error)."""
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    def ok(self, seconds: float) -> None:
        self.latencies.append(seconds)

    def error(self, status: int) -> None:
        name = str(status) if status else "conn"
        self.errors[name] = self.errors.get(name, 0) + 1

    @property
    def count(self) -> int:
        return len(self.latencies) + sum(self.errors.values())


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (0.0 for none)."""
    if not sorted_values:
        return 0.0
    rank = min(len(sorted_values) - 1, max(0, int(q * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


def summarize(rec: Recorder, elapsed: float, cfg: BenchConfig) -> dict:
    """The result as a plain dict (what ``--json`` prints)."""
    lat = sorted(rec.latencies)
    ms = lambda q: round(percentile(lat, q) * 1000, 3)
    return {
        "workload": cfg.workload, "connections": cfg.connections, "value_size": cfg.value_size,
        "keys": cfg.keys, "duration_s": round(elapsed, 3), "ok": len(lat),
        "ops_per_s": round(len(lat) / elapsed, 1) if elapsed > 0 else 0.0,
        "p50_ms": ms(0.50), "p99_ms": ms(0.99), "p999_ms": ms(0.999),
        "max_ms": round(lat[-1] * 1000, 3) if lat else 0.0,
        "errors": dict(sorted(rec.errors.items())),
    }


def format_summary(s: dict) -> str:
    """The result as the few lines `axon bench` prints."""
    errors = ", ".join(f"{k}: {v}" for k, v in s["errors"].items()) or "none"
    return (f"{s['workload']} x{s['connections']} conns, {s['value_size']} B values, {s['keys']} keys, "
            f"{s['duration_s']:.1f} s\n"
            f"  {s['ops_per_s']:.1f} ops/s ({s['ok']} ok)\n"
            f"  latency p50 {s['p50_ms']:.2f} ms  p99 {s['p99_ms']:.2f} ms  "
            f"p99.9 {s['p999_ms']:.2f} ms  max {s['max_ms']:.2f} ms\n"
            f"  errors: {errors}")


def progress_line(rec: Recorder, elapsed: float, last_count: int, interval: float) -> str:
    """One line of progress: operations so far and the rate over the last interval."""
    rate = (rec.count - last_count) / interval if interval > 0 else 0.0
    errs = sum(rec.errors.values())
    return f"{elapsed:6.1f}s  {rec.count:9d} ops  {rate:9.0f} ops/s  {errs} errors"


def pick_op(workload: str, rng: random.Random) -> str:
    """'write' or 'read' or 'stale' for one operation of the workload."""
    if workload == "mixed":
        return "write" if rng.random() < MIXED_WRITE_SHARE else "read"
    return workload


# ---------------------------------------------------------------------- I/O
def find_leader(addr: str, timeout: float) -> str:
    """The leader's HTTP address as the node at ``addr`` knows it."""
    try:
        with Client(addr, timeout=timeout, retry_for=0) as client:
            st = client.status()
    except ClientError as exc:
        raise BenchError(f"cannot ask {addr} for the leader: {exc}") from None
    if st.get("state") == "leader":
        return addr
    leader = st.get("leader_http")
    if not leader:
        raise BenchError(f"{addr} knows no leader; is the cluster up?")
    return leader


def _targets(cfg: BenchConfig) -> list[str]:
    if cfg.to_leader and cfg.workload != "stale":
        return [find_leader(cfg.addrs[0], cfg.timeout)]
    return list(cfg.addrs)


class _Worker:
    """One keep-alive connection doing operations back to back."""

    def __init__(self, addr: str, cfg: BenchConfig, rec: Recorder, seed: int) -> None:
        self.addr = addr
        self.cfg = cfg
        self.rec = rec
        self.pool = HttpPool(timeout=cfg.timeout, max_idle=1)
        self.rng = random.Random(seed)
        self.body = json.dumps({"value": "x" * cfg.value_size}).encode()
        self.paths = [kv_path(f"bench-{i:08d}") for i in range(cfg.keys)]

    def one(self, op: str, path: str) -> None:
        if op == "write":
            method, body = "PUT", self.body
        else:
            method, body = "GET", None
            if op == "stale":
                path += "?stale=true"
        t0 = time.perf_counter()
        try:
            resp = self.pool.request(method, self.addr, path, body, timeout=self.cfg.timeout)
        except ClientError:
            self.rec.error(0)
            return
        if resp.status == 200:
            self.rec.ok(time.perf_counter() - t0)
        else:
            self.rec.error(resp.status)

    def run(self, stop_at: float) -> None:
        while time.monotonic() < stop_at:
            self.one(pick_op(self.cfg.workload, self.rng), self.rng.choice(self.paths))
        self.pool.close()


def _prefill(cfg: BenchConfig, addr: str) -> None:
    """Write every key once so reads find something."""
    import gevent
    rec = Recorder()
    workers = [_Worker(addr, cfg, rec, i) for i in range(min(cfg.connections, 64))]
    paths = workers[0].paths

    def fill(worker: _Worker, part: list[str]) -> None:
        for path in part:
            worker.one("write", path)
        worker.pool.close()
    gevent.joinall([gevent.spawn(fill, w, paths[i::len(workers)]) for i, w in enumerate(workers)])
    if rec.errors:
        raise BenchError(f"prefill failed: errors {rec.errors}")


def run_bench(cfg: BenchConfig, progress: Callable[[str], None] | None = None,
              progress_interval: float = 1.0) -> dict:
    """Run the workload for cfg.duration seconds; returns :func:`summarize`'s dict."""
    import gevent
    cfg.validate()
    targets = _targets(cfg)
    if cfg.prefill and cfg.workload != "write" and cfg.keys <= PREFILL_MAX_KEYS:
        _prefill(cfg, targets[0] if cfg.workload != "stale" else find_leader(cfg.addrs[0], cfg.timeout))
    rec = Recorder()
    workers = [_Worker(targets[i % len(targets)], cfg, rec, i) for i in range(cfg.connections)]
    started = time.monotonic()
    stop_at = started + cfg.duration
    greenlets = [gevent.spawn(w.run, stop_at) for w in workers]
    last_count, last_t = 0, started
    while not all(g.dead for g in greenlets):
        gevent.joinall(greenlets, timeout=progress_interval)
        now = time.monotonic()
        if progress is not None and now < stop_at + cfg.timeout:
            progress(progress_line(rec, now - started, last_count, now - last_t))
        last_count, last_t = rec.count, now
    for g in greenlets:
        if g.exception is not None:
            raise BenchError(f"a worker failed: {g.exception!r}")
    return summarize(rec, time.monotonic() - started, cfg)

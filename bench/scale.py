"""Memory and scale: a 3-node cluster loaded with many keys; RSS, snapshot catch-up, restart.

    python bench/scale.py [--keys 1000000] [--value-size 100] [--json FILE]

Steps: load --keys keys of --value-size bytes over HTTP (wrk, bench/axon_load.lua); measure
steady-state writes/s with wrk; report each node's RSS; add a fourth node while wrk writes in
back-to-back 1-second slices (the new node catches up by snapshot, since the log is compacted
every 20,000 entries) and report the catch-up time and the median writes/s of the slices that
ran entirely while the leader was sending the snapshot (its progress for the new node in state
"snapshot"); report RSS again; restart a follower and report the time until it is ready.
Needs `wrk` on PATH.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from axon.client import Client   # noqa: E402
from axon.testing.cluster import Cluster, wait_for   # noqa: E402

from compare_etcd import run_wrk   # noqa: E402


def load(addr: str, keys: int, value_size: int, connections: int = 128) -> float:
    """Write keys 0..keys-1 once with wrk (bench/axon_load.lua); returns the seconds it took."""
    started = time.monotonic()
    env = dict(os.environ, BENCH_KEYS=str(keys), BENCH_VALUE_SIZE=str(value_size), BENCH_THREADS="2")
    proc = subprocess.Popen(["wrk", "-t2", f"-c{connections}", "-d3600s", "--timeout", "30s",
                             "-s", os.path.join(HERE, "axon_load.lua"), "http://" + addr],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    # wrk runs for its whole duration even when every thread has stopped: watch for the last
    # key of each thread's share, then interrupt it (it still prints its summary).
    client = Client(addr, timeout=5, retry_for=0)
    share = (keys + 1) // 2
    last_keys = [f"key-{share - 1:08d}", f"key-{keys - 1:08d}"]

    def written() -> bool:
        return all(client.get(k, stale=True) for k in last_keys)
    try:
        wait_for(written, 3600, interval=1.0, message="the load to finish")
        time.sleep(2)   # the requests still in flight
    finally:
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    failures = re.search(r"load-failures: (\d+)", stdout)
    if failures is None:
        raise SystemExit(f"loading failed: {stdout} {stderr}")
    if int(failures.group(1)):
        raise SystemExit(f"{failures.group(1)} writes failed while loading")
    return time.monotonic() - started


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def wrk_env(keys: int, value_size: int) -> dict[str, str]:
    return {"BENCH_KEYS": str(keys), "BENCH_VALUE_SIZE": str(value_size)}


class _Moment:
    """A time, set once by one thread and awaited by another."""

    def __init__(self) -> None:
        self.result: float | None = None
        self._event = threading.Event()

    def set(self) -> None:
        if self.result is None:
            self.result = time.monotonic()
            self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()


class JoinWatch(threading.Thread):
    """Polls the leader while a new node joins: when the snapshot is sent and when it caught up."""

    def __init__(self, leader, joiner, commit: int, timeout: float = 600.0) -> None:
        super().__init__(daemon=True)
        self.leader, self.joiner, self.commit, self.timeout = leader, joiner, commit, timeout
        self.sending_from = _Moment()
        self.sending_until = _Moment()
        self.caught_up_at = _Moment()
        self.error: BaseException | None = None

    def run(self) -> None:
        deadline = time.monotonic() + self.timeout
        try:
            while not self.caught_up_at.is_set():
                if time.monotonic() > deadline:
                    raise TimeoutError("the new node did not catch up in time")
                self.joiner.check_running()   # a crash during the install fails at once
                self._poll()
                time.sleep(0.1)
        except BaseException as exc:   # reported by the main thread
            self.error = exc
            self.caught_up_at.set()

    def _poll(self) -> None:
        progress = (self.leader.try_status() or {}).get("progress", {}).get(self.joiner.node_id, {})
        if progress.get("state") == "snapshot":
            self.sending_from.set()
        elif self.sending_from.is_set():
            self.sending_until.set()
        status = self.joiner.try_status() or {}
        if status.get("applied_index", 0) >= self.commit:
            self.sending_until.set()
            self.caught_up_at.set()

    def sent_s(self) -> float:
        if self.error is not None:
            raise SystemExit(f"join failed: {self.error}")
        start, end = self.sending_from.result, self.sending_until.result
        return (end - start) if start is not None and end is not None else 0.0

    def sending_during(self, t0: float, t1: float) -> bool:
        start, end = self.sending_from.result, self.sending_until.result
        return start is not None and end is not None and start <= t0 and t1 <= end


def wrk_slices(url: str, env: dict[str, str], until: _Moment, seconds: float = 1.0) -> list[tuple]:
    """Back-to-back wrk runs of `seconds` until `until` is set: [(start, end, writes/s)]."""
    slices = []
    while not until.is_set():
        t0 = time.monotonic()
        res = run_wrk(url, "axon_put.lua", 64, seconds, env)
        slices.append((t0, time.monotonic(), res.requests_per_s))
    return slices


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--value-size", type=int, default=100)
    ap.add_argument("--write-seconds", type=float, default=10.0)
    ap.add_argument("--json", dest="json_path")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        print("error: wrk is not on PATH (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))   # still stop the cluster
    base = tempfile.mkdtemp(prefix="axon-scale-")
    out: dict = {"keys": args.keys, "value_size": args.value_size}
    cluster = Cluster(base, 3)
    try:
        leader = cluster.leader()
        print(f"loading {args.keys} keys of {args.value_size} B through {leader.http} ...", flush=True)
        secs = load(leader.http, args.keys, args.value_size)
        out["load_s"] = round(secs, 1)
        out["load_writes_per_s"] = round(args.keys / secs, 1)
        print(f"  loaded in {secs:.1f} s ({args.keys / secs:.0f} writes/s)", flush=True)
        cluster.wait_converged(120)
        out["rss_mb"] = {n.node_id: round(rss_mb(n.proc.pid), 1) for n in cluster.nodes}
        print(f"  RSS per node (MB): {out['rss_mb']}", flush=True)
        url = "http://" + cluster.leader().http
        env = wrk_env(args.keys, args.value_size)
        steady = run_wrk(url, "axon_put.lua", 64, args.write_seconds, env)
        out["steady_writes_per_s"] = steady.requests_per_s
        print(f"  steady writes/s @64: {steady.requests_per_s:.0f}", flush=True)

        leader = cluster.leader()
        commit = leader.status()["commit_index"]
        started = time.monotonic()
        joiner = cluster.add_node(join=[leader.http], wait=False)
        watch = JoinWatch(leader, joiner, commit)
        watch.start()
        slices = wrk_slices(url, env, until=watch.caught_up_at)
        watch.join()
        out["join_catch_up_s"] = round(watch.caught_up_at.result - started, 1)
        print(f"  new node caught up by snapshot in {out['join_catch_up_s']} s "
              f"(snapshot sent in {watch.sent_s():.1f} s)", flush=True)
        during = [rps for t0, t1, rps in slices if watch.sending_during(t0, t1)]
        out["snapshot_send_s"] = round(watch.sent_s(), 1)
        out["writes_per_s_during_snapshot"] = round(statistics.median(during), 1) if during else None
        out["snapshot_write_ratio"] = (round(out["writes_per_s_during_snapshot"] / steady.requests_per_s, 2)
                                       if during else None)
        print(f"  writes/s while the snapshot was sent: {out['writes_per_s_during_snapshot']} "
              f"({out['snapshot_write_ratio']}x steady; median of {len(during)} 1-second slices)", flush=True)
        cluster.wait_voters([n.node_id for n in cluster.nodes], 120)
        out["rss_mb_after_join"] = {n.node_id: round(rss_mb(n.proc.pid), 1) for n in cluster.nodes}

        follower = next(n for n in cluster.nodes if n.node_id != cluster.leader().node_id)
        follower.stop()
        started = time.monotonic()
        follower.start()
        wait_for(lambda: Client(follower.http, timeout=1, retry_for=0).call("GET", "/ready"), 300, interval=0.1,
                 message="the restarted node to be ready")
        out["restart_to_ready_s"] = round(time.monotonic() - started, 1)
        print(f"  restart of {follower.node_id} to ready: {out['restart_to_ready_s']} s", flush=True)
        print(json.dumps(out, indent=2))
        if args.json_path:
            with open(args.json_path, "w") as f:
                json.dump(out, f, indent=2)
        return 0
    finally:
        cluster.close()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

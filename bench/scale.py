"""Memory and scale: a 3-node cluster loaded with many keys; RSS, snapshot catch-up, restart.

    python bench/scale.py [--keys 1000000] [--value-size 100] [--json FILE]

Steps: load --keys keys of --value-size bytes over HTTP (wrk, bench/axon_load.lua); measure steady-state writes/s with wrk; report each node's RSS; add a fourth
node while wrk writes (the new node catches up by snapshot, since the log is compacted every
20,000 entries) and report the catch-up time and the writes/s meanwhile; restart a follower
and report the time until it is ready.  Needs `wrk` on PATH.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from axon.client import AxonClient   # noqa: E402
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
    client = AxonClient(addr, timeout=5)
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

        commit = cluster.leader().status()["commit_index"]
        started = time.monotonic()
        joiner = cluster.add_node(join=[cluster.leader().http], wait=False)
        during = subprocess.Popen(
            ["wrk", "-t2", "-c64", f"-d{args.write_seconds:g}s", "--latency", "-s",
             os.path.join(HERE, "axon_put.lua"), url],
            stdout=subprocess.PIPE, text=True, env=dict(os.environ, **env))

        def caught_up() -> bool:
            joiner.check_running()   # a crash during the install fails at once
            return joiner.status()["applied_index"] >= commit
        wait_for(caught_up, 600, interval=0.2, message="the new node to catch up")
        out["join_catch_up_s"] = round(time.monotonic() - started, 1)
        print(f"  new node caught up by snapshot in {out['join_catch_up_s']} s", flush=True)
        from compare_etcd import parse_wrk
        out["writes_per_s_during_snapshot"] = parse_wrk(during.communicate(timeout=120)[0]).requests_per_s
        out["snapshot_write_ratio"] = round(out["writes_per_s_during_snapshot"] / steady.requests_per_s, 2)
        print(f"  writes/s while the snapshot was sent: {out['writes_per_s_during_snapshot']:.0f} "
              f"({out['snapshot_write_ratio']}x steady)", flush=True)
        cluster.wait_voters([n.node_id for n in cluster.nodes], 120)
        out["rss_mb_after_join"] = {n.node_id: round(rss_mb(n.proc.pid), 1) for n in cluster.nodes}

        follower = next(n for n in cluster.nodes if n.node_id != cluster.leader().node_id)
        follower.stop()
        started = time.monotonic()
        follower.start()
        wait_for(lambda: AxonClient(follower.http, timeout=1).call("GET", "/ready"), 300, interval=0.1,
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

"""Reference figures from pysyncobj 0.3.17 for Axon's replication benchmark.

Starts a 3-member pysyncobj cluster on 127.0.0.1 (one process per member, journal
file and full dump file on, batched AppendEntries) replicating a counter.  A
driver inside the leader process keeps N proposals outstanding for a fixed time
and measures committed proposals/s and the propose-to-callback latency.  Prints
one JSON line per N:

    {"system": "pysyncobj", "outstanding": N, "ops_per_s": ..., "p50_ms": ..., "p99_ms": ...}

pysyncobj is not an Axon dependency: run this with an interpreter that has it,
e.g. ``python -m venv VENV && VENV/bin/pip install pysyncobj==0.3.17`` then
``VENV/bin/python bench/pysyncobj_peer.py``.

Caveats when comparing: pysyncobj's journal is an mmap that is never synced
while running (no fsync per commit), and it serialises commands with pickle.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

READY_TIMEOUT = 30.0      # seconds for the cluster to elect a leader
DRAIN_TIMEOUT = 30.0      # seconds for in-flight proposals to finish after a run


def free_ports(n: int) -> list[int]:
    """Ports the OS considers free right now on 127.0.0.1 (a small race is acceptable here)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


# ------------------------------------------------------------------ member process

def make_counter(self_addr: str, partners: list[str], workdir: str, name: str,
                 append_period: float | None):
    from pysyncobj import SyncObj, SyncObjConf, replicated

    tuning = {} if append_period is None else {"appendEntriesPeriod": append_period}

    class Counter(SyncObj):
        def __init__(self) -> None:
            conf = SyncObjConf(
                journalFile=os.path.join(workdir, f"{name}.journal"),
                fullDumpFile=os.path.join(workdir, f"{name}.dump"),
                appendEntriesUseBatch=True,
                dynamicMembershipChange=False,
                **tuning,
            )
            super().__init__(self_addr, partners, conf)
            self.value = 0

        @replicated
        def incr(self) -> int:
            self.value += 1
            return self.value

    return Counter()


def wait_for_leader(obj, deadline: float) -> bool:
    while time.monotonic() < deadline:
        if obj.isReady() and obj._getLeader() is not None:
            return True
        time.sleep(0.05)
    return False


def drive(obj, outstanding: int, duration: float, warmup: float) -> dict:
    """Keep ``outstanding`` proposals in flight; measure those proposed in the window."""
    from pysyncobj import FAIL_REASON

    slots = threading.Semaphore(outstanding)
    lock = threading.Lock()
    latencies: list[float] = []
    failures = [0]
    start = time.perf_counter()
    measure_from = start + warmup
    measure_to = measure_from + duration

    def done(_result, error, proposed_at: float) -> None:
        now = time.perf_counter()
        with lock:
            if error != FAIL_REASON.SUCCESS:
                failures[0] += 1
            elif measure_from <= proposed_at and now <= measure_to:
                latencies.append(now - proposed_at)
        slots.release()

    while time.perf_counter() < measure_to:
        if not slots.acquire(timeout=0.5):
            continue
        proposed_at = time.perf_counter()
        obj.incr(callback=lambda r, e, t=proposed_at: done(r, e, t))
    for _ in range(outstanding):   # drain before the next run
        slots.acquire(timeout=DRAIN_TIMEOUT)
    latencies.sort()
    return {"system": "pysyncobj", "outstanding": outstanding,
            "ops_per_s": round(len(latencies) / duration, 1),
            "p50_ms": round(percentile(latencies, 0.50) * 1000, 3),
            "p99_ms": round(percentile(latencies, 0.99) * 1000, 3),
            "failed": failures[0]}


def run_member(args: argparse.Namespace) -> int:
    addrs = [f"127.0.0.1:{p}" for p in args.ports.split(",")]
    me = addrs[args.member]
    obj = make_counter(me, [a for a in addrs if a != me], args.workdir, f"m{args.member}",
                       args.append_period)
    if not wait_for_leader(obj, time.monotonic() + READY_TIMEOUT):
        print(json.dumps({"error": f"member {args.member}: no leader"}), flush=True)
        return 1
    if not obj._isLeader():
        while True:   # serve until the parent stops us
            time.sleep(1)
    for n in (int(x) for x in args.outstanding.split(",")):
        print(json.dumps(drive(obj, n, args.duration, args.warmup)), flush=True)
    print("DONE", flush=True)
    obj.destroy()
    return 0


# ------------------------------------------------------------------ parent

def run_cluster(args: argparse.Namespace) -> int:
    ports = free_ports(args.members)
    workdir = args.workdir or tempfile.mkdtemp(prefix="pysyncobj-bench-")
    results: list[str] = []
    finished = threading.Event()
    procs = []

    def pump(proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            line = line.strip()
            if line == "DONE":
                finished.set()
            elif line.startswith("{"):
                results.append(line)
                print(line, flush=True)
        finished_if_all_dead()

    def finished_if_all_dead() -> None:
        if all(p.poll() is not None for p in procs):
            finished.set()

    try:
        for i in range(args.members):
            cmd = [sys.executable, os.path.abspath(__file__), "--member", str(i),
                   "--ports", ",".join(map(str, ports)), "--workdir", workdir,
                   "--outstanding", args.outstanding, "--duration", str(args.duration),
                   "--warmup", str(args.warmup)]
            if args.append_period is not None:
                cmd += ["--append-period", str(args.append_period)]
            procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True))
        for proc in procs:
            threading.Thread(target=pump, args=(proc,), daemon=True).start()
        runs = len(args.outstanding.split(","))
        budget = READY_TIMEOUT + runs * (args.duration + args.warmup + DRAIN_TIMEOUT)
        if not finished.wait(budget):
            print(json.dumps({"error": "benchmark did not finish in time"}), flush=True)
            return 1
        return 0 if results and all('"error"' not in r for r in results) else 1
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--outstanding", default="1,16,256",
                        help="comma-separated numbers of proposals kept in flight")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per run")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds not measured per run")
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--append-period", type=float,
                        help="pysyncobj appendEntriesPeriod in seconds (default: its own, 0.1)")
    parser.add_argument("--workdir", help="where journals and dumps go (default: a temp dir)")
    parser.add_argument("--member", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ports", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.member is not None:
        return run_member(args)
    return run_cluster(args)


if __name__ == "__main__":
    sys.exit(main())

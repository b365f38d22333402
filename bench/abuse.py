"""Hostile and heavy clients against a live 3-node cluster, each case alone and then all together.

    python bench/abuse.py [--cases idle,slowloris,bodies,listing,bigwrites] [--scale 1.0]
                          [--hold 20] [--no-together | --together-only] [--json FILE]

The cases (at --scale 1): 20,000 idle connections, 1,000 slowloris heads (a byte a second),
200 stalled 6 MB bodies (half sent, then silence), a 200 MB listing read page by page, and
1,000 writes of 1 MiB.  Every case aims at the leader, the node with the most to lose.  While
a case runs, a well-behaved client (a process of its own) writes and reads a small key on the
leader ten times a second; the table gives its p50/p99 and errors, the largest RSS any node
reached, and the elections the case caused (sum of term increases over the nodes).  A node that exits fails
the run.  Everything runs on 127.0.0.1 in a temporary directory.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from axon.client.http import ClientError, HttpPool, kv_path   # noqa: E402
from axon.testing.cluster import Cluster, NodeHandle   # noqa: E402

MIB = 1 << 20


# ---------------------------------------------------------------------- the well-behaved client
class Probe:
    """A small put then get on the leader every 100 ms; latencies of each pair and errors.

    It runs in a process of its own, as a real client would: in this one its timing would
    include waits for the GIL behind the abusers' threads."""

    def __init__(self, node: NodeHandle) -> None:
        self.node = node
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self._proc: subprocess.Popen | None = None

    def __enter__(self) -> "Probe":
        self._proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--probe", self.node.http],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        # its connection is open before the case begins, as an established client's would be
        if self._proc.stdout.readline().strip() != "ready":
            raise SystemExit("the probe could not reach the leader")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._proc is not None
        out, _ = self._proc.communicate("stop\n", timeout=30)   # the probe stops when its stdin says so
        result = json.loads(out.strip().splitlines()[-1])
        self.latencies, self.errors = result["latencies"], result["errors"]

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def probe_main(addr: str) -> int:
    """The probe process: samples until a line arrives on stdin, then prints its results as JSON."""
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
    pool = HttpPool(timeout=5)
    latencies: list[float] = []
    errors: list[str] = []
    n = 0
    while not stop.wait(0.1):
        n += 1
        if n == 2:
            print("ready", flush=True)   # the first pair went through (or failed: it is counted)
        started = time.perf_counter()
        try:
            put = pool.request("PUT", addr, kv_path("probe"), json.dumps({"value": str(n)}).encode(), timeout=5)
            got = pool.request("GET", addr, kv_path("probe"), timeout=5)
            if put.status != 200 or got.status != 200:
                errors.append(f"HTTP {put.status}/{got.status}: {put.body[:100]!r} {got.body[:100]!r}")
                continue
        except (ClientError, OSError) as exc:
            errors.append(str(exc))
            continue
        latencies.append((time.perf_counter() - started) * 1000)
    pool.close()
    print(json.dumps({"latencies": latencies, "errors": errors}), flush=True)
    return 0


class RssWatch:
    """The largest VmRSS of each node process, sampled every 200 ms."""

    def __init__(self, nodes: list[NodeHandle]) -> None:
        self.nodes = nodes
        self.peak: dict[str, int] = {n.node_id: 0 for n in nodes}
        self.lag: dict[str, float] = {n.node_id: 0.0 for n in nodes}
        self.exited: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "RssWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        ticks = 0
        while not self._stop.wait(0.2):
            ticks += 1
            for node in self.nodes:
                if node.proc is None or node.proc.poll() is not None:
                    if node.node_id not in self.exited:
                        self.exited.append(node.node_id)
                    continue
                self.peak[node.node_id] = max(self.peak[node.node_id], rss_bytes(node.proc.pid))
                if ticks % 10 == 0:   # every 2 s: the node's own worst event-loop lag of the last 10 s
                    self.lag[node.node_id] = max(self.lag[node.node_id], loop_lag_ms(node))


def loop_lag_ms(node: NodeHandle) -> float:
    """``loop_lag_ms.recent_max`` of the node's status (0 when it cannot answer now)."""
    try:
        return float((node.client.status().get("loop_lag_ms") or {}).get("recent_max") or 0.0)
    except (ClientError, OSError, ValueError, TypeError):
        return 0.0


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


# ---------------------------------------------------------------------- the cases
def hostport(node: NodeHandle) -> tuple[str, int]:
    host, port = node.http.rsplit(":", 1)
    return host, int(port)


def open_connections(node: NodeHandle, count: int, stop: threading.Event) -> list[socket.socket]:
    """Up to ``count`` connections (refusals past the node's cap are expected and counted)."""
    socks = []
    for _ in range(count):
        if stop.is_set():
            break
        s = socket.socket()
        s.settimeout(2)
        try:
            s.connect(hostport(node))
        except OSError:
            s.close()
            continue
        s.setblocking(False)
        socks.append(s)
    return socks


def close_all(socks: list[socket.socket]) -> None:
    for s in socks:
        try:
            s.close()
        except OSError:
            pass


def case_idle(node: NodeHandle, scale: float, hold: float, stop: threading.Event) -> str:
    room = resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 3_000   # the other cases and the probe
    socks = open_connections(node, min(int(20_000 * scale), room), stop)
    stop.wait(hold)
    close_all(socks)
    return f"{len(socks)} idle connections opened"


def case_slowloris(node: NodeHandle, scale: float, hold: float, stop: threading.Event) -> str:
    socks = open_connections(node, int(1_000 * scale), stop)
    head = b"GET /kv/slow HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 4096
    cut, deadline, i = 0, time.monotonic() + hold, 0
    while time.monotonic() < deadline and not stop.is_set():
        for s in socks:
            try:
                s.send(head[i % len(head):i % len(head) + 1])
            except BlockingIOError:
                pass
            except OSError:
                cut += 1
        i += 1
        stop.wait(1.0)
    close_all(socks)
    return f"{len(socks)} slowloris heads, sends refused {cut} times (closed by the node)"


def case_bodies(node: NodeHandle, scale: float, hold: float, stop: threading.Event) -> str:
    socks = open_connections(node, int(200 * scale), stop)
    size = 6 * MIB
    head = (f"PUT /kv/stalled HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {size}\r\n\r\n").encode()
    half = b'{"value": "' + b"x" * (size // 2)
    sent = 0
    for s in socks:
        s.settimeout(2)
        try:
            s.sendall(head + half)
            sent += 1
        except OSError:
            pass
    stop.wait(hold)
    close_all(socks)
    return f"{len(socks)} connections, {sent} sent half of a 6 MB body then stalled"


def case_listing(node: NodeHandle, scale: float, hold: float, stop: threading.Event) -> str:
    pool = HttpPool(timeout=60)
    total, pages, after = 0, 0, None
    deadline = time.monotonic() + max(hold, 60)
    try:
        while time.monotonic() < deadline and not stop.is_set():
            query = "prefix=big/&limit=1000" + (f"&after={after}" if after else "")
            resp = pool.request("GET", node.http, "/kv?" + query, timeout=60)
            if resp.status != 200:
                return f"listing answered HTTP {resp.status}"
            page = resp.json()
            total += len(resp.body)
            pages += 1
            after = page["next"]
            if after is None:
                break
    finally:
        pool.close()
    return f"listed {total / MIB:.0f} MiB in {pages} pages"


def case_bigwrites(node: NodeHandle, scale: float, hold: float, stop: threading.Event) -> str:
    count = int(1_000 * scale)
    body = json.dumps({"value": "v" * (MIB - 32)}).encode()
    done, failed = [0], [0]
    refusals: collections.Counter = collections.Counter()   # status (0: no answer) -> count
    lock = threading.Lock()
    numbers = iter(range(count))

    def writer() -> None:
        pool = HttpPool(timeout=30)
        try:
            while not stop.is_set():
                with lock:
                    n = next(numbers, None)
                if n is None:
                    return
                try:
                    status = pool.request("PUT", node.http, kv_path(f"bulk/{n:05d}"), body, timeout=30).status
                except (ClientError, OSError):
                    status = 0
                with lock:
                    (done if status == 200 else failed)[0] += 1
                    if status != 200:
                        refusals[status] += 1
        finally:
            pool.close()

    threads = [threading.Thread(target=writer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    why = ", ".join(f"{n} x {status or 'no answer'}" for status, n in sorted(refusals.items()))
    return f"{done[0]} writes of 1 MiB acknowledged, {failed[0]} refused or failed" + (f" ({why})" if why else "")


CASES: dict[str, Callable[[NodeHandle, float, float, threading.Event], str]] = {
    "idle": case_idle, "slowloris": case_slowloris, "bodies": case_bodies,
    "listing": case_listing, "bigwrites": case_bigwrites,
}


# ---------------------------------------------------------------------- running
@dataclass
class Outcome:
    case: str
    detail: list[str]
    seconds: float
    peak_rss_mb: dict[str, float]
    loop_lag_ms: dict[str, float]
    elections: int
    probe_p50_ms: float
    probe_p99_ms: float
    probe_ops: int
    probe_errors: int
    exited: list[str] = field(default_factory=list)
    first_errors: list[str] = field(default_factory=list)


def terms(cluster: Cluster) -> dict[str, int]:
    return {n.node_id: n.status()["term"] for n in cluster.nodes}


def run_case(cluster: Cluster, names: list[str], scale: float, hold: float) -> Outcome:
    leader = cluster.leader()
    before = terms(cluster)
    stop = threading.Event()
    details: list[str] = []
    started = time.monotonic()
    with RssWatch(cluster.nodes) as rss, Probe(leader) as probe:
        threads = [threading.Thread(target=lambda fn=CASES[name]: details.append(fn(leader, scale, hold, stop)))
                   for name in names]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        time.sleep(1.0)   # the probe sees the node after the abuse, too
    seconds = time.monotonic() - started
    cluster.leader(20)
    after = terms(cluster)
    return Outcome("+".join(names), details, round(seconds, 1),
                   {k: round(v / MIB, 1) for k, v in rss.peak.items()}, dict(rss.lag),
                   sum(after[k] - before[k] for k in before), round(probe.percentile(0.5), 1),
                   round(probe.percentile(0.99), 1), len(probe.latencies), len(probe.errors), rss.exited,
                   sorted(set(probe.errors))[:3])


def prefill_listing(node: NodeHandle, scale: float) -> None:
    """200 values of 1 MiB under big/ (so the listing case has 200 MB to read)."""
    pool = HttpPool(timeout=30)
    body = json.dumps({"value": "b" * (MIB - 32)}).encode()
    try:
        for i in range(int(200 * scale)):
            status = pool.request("PUT", node.http, kv_path(f"big/{i:05d}"), body, timeout=30).status
            if status != 200:
                raise SystemExit(f"prefill answered HTTP {status}")
    finally:
        pool.close()


def table(outcomes: list[Outcome]) -> str:
    lines = ["| case | peak RSS per node (MB) | worst loop lag (ms) | elections | probe p50 | probe p99 "
             "| probe errors | what happened |", "|---|---|---|---:|---:|---:|---:|---|"]
    for o in outcomes:
        rss = ", ".join(f"{k} {v:.0f}" for k, v in o.peak_rss_mb.items())
        lag = ", ".join(f"{v:.0f}" for v in o.loop_lag_ms.values())
        lines.append(f"| {o.case} | {rss} | {lag} | {o.elections} | {o.probe_p50_ms:.1f} ms | {o.probe_p99_ms:.1f} ms "
                     f"| {o.probe_errors}/{o.probe_ops + o.probe_errors} | {'; '.join(o.detail)} |")
    return "\n".join(lines)


def raise_fd_limit(wanted: int) -> None:
    """Room for the idle connections and everything else this process opens (root may raise the
    hard limit too; otherwise the idle case opens as many as the hard limit allows)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(hard, wanted)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main() -> int:
    if sys.argv[1:2] == ["--probe"]:
        return probe_main(sys.argv[2])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every case's size")
    ap.add_argument("--hold", type=float, default=20.0, help="seconds a case holds its connections")
    which = ap.add_mutually_exclusive_group()
    which.add_argument("--no-together", action="store_true", help="skip the all-together run")
    which.add_argument("--together-only", action="store_true", help="only the all-together run")
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()
    names = [c for c in args.cases.split(",") if c]
    unknown = [c for c in names if c not in CASES]
    if unknown:
        print(f"error: unknown case(s) {', '.join(unknown)}; known: {', '.join(CASES)}", file=sys.stderr)
        return 2
    if args.together_only and len(names) < 2:
        print("error: --together-only needs two cases or more", file=sys.stderr)
        return 2
    raise_fd_limit(int(25_000 * max(args.scale, 1.0)) + 1_000)
    with tempfile.TemporaryDirectory(prefix="axon-abuse-") as tmp:
        cluster = Cluster(tmp, 3)
        try:
            if "listing" in names:
                prefill_listing(cluster.leader(), args.scale)
            outcomes = []
            alone = [] if args.together_only else [[n] for n in names]
            runs = alone + ([] if args.no_together or len(names) < 2 else [names])
            for run in runs:
                outcome = run_case(cluster, run, args.scale, args.hold)
                outcomes.append(outcome)
                print(json.dumps(asdict(outcome)), file=sys.stderr, flush=True)
                if outcome.exited:
                    print(f"error: node(s) {', '.join(outcome.exited)} exited; logs in {tmp}", file=sys.stderr)
                    break
            print(table(outcomes))
            if args.json_out:
                with open(args.json_out, "w") as f:
                    json.dump([asdict(o) for o in outcomes], f, indent=1)
            return 0 if all(not o.exited for o in outcomes) else 1
        finally:
            cluster.close()


if __name__ == "__main__":
    sys.exit(main())

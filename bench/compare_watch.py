"""Watches and transactions, Axon and etcd 3.4 side by side on loopback (3 nodes each, fsync on).

    python bench/compare_watch.py [--watchers 1,100,1000] [--duration 10] [--rounds 1] [--json FILE]

Needs `etcd` and `wrk` on PATH (as bench/compare_etcd.py).  Rows:

* watch latency p50/p99 with 1, 100 and 1,000 watchers: a writer puts a key under the watched
  prefix every 50 ms with its send time (this process's monotonic clock) as the value; every
  watcher notes when the change arrives.  Axon watchers read ``GET /watch?prefix=`` (SSE), etcd
  watchers the gateway's ``POST /v3/watch`` stream; both over HTTP/1.0 so that no chunk framing
  sits between the event and the clock.  Watchers connect to the followers (Axon serves a
  watch from any node; etcd too).
* events/s to 100 watchers: 8 writers put as fast as they can; events delivered per second,
  summed over the watchers.
* txn/s at 64 connections (wrk): a compare-and-swap over two keys, ``if a == "v" then put a, b``,
  always true, so every transaction writes two keys.

All watchers are read by one thread (selectors), which parses only what it needs; with 1,000
watchers the reader's own CPU is part of the latency, the same for both systems.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import re
import selectors
import socket
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from compare_etcd import CompareError, EtcdCluster, tools_ready, run_wrk   # noqa: E402
from axon.client.http import HttpPool, kv_path   # noqa: E402
from axon.testing.cluster import Cluster   # noqa: E402

PREFIX = "wb/"
_AXON_VALUE = re.compile(rb'"value": "(\d+)"')
_ETCD_VALUE = re.compile(rb'"value":"([A-Za-z0-9+/=]+)"')


# ---------------------------------------------------------------------- the systems
class Axon:
    name = "axon"

    def __init__(self, base: str) -> None:
        os.makedirs(os.path.join(base, "axon"))
        self.cluster = Cluster(os.path.join(base, "axon"), 3)
        self.pool = HttpPool(timeout=10)

    def leader(self) -> str:
        return self.cluster.leader().http

    def followers(self) -> list[str]:
        leader = self.cluster.leader()
        return [n.http for n in self.cluster.nodes if n is not leader]

    def put(self, addr: str, key: str, value: str) -> None:
        resp = self.pool.request("PUT", addr, kv_path(key), json.dumps({"value": value}).encode())
        if resp.status != 200:
            raise CompareError(f"axon put answered HTTP {resp.status}")

    def watch_request(self, addr: str) -> bytes:
        return f"GET /watch?prefix={PREFIX} HTTP/1.0\r\nHost: {addr}\r\n\r\n".encode()

    def values(self, data: bytes) -> list[int]:
        return [int(v) for v in _AXON_VALUE.findall(data)]

    txn_script, txn_env = "axon_txn.lua", {}

    def close(self) -> None:
        self.cluster.close()
        self.pool.close()


class Etcd:
    name = "etcd"

    def __init__(self, base: str) -> None:
        path = os.path.join(base, "etcd")
        os.makedirs(path)
        self.cluster = EtcdCluster(path)
        self.cluster.start_all()
        self.pool = HttpPool(timeout=10)

    def leader(self) -> str:
        return self.cluster.client[self.cluster.leader()]

    def followers(self) -> list[str]:
        leader = self.cluster.leader()
        return [self.cluster.client[n] for n in self.cluster.names if n != leader]

    def put(self, addr: str, key: str, value: str) -> None:
        body = json.dumps({"key": _b64(key), "value": _b64(value)}).encode()
        resp = self.pool.request("POST", addr, "/v3/kv/put", body)
        if resp.status != 200:
            raise CompareError(f"etcd put answered HTTP {resp.status}")

    def watch_request(self, addr: str) -> bytes:
        end = PREFIX[:-1] + chr(ord(PREFIX[-1]) + 1)
        body = json.dumps({"create_request": {"key": _b64(PREFIX), "range_end": _b64(end)}}).encode()
        return (f"POST /v3/watch HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode() + body

    def values(self, data: bytes) -> list[int]:
        return [int(base64.b64decode(v)) for v in _ETCD_VALUE.findall(data)]

    txn_script, txn_env = "etcd_kv.lua", {"BENCH_OP": "txn"}

    def close(self) -> None:
        self.cluster.close()
        self.pool.close()


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# ---------------------------------------------------------------------- watchers
@dataclass
class Watchers:
    """``count`` watch streams on ``addrs`` (round robin), read by one thread."""
    system: object
    addrs: list[str]
    count: int
    latencies: list[float] = field(default_factory=list)
    events: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> "Watchers":
        self.sel = selectors.DefaultSelector()
        self.socks = []
        for i in range(self.count):
            addr = self.addrs[i % len(self.addrs)]
            host, port = addr.rsplit(":", 1)
            sock = socket.create_connection((host, int(port)), timeout=10)
            sock.sendall(self.system.watch_request(addr))
            sock.setblocking(False)
            self.sel.register(sock, selectors.EVENT_READ, [b"", False])   # [buffer, head seen]
            self.socks.append(sock)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, _ in self.sel.select(0.2):
                try:
                    data = key.fileobj.recv(1 << 16)
                except BlockingIOError:
                    continue
                if not data:
                    self.sel.unregister(key.fileobj)
                    continue
                now = time.perf_counter_ns()
                state = key.data
                buf = state[0] + data
                cut = buf.rfind(b"\n")
                if cut < 0:
                    state[0] = buf
                    continue
                state[0] = buf[cut + 1:]
                for sent in self.system.values(buf[:cut + 1]):
                    self.latencies.append((now - sent) / 1e6)
                    self.events += 1

    def wait_ready(self, put, timeout: float = 30.0) -> None:
        """Until every watcher has seen a change (so all streams are open)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.events = 0
            put(f"{PREFIX}warmup", str(time.perf_counter_ns()))
            time.sleep(0.3)
            if self.events >= self.count:
                self.latencies.clear()
                self.events = 0
                return
        raise CompareError(f"{self.system.name}: only {self.events} of {self.count} watchers saw a change")

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.thread.join()
        for sock in self.socks:
            sock.close()


def latency_row(system, watchers: int, duration: float) -> dict:
    leader = system.leader()
    with Watchers(system, system.followers(), watchers) as w:
        w.wait_ready(lambda k, v: system.put(leader, k, v))
        stop = time.monotonic() + duration
        n = 0
        while time.monotonic() < stop:
            system.put(leader, f"{PREFIX}{n % 100}", str(time.perf_counter_ns()))
            n += 1
            time.sleep(0.05)
        time.sleep(1.0)   # the last events in flight
        lat = sorted(w.latencies)
        expected = n * watchers
    if not lat:
        raise CompareError(f"{system.name}: no event arrived")
    return {"p50_ms": lat[len(lat) // 2], "p99_ms": lat[min(len(lat) - 1, int(0.99 * len(lat)))],
            "delivered": len(lat) / expected}


def throughput_row(system, watchers: int, duration: float, writers: int = 8) -> dict:
    leader = system.leader()
    with Watchers(system, system.followers(), watchers) as w:
        w.wait_ready(lambda k, v: system.put(leader, k, v))
        stop = time.monotonic() + duration
        counter = iter(range(10 ** 9))

        def write() -> None:
            while time.monotonic() < stop:
                system.put(leader, f"{PREFIX}{next(counter) % 1000}", str(time.perf_counter_ns()))
        threads = [threading.Thread(target=write) for _ in range(writers)]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        time.sleep(1.0)
        return {"events_per_s": w.events / (time.monotonic() - started)}


def txn_row(system, duration: float) -> dict:
    res = run_wrk("http://" + system.leader(), system.txn_script, 64, duration, system.txn_env)
    if res.non_2xx or res.socket_errors:
        raise CompareError(f"{system.name}: txn run had {res.non_2xx} non-2xx and {res.socket_errors} errors")
    return {"txn_per_s": res.requests_per_s, "p50_ms": res.p50_ms, "p99_ms": res.p99_ms}


# ---------------------------------------------------------------------- running
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--watchers", default="1,100,1000")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()
    if not tools_ready():
        return 1
    counts = [int(c) for c in args.watchers.split(",") if c]
    raise_fd_limit(4 * max(counts) + 1000)
    results: dict[str, dict[str, list]] = {}
    with tempfile.TemporaryDirectory(prefix="axon-watch-bench-") as tmp:
        systems = {}
        try:
            systems = {"axon": Axon(tmp), "etcd": Etcd(tmp)}
            for rnd in range(args.rounds):
                order = ["axon", "etcd"] if rnd % 2 == 0 else ["etcd", "axon"]
                for name in order:
                    system = systems[name]
                    for count in counts:
                        record(results, f"latency @{count}", name, latency_row(system, count, args.duration))
                    record(results, "events/s @100", name, throughput_row(system, 100, args.duration))
                    record(results, "txn/s @64", name, txn_row(system, args.duration))
        except CompareError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        finally:
            for system in systems.values():
                system.close()
    return report(results, args.json_out)


def report(results: dict, json_out: str | None) -> int:
    """Print the table (and write every figure to json_out if given); the exit status."""
    print(table(results))
    if json_out:
        with open(json_out, "w") as f:
            json.dump(results, f, indent=1)
    return 0


def record(results: dict, row: str, name: str, figures: dict) -> None:
    results.setdefault(row, {}).setdefault(name, []).append(figures)
    print(f"  {row:16s} {name:5s} " + " ".join(f"{k} {v:.2f}" for k, v in figures.items()),
          file=sys.stderr, flush=True)


def table(results: dict) -> str:
    lines = ["| row | figure | axon | etcd | axon/etcd |", "|---|---|---:|---:|---:|"]
    for row, sides in results.items():
        for fig in sides["axon"][0]:
            a = statistics.median(r[fig] for r in sides["axon"])
            e = statistics.median(r[fig] for r in sides["etcd"])
            lines.append(f"| {row} | {fig} | {a:,.2f} | {e:,.2f} | {a / e if e else float('inf'):.2f} |")
    return "\n".join(lines)


def raise_fd_limit(wanted: int) -> None:
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


if __name__ == "__main__":
    sys.exit(main())

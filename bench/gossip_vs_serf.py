"""Benchmark Axon gossip against HashiCorp Serf on 127.0.0.1.

For N agents of each system (same LAN timing profile) it measures, over several
repetitions: (a) the time from SIGKILL of a member until every other member marks it
failed/dead, and (b) the time from a new agent's join until every member sees it
alive.  Each agent's view is polled over a persistent local connection (Serf's
msgpack RPC, the same data ``serf members`` prints; Axon's gossip_node status line
protocol), by one sweeping thread per system, so both are measured the same way.
Prints medians and Axon/Serf ratios.  Every process it starts is killed on exit.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

import msgpack

HERE = os.path.dirname(os.path.abspath(__file__))
HOST = "127.0.0.1"


def free_port() -> int:
    """A port free for both TCP and UDP right now."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((HOST, 0))
            port = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((HOST, port))
                except OSError:
                    continue
            return port


# ---------------------------------------------------------------- status clients

class SerfRPC:
    """Minimal Serf RPC client (msgpack over TCP): handshake, members, join."""

    def __init__(self, addr: tuple[str, int], timeout: float = 2.0) -> None:
        self._sock = socket.create_connection(addr, timeout=timeout)
        self._unpacker = msgpack.Unpacker(raw=False)
        self._seq = 0
        self._call("handshake", {"Version": 1}, has_body=False)

    def _next(self):
        while True:
            try:
                return next(self._unpacker)
            except StopIteration:
                data = self._sock.recv(65536)
                if not data:
                    raise ConnectionError("serf rpc closed")
                self._unpacker.feed(data)

    def _call(self, command: str, body: dict | None = None, has_body: bool = True):
        self._seq += 1
        payload = msgpack.packb({"Command": command, "Seq": self._seq})
        if body is not None:
            payload += msgpack.packb(body)
        self._sock.sendall(payload)
        header = self._next()
        if header.get("Error"):
            raise RuntimeError(f"serf {command}: {header['Error']}")
        return self._next() if has_body else None

    def statuses(self) -> dict[str, str]:
        return {m["Name"]: m["Status"] for m in self._call("members")["Members"]}

    def join(self, addr: str) -> int:
        return self._call("join", {"Existing": [addr], "Replay": False})["Num"]

    def close(self) -> None:
        self._sock.close()


class AxonStatus:
    """Client of bench/gossip_node.py's status line protocol."""

    def __init__(self, addr: tuple[str, int], timeout: float = 2.0) -> None:
        self._sock = socket.create_connection(addr, timeout=timeout)
        self._reader = self._sock.makefile("rb")

    def _call(self, line: str):
        self._sock.sendall(line.encode() + b"\n")
        reply = self._reader.readline()
        if not reply:
            raise ConnectionError("status connection closed")
        return json.loads(reply)

    def statuses(self) -> dict[str, str]:
        return {m["node_id"]: m["status"] for m in self._call("members")}

    def join(self, addr: str) -> int:
        return self._call(f"join {addr}")["joined"]

    def close(self) -> None:
        self._sock.close()


# ---------------------------------------------------------------- clusters

@dataclass
class Node:
    name: str
    gossip: str
    status_addr: tuple[str, int]
    proc: subprocess.Popen
    client: object = None


@dataclass
class Cluster:
    system: str
    workdir: str
    nodes: dict[str, Node] = field(default_factory=dict)
    counter: int = 0
    failed_word: str = "failed"

    def spawn(self, seed: str | None) -> Node:
        name = f"{self.system}{self.counter}"
        self.counter += 1
        gossip_port, status_port = free_port(), free_port()
        gossip = f"{HOST}:{gossip_port}"
        log = open(os.path.join(self.workdir, f"{name}.log"), "wb")
        if self.system == "serf":
            cmd = ["serf", "agent", f"-node={name}", f"-bind={gossip}", f"-rpc-addr={HOST}:{status_port}",
                   "-profile=lan", "-log-level=warn"]
            if seed:
                cmd.append(f"-join={seed}")
        else:
            cmd = [sys.executable, os.path.join(HERE, "gossip_node.py"), f"--name={name}", f"--bind={gossip}",
                   f"--status={HOST}:{status_port}", "--profile=lan"]
            if seed:
                cmd.append(f"--seed={seed}")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        node = Node(name, gossip, (HOST, status_port), proc)
        self.nodes[name] = node
        return node

    def connect(self, node: Node, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                node.client = (SerfRPC if self.system == "serf" else AxonStatus)(node.status_addr)
                return
            except OSError:
                if node.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{node.name} did not come up (see {self.workdir})")
                time.sleep(0.05)

    def live(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.proc.poll() is None]

    def kill(self, node: Node) -> None:
        if node.client is not None:
            node.client.close()
            node.client = None
        if node.proc.poll() is None:
            os.killpg(node.proc.pid, signal.SIGKILL)
        node.proc.wait()

    def shutdown(self) -> None:
        for node in self.nodes.values():
            try:
                self.kill(node)
            except (OSError, ProcessLookupError):
                pass


def wait_all(observers: list[Node], target: str, wanted: set[str], timeout: float, start: float) -> float | None:
    """Sweep every observer's view until all report ``target`` in ``wanted``; seconds since ``start``."""
    pending = {n.name: n for n in observers}
    deadline = start + timeout
    last = None
    while pending:
        if time.monotonic() > deadline:
            return None
        for name, node in list(pending.items()):
            if node.client.statuses().get(target) in wanted:
                last = time.monotonic() - start
                del pending[name]
        time.sleep(0.01)
    return last


def form_cluster(system: str, n: int, workdir: str, timeout: float) -> Cluster:
    cluster = Cluster(system, workdir, failed_word="failed" if system == "serf" else "dead")
    seed = cluster.spawn(None)
    cluster.connect(seed)
    for _ in range(n - 1):
        cluster.spawn(seed.gossip)
    for node in cluster.nodes.values():
        cluster.connect(node)
    names = set(cluster.nodes)
    deadline = time.monotonic() + timeout
    while not all({k for k, v in node.client.statuses().items() if v == "alive"} == names
                  for node in cluster.nodes.values()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{system} cluster of {n} did not converge")
        time.sleep(0.1)
    return cluster


def run_system(system: str, n: int, reps: int, timeout: float) -> tuple[list[float | None], list[float | None]]:
    workdir = tempfile.mkdtemp(prefix=f"bench-{system}-")
    cluster = form_cluster(system, n, workdir, timeout)
    fail_times, join_times = [], []
    try:
        for rep in range(reps):
            time.sleep(2.0)   # let the previous round's gossip settle
            live = cluster.live()
            seed = live[0]
            victim = live[1 + rep % (len(live) - 1)]
            start = time.monotonic()
            cluster.kill(victim)
            fail_times.append(wait_all([x for x in cluster.live()], victim.name, {cluster.failed_word},
                                       timeout, start))
            newcomer = cluster.spawn(None)
            cluster.connect(newcomer)
            start = time.monotonic()
            if newcomer.client.join(seed.gossip) < 1:
                raise RuntimeError(f"{newcomer.name} could not join")
            join_times.append(wait_all(cluster.live(), newcomer.name, {"alive"}, timeout, start))
            print(f"  {system:5} N={n:<3} rep {rep + 1}: failure seen by all in {fmt(fail_times[-1])} s, "
                  f"join seen by all in {fmt(join_times[-1])} s", flush=True)
    finally:
        cluster.shutdown()
        shutil.rmtree(workdir, ignore_errors=True)
    return fail_times, join_times


def fmt(value: float | None) -> str:
    return "timeout" if value is None else f"{value:.2f}"


def median(values: list[float | None]) -> float | None:
    done = [v for v in values if v is not None]
    return statistics.median(done) if len(done) == len(values) and done else None


def main() -> int:
    parser = argparse.ArgumentParser(description="Axon gossip vs HashiCorp Serf on 127.0.0.1")
    parser.add_argument("--sizes", default="5,20")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=90.0, help="bound for each measurement (s)")
    args = parser.parse_args()
    if shutil.which("serf") is None:
        print("serf is not on PATH (Debian: apt-get install serf)", file=sys.stderr)
        return 2
    rows = []
    for n in [int(s) for s in args.sizes.split(",")]:
        result = {system: run_system(system, n, args.reps, args.timeout) for system in ("axon", "serf")}
        for metric, index in (("failure detected by all", 0), ("join seen by all", 1)):
            axon, serf = median(result["axon"][index]), median(result["serf"][index])
            ratio = axon / serf if axon is not None and serf else None
            rows.append((n, metric, axon, serf, ratio))
    print()
    print(f"{'N':>3}  {'metric':<24} {'axon median s':>14} {'serf median s':>14} {'axon/serf':>10}")
    for n, metric, axon, serf, ratio in rows:
        print(f"{n:>3}  {metric:<24} {fmt(axon):>14} {fmt(serf):>14} "
              f"{'n/a' if ratio is None else f'{ratio:.2f}':>10}")
    worst = max((r[4] for r in rows if r[4] is not None), default=None)
    ok = worst is not None and worst <= 1.2 and all(r[4] is not None for r in rows)
    print(f"\ntarget: axon median within 1.2x of serf -> {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

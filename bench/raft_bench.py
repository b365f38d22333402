"""Raft-level benchmark: 3 member processes on loopback, fsync on, committed proposals/s and
commit latency at several numbers of outstanding proposals.

    python bench/raft_bench.py [--outstanding 1,16,256] [--duration 10] [--value-size 100]
                               [--cluster-key off|on|both] [--rounds 1]

Prints one JSON line per level: {"system":"axon","outstanding":N,"ops_per_s":..,"p50_ms":..,"p99_ms":..}
(the same shape as bench/pysyncobj_peer.py, so bench/raft_compare.py can put them side by side).
Each proposal is one Put command of --value-size bytes, replicated through the WAL (fdatasync
group commit) and applied to LevelDB on every member.  `--cluster-key on` seals every raft
frame with the cluster key (as `axon serve --cluster-key-file` does); `both` runs a cluster of
each, alternating which goes first, --rounds times, so the two are measured side by side.
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def member(args: argparse.Namespace) -> None:
    from gevent import monkey
    monkey.patch_all()
    import gevent
    from axon.keys import load_key
    from axon.kv.commands import Put, command_size, encode_commands
    from axon.raft.core import encode_config_bytes
    from axon.raft.node import RaftNode
    from axon.raft.transport import TcpTransport
    from axon.raft.types import ClusterConfig, Entry, EntryKind, HardState, Member
    from axon.raft.wal import WAL
    from axon.kv.machine import KVStateMachine
    from axon.kv.store import Store

    peers = dict(p.split("=", 1) for p in args.peers.split(","))
    wal_dir = os.path.join(args.dir, "raft")
    if not os.path.exists(wal_dir):
        config = ClusterConfig(voters={nid: Member(addr, "") for nid, addr in peers.items()})
        wal = WAL.open(wal_dir)
        wal.append([Entry(1, 1, EntryKind.CONFIG, encode_config_bytes(config))], HardState(1, None))
        wal.begin_sync().run()
        wal.close()
    machine = KVStateMachine(Store.open(os.path.join(args.dir, "store")))
    key = load_key(args.key_file) if args.key_file else None
    node = RaftNode(args.id, Member(peers[args.id], ""), wal_dir, machine,
                    lambda cb: TcpTransport(args.id, peers[args.id], cb, cluster_key=key),
                    encode_batch=encode_commands, item_size=command_size)
    node.fatal = lambda exc: os._exit(70)
    node.start()
    deadline = time.monotonic() + 20
    while node.leader_id is None and time.monotonic() < deadline:
        gevent.sleep(0.05)
    if not node.is_leader:
        gevent.sleep(10_000)   # followers serve until the orchestrator stops them
        return
    value = "x" * args.value_size
    for level in [int(x) for x in args.outstanding.split(",")]:
        latencies: list[float] = []
        stop_at = time.monotonic() + args.duration
        counter = iter(range(10**12))

        def worker() -> None:
            while time.monotonic() < stop_at:
                t0 = time.perf_counter()
                node.propose([Put(f"k{next(counter) % 10000}", value)], timeout=10)
                latencies.append(time.perf_counter() - t0)

        gevent.sleep(0.5)   # let the previous level's tail drain
        started = time.monotonic()
        gevent.joinall([gevent.spawn(worker) for _ in range(level)])
        elapsed = time.monotonic() - started
        latencies.sort()
        pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000
        print(json.dumps({"system": "axon", "cluster_key": key is not None, "outstanding": level,
                          "ops": len(latencies),
                          "ops_per_s": round(len(latencies) / elapsed, 1),
                          "p50_ms": round(pick(0.50), 3), "p99_ms": round(pick(0.99), 3)}), flush=True)
    print("DONE", flush=True)
    gevent.sleep(10_000)


def orchestrate(args: argparse.Namespace) -> int:
    """Every round runs a cluster per key mode (the order flips each round)."""
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.cluster_key]
    for rnd in range(args.rounds):
        for keyed in modes if rnd % 2 == 0 else modes[::-1]:
            if run_cluster(args, keyed) != 0:
                return 1
    return 0


def run_cluster(args: argparse.Namespace, keyed: bool) -> int:
    from axon.keys import new_key, write_key_file
    ports = free_ports(3)
    peers = ",".join(f"m{i}=127.0.0.1:{p}" for i, p in enumerate(ports, 1))
    base = tempfile.mkdtemp(prefix="axon-raft-bench-")
    key_args = []
    if keyed:
        write_key_file(os.path.join(base, "cluster.key"), new_key())
        key_args = ["--key-file", os.path.join(base, "cluster.key")]
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    procs = []
    for i in range(1, 4):
        cmd = [sys.executable, __file__, "--member", "--id", f"m{i}", "--peers", peers,
               "--dir", os.path.join(base, f"m{i}"), "--outstanding", args.outstanding,
               "--duration", str(args.duration), "--value-size", str(args.value_size)] + key_args
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                      text=True))
    levels = len(args.outstanding.split(","))
    deadline = time.monotonic() + 30 + levels * (args.duration + 5)
    try:
        # A reader thread per member: select() on a buffered pipe misses lines already buffered.
        lines: queue.Queue[str] = queue.Queue()
        for p in procs:
            threading.Thread(target=lambda out=p.stdout: [lines.put(x) for x in out], daemon=True).start()
        done = False
        while not done and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            if line.startswith("DONE"):
                done = True
            elif line.startswith("{"):
                print(line.strip(), flush=True)
        return 0 if done else 1
    finally:
        for p in procs:
            p.kill()
            p.wait()
        subprocess.run(["rm", "-rf", base])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--outstanding", default="1,16,256")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--value-size", type=int, default=100)
    ap.add_argument("--cluster-key", choices=["off", "on", "both"], default="off")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--member", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--key-file", help=argparse.SUPPRESS)
    ap.add_argument("--id", help=argparse.SUPPRESS)
    ap.add_argument("--peers", help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.member:
        member(args)
        return 0
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())

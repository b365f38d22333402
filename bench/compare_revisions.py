"""Two revisions of Axon side by side: `axon bench` against a 3-node cluster of each, in one run.

    python bench/compare_revisions.py --base REV [--new REV] [--rounds 3] [--duration 10]
                                      [--connections 64] [--workloads write,read] [--json FILE]
                                      [--value-size BYTES]
                                      [--cluster-key none|base|new|both]

`--base` is any git revision (e.g. HEAD~1 or a commit id); `--new` defaults to the working
tree.  Each revision's source is exported (`git archive`) into one temporary directory, a
3-node cluster of each runs on 127.0.0.1 with fsync on, and every round runs each workload
against both clusters' leaders in turn (the order flips each round), with the working tree's
`axon bench` as the load generator for both, so only the server side differs.  The table
gives each side's median ops/s and p50/p99 and the new/base ratio per round.
`--cluster-key new` with `--base HEAD` measures the cost of the cluster key alone: the same
code, one cluster with a key (sealed raft frames and gossip) and one without.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

from axon.client import Client
from axon.client.http import ClientError   # noqa: E402
from axon.keys import new_key, write_key_file   # noqa: E402
from axon.testing.cluster import free_ports   # noqa: E402

HOST = "127.0.0.1"


class CompareError(Exception):
    """A revision cannot be exported or its cluster did not come up."""


def export(rev: str, dest: str) -> str:
    """The source tree of ``rev`` in ``dest`` (the working tree itself when rev is None)."""
    os.makedirs(dest)
    archive = os.path.join(dest, "src.tar")
    try:
        subprocess.run(["git", "-C", REPO, "archive", "-o", archive, rev, "axon"], check=True,
                       capture_output=True)
    except subprocess.CalledProcessError as exc:
        raise CompareError(f"cannot export {rev}: {exc.stderr.decode().strip()}") from None
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    os.unlink(archive)
    return dest


@dataclass
class RevCluster:
    """Three `axon serve` processes of one source tree."""
    name: str
    src: str
    base_dir: str
    keyed: bool = False
    procs: list[subprocess.Popen] = field(default_factory=list)
    https: list[str] = field(default_factory=list)

    def key_args(self) -> list[str]:
        """A fresh cluster key file for a keyed cluster; the flags that give it to a node."""
        if not self.keyed:
            return []
        path = os.path.join(self.base_dir, "cluster.key")
        if not os.path.exists(path):
            write_key_file(path, new_key())
        return ["--cluster-key-file", path]

    def start(self) -> None:
        ports = free_ports(9)
        specs = [(f"n{i + 1}", *ports[3 * i:3 * i + 3]) for i in range(3)]
        env = dict(os.environ, PYTHONPATH=self.src)
        for i, (nid, http, raft, gossip) in enumerate(specs):
            args = [sys.executable, "-m", "axon", "serve", "--node-id", nid,
                    "--data-dir", os.path.join(self.base_dir, nid), "--http", f"{HOST}:{http}",
                    "--raft", f"{HOST}:{raft}", "--gossip", f"{HOST}:{gossip}"]
            args += ["--bootstrap"] if i == 0 else ["--join", f"{HOST}:{specs[0][1]}"]
            args += self.key_args()
            log = open(os.path.join(self.base_dir, f"{nid}.log"), "ab")
            # cwd = the exported tree: `-m axon` puts the cwd first on sys.path.
            self.procs.append(subprocess.Popen(args, cwd=self.src, env=env, stdin=subprocess.DEVNULL,
                                               stdout=log, stderr=log))
            self.https.append(f"{HOST}:{http}")
            if i == 0:
                self._wait(lambda: Client(self.https[0], timeout=1, retry_for=0).status()["state"] == "leader",
                           "the first node to lead")
        self._wait(lambda: len(Client(self.https[0], timeout=1, retry_for=0).status()["voters"]) == 3,
                   "three voters")

    def _wait(self, predicate, what: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if predicate():
                    return
            except (ClientError, KeyError, TypeError):
                pass
            if any(p.poll() is not None for p in self.procs):
                raise CompareError(f"{self.name}: a node exited; logs in {self.base_dir}")
            time.sleep(0.1)
        raise CompareError(f"{self.name}: timed out waiting for {what}; logs in {self.base_dir}")

    def close(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


def bench(cluster: RevCluster, workload: str, connections: int, duration: float, value_size: int) -> dict:
    """One `axon bench` run (the working tree's) against ``cluster``; its JSON summary, plus
    ``cpu_us_per_op``: each node's CPU time over the run (prefill included) per operation, a
    figure that a busy machine disturbs much less than ops/s."""
    cmd = [sys.executable, "-m", "axon", "bench", "--addr", cluster.https[0], "--workload", workload,
           "--connections", str(connections), "--duration", f"{duration:g}", "--value-size", str(value_size),
           "--json"]
    before = [cpu_seconds(p.pid) for p in cluster.procs]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=REPO), timeout=duration + 120)
    used = [cpu_seconds(p.pid) - b for p, b in zip(cluster.procs, before)]
    if proc.returncode != 0:
        raise CompareError(f"axon bench failed against {cluster.name}: {proc.stderr.strip()[-500:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    ops = max(1.0, result["ops_per_s"] * duration)
    result["cpu_us_per_op"] = [round(u / ops * 1e6, 1) for u in used]
    return result


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True, help="git revision to compare against")
    ap.add_argument("--new", default=None, help="git revision (default: the working tree)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--workloads", default="write,read")
    ap.add_argument("--value-size", type=int, default=100, help="bytes per written value (axon bench's)")
    ap.add_argument("--json", dest="json_out", default=None, help="write every figure here")
    ap.add_argument("--cluster-key", choices=["none", "base", "new", "both"], default="none",
                    help="which side's cluster runs with a cluster key")
    args = ap.parse_args()
    workloads = [w for w in args.workloads.split(",") if w]
    tmp = tempfile.mkdtemp(prefix="axon-revs-")
    clusters: dict[str, RevCluster] = {}
    try:
        srcs = {"base": export(args.base, os.path.join(tmp, "base-src")),
                "new": export(args.new, os.path.join(tmp, "new-src")) if args.new else REPO}
        for name, src in srcs.items():
            base_dir = os.path.join(tmp, name)
            os.makedirs(base_dir)
            clusters[name] = RevCluster(name, src, base_dir, keyed=args.cluster_key in (name, "both"))
            clusters[name].start()
        results: dict[str, dict[str, list[dict]]] = {w: {"base": [], "new": []} for w in workloads}
        for rnd in range(args.rounds):
            order = ["base", "new"] if rnd % 2 == 0 else ["new", "base"]
            for w in workloads:
                for name in order:
                    r = bench(clusters[name], w, args.connections, args.duration, args.value_size)
                    results[w][name].append(r)
                    print(f"round {rnd + 1} {w:6s} {name:4s} {r['ops_per_s']:9.0f} ops/s "
                          f"p50 {r['p50_ms']:.2f} ms p99 {r['p99_ms']:.2f} ms errors {r['errors']} "
                          f"cpu us/op {r['cpu_us_per_op']}", file=sys.stderr, flush=True)
        print(table(results, args))
        if args.json_out:
            with open(args.json_out, "w") as f:
                json.dump({"base": args.base, "new": args.new or "working tree", "results": results}, f, indent=1)
        return 0
    except CompareError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        for c in clusters.values():
            c.close()
        shutil.rmtree(tmp, ignore_errors=True)


def table(results: dict[str, dict[str, list[dict]]], args: argparse.Namespace) -> str:
    lines = [f"| workload @{args.connections} | base ops/s | new ops/s | new/base | per round | "
             "p99 base | p99 new | CPU us/op base (n1,n2,n3) | new |", "|---|---:|---:|---:|---|---:|---:|---|---|"]
    for w, sides in results.items():
        base = [r["ops_per_s"] for r in sides["base"]]
        new = [r["ops_per_s"] for r in sides["new"]]
        per_round = ", ".join(f"{n / b:.2f}" for b, n in zip(base, new))
        lines.append(f"| {w} | {statistics.median(base):,.0f} | {statistics.median(new):,.0f} | "
                     f"{statistics.median(new) / statistics.median(base):.2f} | {per_round} | "
                     f"{statistics.median(r['p99_ms'] for r in sides['base']):.1f} ms | "
                     f"{statistics.median(r['p99_ms'] for r in sides['new']):.1f} ms | "
                     f"{_cpu(sides['base'])} | {_cpu(sides['new'])} |")
    return "\n".join(lines)


def _cpu(runs: list[dict]) -> str:
    """Each node's median CPU microseconds per operation over the rounds."""
    return ", ".join(f"{statistics.median(r['cpu_us_per_op'][i] for r in runs):.0f}" for i in range(3))


if __name__ == "__main__":
    sys.exit(main())

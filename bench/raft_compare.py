"""Axon's Raft against pysyncobj 0.3.17, side by side in one run.

    python bench/raft_compare.py [--outstanding 1,16,256] [--duration 10] [--rounds 1]
                                 [--pysyncobj-python PATH]

Both run 3 member processes on 127.0.0.1 and keep N proposals outstanding from the leader.
Axon fsyncs every commit (group commit); pysyncobj never syncs its journal. The two are run
alternately, level by level. Without --pysyncobj-python a virtualenv with pysyncobj==0.3.17 is
created once under bench/.venv-pysyncobj (it is not an Axon dependency).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def pysyncobj_python(path: str | None) -> str:
    if path:
        return path
    venv = os.path.join(HERE, ".venv-pysyncobj")
    python = os.path.join(venv, "bin", "python")
    if not os.path.exists(python):
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        subprocess.run([python, "-m", "pip", "install", "-q", "pysyncobj==0.3.17"], check=True)
    return python


def run(cmd: list[str]) -> list[dict]:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    if not rows:
        raise SystemExit(f"{cmd[1]} produced no figures:\n{out.stderr[-2000:]}")
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--outstanding", default="1,16,256")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=1, help="alternate A/B this many times per level")
    ap.add_argument("--pysyncobj-python")
    args = ap.parse_args()
    peer = pysyncobj_python(args.pysyncobj_python)
    results: dict[tuple[str, int], list[dict]] = {}
    for level in args.outstanding.split(","):
        for _ in range(args.rounds):
            for system, cmd in (
                ("axon", [sys.executable, os.path.join(HERE, "raft_bench.py")]),
                ("pysyncobj", [peer, os.path.join(HERE, "pysyncobj_peer.py")]),
            ):
                for row in run(cmd + ["--outstanding", level, "--duration", str(args.duration)]):
                    results.setdefault((system, row["outstanding"]), []).append(row)
                    print(json.dumps(row), file=sys.stderr, flush=True)
    print(f"{'outstanding':>11} {'axon ops/s':>11} {'pysyncobj':>10} {'ratio':>6} "
          f"{'axon p50':>9} {'pso p50':>8} {'axon p99':>9} {'pso p99':>8}")
    for level in [int(x) for x in args.outstanding.split(",")]:
        a = results[("axon", level)]
        b = results[("pysyncobj", level)]
        med = lambda rows, k: statistics.median(r[k] for r in rows)
        print(f"{level:>11} {med(a, 'ops_per_s'):>11.0f} {med(b, 'ops_per_s'):>10.0f} "
              f"{med(a, 'ops_per_s') / med(b, 'ops_per_s'):>6.2f} {med(a, 'p50_ms'):>8.2f}ms "
              f"{med(b, 'p50_ms'):>6.1f}ms {med(a, 'p99_ms'):>8.2f}ms {med(b, 'p99_ms'):>6.1f}ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())

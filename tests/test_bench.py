"""`axon bench`: the pure statistics, option checks, and one real run against a one-node cluster."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import pytest

from axon.bench import (WORKLOADS, BenchConfig, BenchError, Recorder, format_summary, percentile,
                        pick_op, progress_line, summarize)
from axon.testing.cluster import REPO_ROOT, Cluster

sys.path.insert(0, os.path.join(REPO_ROOT, "bench"))
from compare_etcd import CompareError, parse_wrk   # noqa: E402


def test_percentile_is_nearest_rank() -> None:
    values = [float(i) for i in range(1, 101)]
    assert percentile(values, 0.50) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 0.999) == 100.0
    assert percentile([7.0], 0.5) == 7.0
    assert percentile([], 0.5) == 0.0


def test_summary_counts_errors_by_status_and_rates_only_successes() -> None:
    rec = Recorder()
    for ms in (1, 2, 3, 4):
        rec.ok(ms / 1000)
    rec.error(503)
    rec.error(503)
    rec.error(0)
    cfg = BenchConfig(addrs=("127.0.0.1:1",), workload="write", connections=2)
    s = summarize(rec, 2.0, cfg)
    assert s["ok"] == 4 and s["ops_per_s"] == 2.0
    assert s["errors"] == {"503": 2, "conn": 1}
    assert s["p50_ms"] == 2.0 and s["max_ms"] == 4.0
    assert rec.count == 7
    text = format_summary(s)
    assert "2.0 ops/s" in text and "503: 2" in text and "conn: 1" in text
    assert "ops/s" in progress_line(rec, 1.0, 0, 1.0)


def test_mixed_workload_is_about_ninety_percent_reads() -> None:
    rng = random.Random(1)
    ops = [pick_op("mixed", rng) for _ in range(10_000)]
    assert set(ops) == {"read", "write"}
    assert 0.08 < ops.count("write") / len(ops) < 0.12
    assert pick_op("stale", rng) == "stale"


def test_the_command_offers_every_workload() -> None:
    from axon.cli.bench import bench
    [workload] = [p for p in bench.params if p.name == "workload"]
    assert tuple(workload.type.choices) == WORKLOADS


@pytest.mark.parametrize("change, message", [
    ({"workload": "scan"}, "unknown workload"),
    ({"addrs": ()}, "address"),
    ({"connections": 0}, "connections"),
    ({"duration": 0}, "duration"),
    ({"keys": 0}, "key space"),
    ({"timeout": -1}, "timeout"),
])
def test_bad_options_are_refused(change: dict, message: str) -> None:
    cfg = BenchConfig(**{"addrs": ("127.0.0.1:1",), **change})
    with pytest.raises(BenchError, match=message):
        cfg.validate()


WRK_OUTPUT = """Running 4s test @ http://127.0.0.1:1
  Latency Distribution
     50%  851.00us
     75%    2.00ms
     90%    3.10ms
     99%    1.20s
  5069 requests in 4.02s, 1.28MB read
  Socket errors: connect 0, read 1, write 0, timeout 2
  Non-2xx or 3xx responses: 7
Requests/sec:   1261.69
"""


def test_wrk_output_is_parsed() -> None:
    res = parse_wrk(WRK_OUTPUT)
    assert res.requests_per_s == 1261.69
    assert res.p50_ms == pytest.approx(0.851)
    assert res.p99_ms == pytest.approx(1200.0)
    assert res.non_2xx == 7 and res.socket_errors == 3
    with pytest.raises(CompareError):
        parse_wrk("garbage")


def _bench(addr: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "axon", "bench", "--addr", addr, *args],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)


def test_bench_runs_each_workload_against_a_node(tmp_path) -> None:
    with Cluster(tmp_path, 1) as cluster:
        addr = cluster.nodes[0].http
        for workload in ("write", "read", "stale", "mixed"):
            proc = _bench(addr, "--workload", workload, "-c", "4", "-d", "0.5", "--keys", "20", "--json")
            assert proc.returncode == 0, proc.stderr
            result = json.loads(proc.stdout)
            assert result["workload"] == workload
            assert result["ok"] > 0 and result["errors"] == {}
            assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["p999_ms"]
            assert "ops/s" in proc.stderr   # the progress line
        text = _bench(addr, "-c", "2", "-d", "0.3")
        assert text.returncode == 0 and "latency p50" in text.stdout


def test_bench_against_nothing_fails_with_one_line(tmp_path) -> None:
    from axon.testing.cluster import free_ports
    proc = _bench(f"127.0.0.1:{free_ports(1)[0]}", "-d", "0.2")
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("error: cannot ask")
    assert "Traceback" not in proc.stderr

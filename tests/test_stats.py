"""The dashboard's chart samples (GET /cluster/stats), the status's version, uptime and sizes,
and `axon status` showing them."""
from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

import axon
from axon.api.errors import InvalidInput
from axon.api.overview import merge_overview
from axon.api.stats import (KEEP_SAMPLES, Reading, StatsRing, collect_stats, local_answer, merge_stats,
                            sample, since_param)
from axon.cli.cluster import duration, size
from axon.cli.main import cli
from axon.metrics import NodeMetrics
from axon.node.disk import DiskAlarm, DiskLimits, read_usage
from axon.node.stats import NodeFacts, StatsSampler
from axon.testing.cluster import Cluster

BOUNDS = (0.001, 0.002, 0.005)


def reading(at: float, writes: int = 0, reads: int = 0, commit=(0, 0, 0, 0), fsync=(0, 0, 0, 0)) -> Reading:
    return Reading(at, writes, reads, tuple(commit), tuple(fsync))


# ---------------------------------------------------------------------- pure parts
def test_a_sample_is_rates_and_p99s_over_the_interval() -> None:
    point = sample(reading(10.0, 100, 40, (5, 0, 0, 0)), reading(12.0, 300, 50, (5, 100, 0, 0)),
                   wall=1700000000.123, bounds=BOUNDS)
    assert point == {"t": 1700000000.123, "writes_per_s": 100.0, "reads_per_s": 5.0,
                     "commit_p99_ms": pytest.approx(1.99), "fsync_p99_ms": None}


def test_readings_out_of_order_are_refused() -> None:
    with pytest.raises(ValueError):
        sample(reading(5.0), reading(5.0), 0.0, BOUNDS)


def test_the_ring_keeps_the_newest_and_answers_since() -> None:
    ring = StatsRing(size=3)
    for t in range(5):
        ring.add({"t": float(t)})
    assert [s["t"] for s in ring.since()] == [2.0, 3.0, 4.0]
    assert [s["t"] for s in ring.since(3.0)] == [4.0]
    assert StatsRing()._samples.maxlen == KEEP_SAMPLES


@pytest.mark.parametrize("raw", ["x", "nan", "inf", "1e999"])
def test_a_bad_since_is_invalid_input(raw: str) -> None:
    with pytest.raises(InvalidInput):
        since_param(raw)


def test_since_absent_or_a_number() -> None:
    assert since_param(None) is None and since_param("") is None
    assert since_param("1700000000.5") == 1700000000.5


def test_merge_names_members_that_did_not_answer() -> None:
    own = local_answer("a", StatsRing(), None)
    answers = {"b": {"node_id": "b", "samples": [{"t": 1.0}]}, "c": "timed out",
               "d": {"node_id": "x", "samples": []}, "e": None}
    assert merge_stats("a", own, answers) == {"interval_s": 1, "nodes": {
        "a": {"samples": []}, "b": {"samples": [{"t": 1.0}]}, "c": {"error": "timed out"},
        "d": {"error": "no answer"}, "e": {"error": "no answer"}}}


class _Fetcher:
    """Answers as every member would, remembering what it was asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[dict, str]] = []

    def fetch(self, targets, headers=None, path="/cluster/status"):
        self.asked.append((dict(targets), path))
        return {nid: {"node_id": nid, "samples": []} for nid in targets}


def test_members_are_asked_for_their_own_samples_since_t() -> None:
    fetcher = _Fetcher()
    own = local_answer("a", StatsRing(), 1e16)
    answer = collect_stats(fetcher, "a", own, {"a": "h:1", "b": "h:2"}, 1e16)
    assert set(answer["nodes"]) == {"a", "b"}
    [(targets, path)] = fetcher.asked
    assert targets == {"b": "h:2"}            # never itself
    assert path == "/cluster/stats?local=1&since=1e%2B16"
    assert since_param("1e+16") == 1e16       # what the member decodes


def test_overview_rows_carry_version_uptime_and_sizes() -> None:
    status = {"node_id": "a", "voters": ["a", "b"], "learners": [], "term": 1, "leader": "a",
              "nodes": [{"node_id": "a", "http": "h:1", "raft": "r:1"}, {"node_id": "b", "http": "h:2", "raft": "r:2"}],
              "version": "1.2.3", "uptime_s": 12.5, "data_bytes": 2048, "wal_bytes": 1024}
    odd = {"node_id": "b", "version": 7, "uptime_s": True, "data_bytes": "big", "wal_bytes": 1.5}
    rows = {r["node_id"]: r for r in merge_overview(status, None, {"b": odd})["nodes"]}
    assert {k: rows["a"][k] for k in ("version", "uptime_s", "data_bytes", "wal_bytes")} == \
        {"version": "1.2.3", "uptime_s": 12.5, "data_bytes": 2048, "wal_bytes": 1024}
    assert {k: rows["b"][k] for k in ("version", "uptime_s", "data_bytes", "wal_bytes")} == \
        {"version": None, "uptime_s": None, "data_bytes": None, "wal_bytes": None}


def test_the_sampler_turns_counters_into_samples() -> None:
    metrics = NodeMetrics(process_metrics=False)
    now = [100.0]
    sampler = StatsSampler(metrics, clock=lambda: now[0], wall=lambda: 1000.0 + now[0])
    before = sampler.reading()
    for _ in range(10):
        metrics.http.observe("PUT", "/kv/<key:path>", 200, 0.001, forwarded=False)
        metrics.commit.observe(0.0015)
    metrics.fsync.observe(0.0004)
    now[0] += 2.0
    sampler.step(before)
    [point] = sampler.ring.since()
    assert point["t"] == 1102.0 and point["writes_per_s"] == 5.0 and point["reads_per_s"] == 0.0
    assert 1.0 < point["commit_p99_ms"] <= 1.5 and 0.3 < point["fsync_p99_ms"] <= 0.5


def test_facts_show_the_disk_alarms_last_reading(tmp_path) -> None:
    (tmp_path / "raft").mkdir()
    (tmp_path / "raft" / "wal").write_bytes(b"x" * 100)
    (tmp_path / "raftish").write_bytes(b"w" * 7)     # beside the WAL's dir, not in it
    (tmp_path / "store").write_bytes(b"y" * 50)
    alarm = DiskAlarm(DiskLimits(0, 0))
    now = [0.0]
    facts = NodeFacts(lambda: alarm.usage, clock=lambda: now[0])
    assert facts.sizes() == (0, 0)               # no reading yet
    alarm.observe(read_usage(str(tmp_path), str(tmp_path / "raft")))
    now[0] = 2.0
    assert facts() == {"version": axon.__version__, "uptime_s": 2.0, "data_bytes": 157, "wal_bytes": 100}
    (tmp_path / "raft" / "more").write_bytes(b"z" * 10)
    assert facts()["wal_bytes"] == 100          # until the next reading
    alarm.observe(read_usage(str(tmp_path), str(tmp_path / "raft")))
    assert facts()["wal_bytes"] == 110 and facts()["data_bytes"] == 167


def test_sizes_and_durations_for_people() -> None:
    assert [size(n) for n in (None, 0, 1023, 1536, 5 << 20, 3 << 30, 2 << 40)] == \
        ["?", "0 B", "1023 B", "1.5 KiB", "5.0 MiB", "3.0 GiB", "2.0 TiB"]
    assert [duration(s) for s in (None, 4.9, 65, 3720, 90000)] == ["?", "4s", "1m 5s", "1h 2m", "1d 1h"]


# ---------------------------------------------------------------------- three live nodes
@pytest.mark.slow
def test_cluster_stats_status_fields_and_axon_status(tmp_path) -> None:
    with Cluster(tmp_path, n=3) as cluster:
        leader = cluster.leader()
        follower = next(n for n in cluster.nodes if n is not leader)
        for i in range(30):
            follower.client.put(f"k{i}", "v")   # counted where they came in, not again on the leader
            follower.client.get(f"k{i}")

        def busy_sample():
            answer = follower.client.call("GET", "/cluster/stats")
            samples = answer["nodes"][follower.node_id]["samples"]
            everyone = all(entry.get("samples") for entry in answer["nodes"].values())
            busy = any(s["writes_per_s"] > 0 and s["reads_per_s"] > 0 for s in samples)
            return answer if everyone and busy else None
        cluster.wait_for(busy_sample, 15.0)
        answer = busy_sample() or follower.client.call("GET", "/cluster/stats")
        assert answer["interval_s"] == 1
        assert set(answer["nodes"]) == {n.node_id for n in cluster.nodes}
        for nid, entry in answer["nodes"].items():
            assert entry["samples"], nid
            point = entry["samples"][-1]
            assert set(point) == {"t", "writes_per_s", "reads_per_s", "commit_p99_ms", "fsync_p99_ms"}
            times = [s["t"] for s in entry["samples"]]
            assert times == sorted(times)
        leader_samples = answer["nodes"][leader.node_id]["samples"]
        cluster.wait_for(lambda: any(s["commit_p99_ms"] for s in
                                     leader.client.call("GET", "/cluster/stats?local=1")["samples"]), 5.0)
        newest = leader_samples[-1]["t"]
        later = leader.client.call("GET", f"/cluster/stats?since={newest}")
        assert all(s["t"] > newest for s in later["nodes"][leader.node_id]["samples"])
        own = leader.client.call("GET", "/cluster/stats?local=1")
        assert own["node_id"] == leader.node_id and "nodes" not in own
        bad = leader.pool.request("GET", leader.http, "/cluster/stats?since=soon", None, {}, 5.0)
        assert bad.status == 400 and "error" in bad.json()

        status = leader.client.status()
        assert status["version"] == axon.__version__
        assert status["uptime_s"] > 0 and status["wal_bytes"] > 0
        assert status["data_bytes"] >= status["wal_bytes"]
        rows = {r["node_id"]: r for r in leader.client.call("GET", "/cluster/overview")["nodes"]}
        for nid, row in rows.items():
            assert row["version"] == axon.__version__ and row["data_bytes"] > 0, nid
            assert row["wal_bytes"] > 0 and row["uptime_s"] > 0, nid

        result = CliRunner().invoke(cli, ["status", "--addr", leader.http], prog_name="axon")
        assert result.exit_code == 0, result.output
        assert f"version {axon.__version__}, up " in result.output
        assert re.search(r", data [0-9.]+ (B|KiB|MiB), WAL [0-9.]+ (B|KiB|MiB)\n", result.output)

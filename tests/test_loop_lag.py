"""Event-loop lag is measured and shown, and a big listing on the leader does not cost it its role."""
from __future__ import annotations

import threading
import time

import gevent

from axon.api.overview import merge_overview
from axon.client.http import HttpPool
from axon.node.looplag import LoopLag
from axon.testing.cluster import Cluster
from axon.testing.polling import wait_until

MiB = 1 << 20
ELECTION_TIMEOUT_MS = 500   # the shortest: 10 ticks of 50 ms (NodeConfig)


def test_a_call_holding_the_loop_shows_as_lag() -> None:
    lag = LoopLag(interval=0.01)
    runner = gevent.spawn(lag.run)
    try:
        gevent.sleep(0.05)
        time.sleep(0.2)   # blocks the hub: the monitor's timer fires late
        wait_until(lambda: lag.max >= 0.15, 2, "the stall to show")
        shown = lag.snapshot()
        assert shown["max"] >= 150 and shown["recent_max"] >= 150
        wait_until(lambda: lag.last < 0.05, 2, "a quiet loop again")
        assert lag.snapshot()["max"] == shown["max"]
    finally:
        runner.kill()


def test_recent_max_forgets_old_stalls() -> None:
    lag = LoopLag(recent=3)
    lag.record(0.4)
    for _ in range(3):
        lag.record(0.001)
    lag.record(-0.002)   # a timer that fired early
    assert lag.snapshot() == {"last": 0.0, "max": 400.0, "recent_max": 1.0}


def test_a_long_stall_is_logged_once_in_a_while(caplog) -> None:
    now = [0.0]
    lag = LoopLag(clock=lambda: now[0])
    with caplog.at_level("WARNING", logger="axon.node.looplag"):
        lag.record(0.6)
        lag.record(0.7)   # the same moment: no second line
        lag.record(0.1)   # short: none
        now[0] = 60.0
        lag.record(0.3)
    assert [r.getMessage()[:36] for r in caplog.records] == ["the event loop stalled for 600 ms; a",
                                                            "the event loop stalled for 300 ms; a"]


def test_the_overview_shows_each_members_lag() -> None:
    status = {"node_id": "n1", "voters": ["n1", "n2"], "learners": [], "term": 1, "leader": "n1",
              "loop_lag_ms": {"last": 1.5, "max": 20.0, "recent_max": 3.0},
              "nodes": [{"node_id": "n1", "http": "h1"}, {"node_id": "n2", "http": "h2"}]}
    answers = {"n2": {"node_id": "n2", "loop_lag_ms": "junk"}}
    rows = {r["node_id"]: r for r in merge_overview(status, None, answers)["nodes"]}
    assert rows["n1"]["loop_lag_ms"] == {"last": 1.5, "max": 20.0, "recent_max": 3.0}
    assert rows["n2"]["loop_lag_ms"] is None


# ---------------------------------------------------------------------- a real cluster

def _list_all(pool: HttpPool, addr: str, stop: threading.Event, pages: list[int]) -> None:
    """Walk every page of big/ again and again until ``stop``."""
    while not stop.is_set():
        after = ""
        while True:
            answer = pool.request("GET", addr, f"/kv?prefix=big/&limit=1000&after={after}", timeout=30)
            assert answer.status == 200, answer.body[:200]
            page = answer.json()
            pages.append(len(answer.body))
            if page["next"] is None:
                break
            after = page["next"]


def test_big_listings_on_the_leader_keep_its_role_and_the_loop_quick(tmp_path) -> None:
    with Cluster(tmp_path, n=3) as cluster:
        leader = cluster.leader()
        value = "v" * (MiB - 64)
        for i in range(24):
            leader.client.put(f"big/{i:02d}", value)
        cluster.wait_converged(timeout=60)
        term = leader.status()["term"]
        stop, pages, errors = threading.Event(), [], []

        def reader() -> None:
            try:
                _list_all(HttpPool(timeout=30), leader.http, stop, pages)
            except BaseException as exc:   # reported below, in the test's thread
                errors.append(exc)

        readers = [threading.Thread(target=reader) for _ in range(3)]
        for thread in readers:
            thread.start()
        lags = []
        try:
            deadline = time.monotonic() + 6
            while time.monotonic() < deadline and not errors:
                lags.append(leader.status(timeout=5)["loop_lag_ms"]["recent_max"])
                time.sleep(0.2)
        finally:
            stop.set()
            for thread in readers:
                thread.join(60)
        assert not errors, errors
        statuses = [node.status() for node in cluster.nodes]
        print(f"{len(pages)} pages of up to {max(pages) / MiB:.1f} MiB; leader's loop lag "
              f"recent max {max(lags)} ms, max since start {leader.status()['loop_lag_ms']['max']} ms")
        assert len(pages) >= 3 * 6
        assert {st["term"] for st in statuses} == {term}, "an election happened during the listings"
        assert {st["leader"] for st in statuses} == {leader.node_id}
        assert max(lags) < ELECTION_TIMEOUT_MS

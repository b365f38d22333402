"""GET /metrics: the registry's pieces in isolation, then a live node scraped (real process)."""
from __future__ import annotations

import re
import socket

import pytest

from axon.api.auth import Decision
from axon.metrics import (HTTP_BUCKETS, LATENCY_BUCKETS, Histogram, HttpMetrics, NodeMetrics,
                          raft_families, quantile)
from axon.testing.cluster import Cluster, wait_for
from axon.web.middleware import chain, http_metrics
from axon.web.routes import Route, Router
from axon.web.wire import Request, Response


def request(method: str, path: str, headers: dict | None = None) -> Request:
    return Request(method, path, "", "HTTP/1.1", headers or {}, b"", True)


# ---------------------------------------------------------------------- pure parts
def test_histogram_buckets_are_prometheus_le_buckets() -> None:
    hist = Histogram((0.001, 0.01))
    for value in (0.0005, 0.001, 0.005, 2.0):
        hist.observe(value)
    assert hist.counts == [2, 1, 1]          # a value equal to a bound falls in that bound's bucket
    assert hist.cumulative() == [("0.001", 2), ("0.01", 3), ("+Inf", 4)]
    assert hist.count == 4 and hist.sum == pytest.approx(2.0065)


def test_quantile_interpolates_inside_its_bucket() -> None:
    bounds = (0.001, 0.002, 0.004)
    assert quantile(bounds, [0, 0, 0, 0], 0.99) is None
    assert quantile(bounds, [100, 0, 0, 0], 0.5) == pytest.approx(0.0005)
    assert quantile(bounds, [50, 50, 0, 0], 0.99) == pytest.approx(0.001 + 0.001 * 49 / 50)
    assert quantile(bounds, [0, 0, 0, 3], 0.99) == 0.004   # past the last bound: that bound


def test_http_metrics_count_by_route_and_status_and_reads_writes_once() -> None:
    http = HttpMetrics()
    http.observe("PUT", "/kv/<key:path>", 200, 0.002, forwarded=False)
    http.observe("PUT", "/kv/<key:path>", 200, 0.002, forwarded=True)   # counted where it came in
    http.observe("PUT", "/kv/<key:path>", 412, 0.001, forwarded=False)
    http.observe("GET", "/kv", 200, 0.001, forwarded=False)
    http.observe("GET", "/kv/<key:path>", 404, 0.001, forwarded=False)
    assert (http.writes, http.reads) == (1, 1)
    assert {key: hist.count for key, hist in http.series.items()} == {
        ("PUT", "/kv/<key:path>", 200): 2, ("PUT", "/kv/<key:path>", 412): 1,
        ("GET", "/kv", 200): 1, ("GET", "/kv/<key:path>", 404): 1}


def test_the_middleware_labels_by_route_pattern_never_by_path() -> None:
    metrics = NodeMetrics(process_metrics=False)
    ok = lambda req, *args: Response(200, [], b"{}")   # noqa: E731
    router = Router([Route("GET", "/kv/<key:path>", ok, Decision.READ_KEY),
                     Route("GET", "/cluster/nodes/<node_id>", ok, Decision.ANY_TOKEN),
                     Route("GET", "/health", ok, Decision.OPEN)],
                    fallback=lambda req: Response(404, [], b""))
    handler = chain([http_metrics(metrics.http)], router)
    for path in ("/kv/a", "/kv/b/c", "/cluster/nodes/n1", "/health", "/assets/x.js", "/nope"):
        handler(request("GET", path))
    labels = sorted(route for _, route, _ in metrics.http.series)
    assert labels == ["/cluster/nodes/<node_id>", "/health", "/kv/<key:path>", "other"]
    text = metrics.render().decode()
    assert 'axon_http_requests_total{method="GET",route="/kv/<key:path>",status="200"} 2.0' in text
    assert 'axon_http_requests_total{method="GET",route="other",status="404"} 2.0' in text
    assert metrics.http.reads == 2


def test_raft_families_name_the_role_and_counters() -> None:
    status = {"state": "leader", "term": 3, "commit_index": 10, "applied_index": 9, "last_index": 10,
              "snapshot_index": 0, "log_bytes": 100, "voters": ["a", "b"], "leader": "a"}
    families = {f.name: f for f in raft_families(status, {"leader_changes": 2})}
    roles = {s.labels["role"]: s.value for s in families["axon_raft_role"].samples}
    assert roles == {"leader": 1.0, "follower": 0.0, "candidate": 0.0, "learner": 0.0}
    assert families["axon_raft_term"].samples[0].value == 3
    assert families["axon_raft_leader_changes"].samples[0].value == 2
    assert families["axon_raft_proposals"].samples[0].value == 0


def test_every_bucket_list_is_increasing() -> None:
    for bounds in (LATENCY_BUCKETS, HTTP_BUCKETS):
        assert list(bounds) == sorted(set(bounds))


# ---------------------------------------------------------------------- a live node
def scrape(node, token: str | None = None) -> tuple[int, dict, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    resp = node.pool.request("GET", node.http, "/metrics", None, headers, 5.0)
    return resp.status, resp.headers, resp.body.decode()


def value(text: str, name: str, **labels: str) -> float:
    """One sample's value from the text format (labels matched as given, in any order)."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)", line)
        if m is None or m.group(1) != name:
            continue
        found = dict(re.findall(r'([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(m.group(3))
    raise AssertionError(f"no sample {name} {labels}")


FAMILIES = ("axon_raft_term", "axon_raft_role", "axon_raft_commit_index", "axon_raft_applied_index",
            "axon_raft_leader_changes_total", "axon_raft_proposals_total", "axon_http_requests_total",
            "axon_http_request_seconds", "axon_wal_fsync_seconds", "axon_commit_seconds",
            "axon_gossip_members", "axon_event_loop_lag_seconds", "axon_http_connections",
            "axon_data_bytes", "axon_wal_bytes", "axon_watchers", "axon_build_info",
            "axon_process_resident_memory_bytes", "axon_raft_snapshots_installed_total")


@pytest.mark.slow
def test_a_live_node_shows_every_family_and_they_move(tmp_path) -> None:
    with Cluster(tmp_path, n=1) as cluster:
        node = cluster.nodes[0]
        status, headers, before = scrape(node)
        assert status == 200
        assert headers["content-type"].startswith("text/plain; version=0.0.4")
        for family in FAMILIES:
            assert f"\n{family}" in before or f"# TYPE {family.removesuffix('_total')} " in before, family
        assert value(before, "axon_raft_role", role="leader") == 1.0
        assert value(before, "axon_gossip_members", state="alive") == 1.0
        for i in range(20):
            node.client.put(f"k{i}", "v")
        node.client.get("k1")
        _, _, after = scrape(node)
        assert value(after, "axon_raft_commit_index") >= value(before, "axon_raft_commit_index") + 20
        assert value(after, "axon_raft_proposals_total") >= 20
        route = {"method": "PUT", "route": "/kv/<key:path>", "status": "200"}
        assert value(after, "axon_http_requests_total", **route) == 20
        assert value(after, "axon_http_request_seconds_count", **route) == 20
        assert value(after, "axon_http_requests_total", method="GET", route="/metrics", status="200") >= 1
        assert value(after, "axon_commit_seconds_count") >= 20
        assert value(after, "axon_wal_fsync_seconds_count") > value(before, "axon_wal_fsync_seconds_count")
        assert value(after, "axon_http_connections") >= 1
        assert "/kv/k1" not in after   # a label is a route pattern, never a raw path
        assert value(after, "axon_watchers") == 0
        host, port = node.http.rsplit(":", 1)
        watch = socket.create_connection((host, int(port)), timeout=5)
        try:
            watch.sendall(f"GET /watch?prefix=k HTTP/1.1\r\nHost: {node.http}\r\n\r\n".encode())
            assert watch.recv(64).startswith(b"HTTP/1.1 200")
            wait_for(lambda: value(scrape(node)[2], "axon_watchers") == 1, 5, message="the watch counted")
        finally:
            watch.close()
        wait_for(lambda: value(scrape(node)[2], "axon_watchers") == 0, 5, message="the closed watch gone")


@pytest.mark.slow
def test_metrics_with_auth_on_need_a_token(tmp_path) -> None:
    with Cluster(tmp_path, 0, start=False) as cluster:
        node = cluster.new_node(extra_args=["--auth"]).start(bootstrap=True)
        root = cluster.wait_for(node.harness_token, 15.0, message="the root token")   # <data-dir>/root.token
        cluster.wait_for(lambda: scrape(node, root)[0] == 200, 15.0)
        status, headers, _ = scrape(node)
        assert status == 401 and headers.get("www-authenticate") == "Bearer"
        answer = node.pool.request("POST", node.http, "/auth/tokens",
                                   b'{"name": "prom", "role": "read", "prefix": "nothing/"}',
                                   {"Authorization": f"Bearer {root}"}, 5.0)
        assert answer.status == 201, answer.body
        status, _, text = scrape(node, answer.json()["token"])   # any token, whatever its prefix
        assert status == 200 and "axon_raft_term" in text

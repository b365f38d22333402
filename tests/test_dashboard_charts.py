"""The dashboard's Metrics tab (per-node SVG line charts from GET /cluster/stats) and the node
table's version, uptime and disk figures, in Debian's Chromium through Playwright against real
nodes on loopback; the answer's shape is the /cluster/stats contract (stubbed in one test)."""
from __future__ import annotations

import json
import time
from typing import Iterator

import pytest

from axon.client import Client
from axon.client.http import ClientError
from axon.testing.cluster import Cluster
from test_dashboard import browser  # noqa: F401  (a shared fixture)

pytestmark = [pytest.mark.slow, pytest.mark.browser]

try:
    from playwright.sync_api import expect
except ImportError:   # the browser fixture skips
    expect = None

METRICS = ("writes_per_s", "reads_per_s", "commit_p99_ms", "fsync_p99_ms")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    with Cluster(tmp_path_factory.mktemp("charts"), n=3) as c:
        yield c


@pytest.fixture
def page(browser, cluster) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    try:
        yield pg
    finally:
        context.close()


def line(page, metric: str, node_id: str):
    return page.locator(f"[data-testid=chart][data-metric={metric}] [data-testid=chart-line][data-node='{node_id}']")


def open_metrics(page, url: str) -> None:
    page.goto(url)
    page.get_by_role("tab", name="Metrics").click()
    expect(page.get_by_role("tab", name="Metrics")).to_have_attribute("aria-selected", "true")


class StubStats:
    """GET /cluster/stats as the contract says: two nodes with a sample a second, one silent."""

    def __init__(self) -> None:
        self.t0 = time.time() - 30
        self.sinces: list[str | None] = []

    def answer(self, since: float | None) -> dict:
        now = time.time()
        samples = [{"t": t, "writes_per_s": 10.0 + t % 7, "reads_per_s": 40.0, "commit_p99_ms": 2.5,
                    "fsync_p99_ms": None if int(t) % 10 == 0 else 1.2}
                   for t in range(int(self.t0), int(now)) if since is None or t > since]
        return {"interval_s": 1, "nodes": {"n1": {"samples": samples},
                                           "n2": {"samples": [dict(s, writes_per_s=s["writes_per_s"] / 2)
                                                              for s in samples]},
                                           "n3": {"error": "no answer"}}}

    def __call__(self, route) -> None:
        query = route.request.url.partition("?")[2]
        since = dict(p.split("=", 1) for p in query.split("&") if "=" in p).get("since")
        self.sinces.append(since)
        route.fulfill(status=200, content_type="application/json",
                      body=json.dumps(self.answer(float(since) if since else None)))


def test_charts_draw_one_line_per_node_from_the_stats_contract(page, cluster) -> None:
    stub = StubStats()
    page.route("**/cluster/stats*", stub)
    open_metrics(page, f"http://{cluster.nodes[0].http}/")
    for metric in METRICS:
        for node_id in ("n1", "n2"):
            expect(line(page, metric, node_id)).to_have_count(1)
            expect(line(page, metric, node_id)).not_to_have_attribute("data-points", "0")
        expect(line(page, metric, "n3")).to_have_attribute("data-points", "0")
    # a second later only newer samples are asked for, and the lines grow
    before = int(line(page, "writes_per_s", "n1").get_attribute("data-points"))
    page.wait_for_function(
        "n => +document.querySelector(\"[data-metric=writes_per_s] [data-node='n1']\").dataset.points > n", arg=before)
    assert stub.sinces[0] is None and any(s for s in stub.sinces[1:])
    # legend, axes with units, accessible names
    legend = page.get_by_test_id("chart-legend")
    expect(legend).to_contain_text("n1")
    expect(legend.locator("[data-node=n3]")).to_contain_text("no answer")
    chart = page.get_by_role("img", name="Writes per node, writes/s, over the last 5 minutes")
    expect(chart).to_have_count(1)
    expect(chart.locator("desc")).to_contain_text("n1")
    expect(page.get_by_role("img", name="WAL fsync p99 per node, ms, over the last 5 minutes")).to_have_count(1)
    expect(page.locator("[data-metric=commit_p99_ms] svg")).to_contain_text("ms")
    expect(page.locator("[data-metric=commit_p99_ms] svg")).to_contain_text("now")


def test_after_writes_every_nodes_chart_has_points(page, cluster) -> None:
    """The real GET /cluster/stats of a 3-node cluster, after a few writes and reads."""
    client = Client(cluster.nodes[0].http, timeout=10, retry_for=0)
    try:
        client.call("GET", "/cluster/stats")
    except ClientError as err:
        if err.status == 404:
            pytest.skip("these nodes have no GET /cluster/stats yet")
        raise
    leader = cluster.leader()
    writer = Client(leader.http, timeout=10, retry_for=0)
    for i in range(50):
        writer.put(f"chart/{i}", "x")
        writer.get(f"chart/{i}")
    open_metrics(page, f"http://{cluster.nodes[1].http}/")
    for node in cluster.nodes:
        for metric in ("writes_per_s", "reads_per_s"):
            expect(line(page, metric, node.node_id)).not_to_have_attribute("data-points", "0", timeout=15000)
    expect(page.get_by_role("alert")).to_have_count(0)
    # the leader's writes/s line rose above zero at some point
    page.wait_for_function(
        "id => { const d = document.querySelector(`[data-metric=writes_per_s] [data-node='${id}']`)"
        ".getAttribute('d'); return /[ML][\\d.]+ (?!160\\.0)/.test(d); }", arg=leader.node_id, timeout=15000)


def test_node_table_shows_version_uptime_and_sizes_or_a_dash(page, cluster) -> None:
    def with_figures(route) -> None:
        answer = route.fetch()
        body = answer.json()
        rows = sorted(body["nodes"], key=lambda r: r["node_id"])
        rows[0].update(version="9.8.7", uptime_s=3 * 3600 + 120, data_bytes=5 * 1024 * 1024, wal_bytes=2048)
        for row in rows[1:]:
            for name in ("version", "uptime_s", "data_bytes", "wal_bytes"):
                row.pop(name, None)
        route.fulfill(response=answer, json=body)
    page.route("**/cluster/overview", with_figures)
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(f"http://{cluster.nodes[0].http}/")
    first = page.locator("[data-testid=node-row][data-node=n1]")
    expect(first.get_by_test_id("version")).to_have_text("9.8.7")
    expect(first.get_by_test_id("uptime")).to_have_text("up 3 h 2 min")
    expect(first.get_by_test_id("data-bytes")).to_have_text("5.0 MiB")
    expect(first.get_by_test_id("wal-bytes")).to_have_text("WAL 2.0 KiB")
    other = page.locator("[data-testid=node-row][data-node=n2]")
    expect(other.get_by_test_id("version")).to_have_text("—")
    expect(other.get_by_test_id("data-bytes")).to_have_text("—")

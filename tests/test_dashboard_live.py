"""The dashboard's data view kept current by a watch (no re-polling), in Debian's Chromium through
Playwright, against real `axon launch` clusters: the launcher's streamed /watch pass-through, a
PUT and a DELETE by another client showing up without a reload (through the launcher, from a
node's own dashboard, with auth on), and the watch resuming when its node stops."""
from __future__ import annotations

import http.client
import json
import time
from typing import Callable, Iterator

import pytest

import axon.launcher.watch_relay as watch_relay_module
from axon.api.errors import Unavailable
from axon.client import Client
from axon.client.http import HttpPool
from axon.testing.cluster import wait_for
from axon.web.wire import Request
from test_dashboard import HOST, LaunchedCluster, browser, launched  # noqa: F401  (shared fixtures)
from test_launcher_auth import AuthLaunch

pytestmark = pytest.mark.slow

try:
    from playwright.sync_api import expect
except ImportError:   # the pass-through tests still run; the browser fixture skips
    expect = None

LIVE_MS = 10000   # a change must show within this (it takes a few ms; CI machines are slow)


@pytest.fixture
def context(browser) -> Iterator[object]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        yield ctx
    finally:
        ctx.close()


def open_live_data_view(page, url: str, prefix: str) -> None:
    page.goto(url)
    page.get_by_role("tab", name="Data").click()
    page.get_by_label("Prefix").fill(prefix)
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_test_id("live-indicator")).to_have_attribute("data-state", "live", timeout=LIVE_MS)


def pump_until(page, predicate: Callable[[], object], timeout: float, message: str) -> None:
    """Poll ``predicate`` while Playwright runs: the sync API calls our route and event handlers
    only inside its own calls, so a plain sleeping poll would hold them (and the page) back."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {message}")
        page.wait_for_timeout(50)


def key_row(page, key: str):
    return page.locator(f"[data-testid=key-row][data-key='{key}']")


def writer(launched: LaunchedCluster) -> Client:
    """Another client: straight to a node, never through the page or the launcher."""
    return wait_for(lambda: launched.node_client("node-2"), 10, message="node-2's address")


def watch_through(port: int, query: str, headers: dict | None = None) -> tuple[http.client.HTTPConnection,
                                                                             http.client.HTTPResponse]:
    conn = http.client.HTTPConnection(HOST, port, timeout=15)
    conn.request("GET", "/watch?" + query, headers=headers or {})
    return conn, conn.getresponse()


def read_events(resp: http.client.HTTPResponse, wanted: int, timeout: float = 15) -> list[dict]:
    """The first ``wanted`` put/delete events of an open stream, as {kind, key, revision}."""
    events: list[dict] = []
    text = ""
    deadline = time.monotonic() + timeout
    while len(events) < wanted:
        assert time.monotonic() < deadline, f"only {events} within {timeout} s"
        chunk = resp.read1(65536)
        assert chunk, "the stream ended"
        text += chunk.decode()
        *blocks, text = text.split("\n\n")
        for block in blocks:
            fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and line[0] != ":")
            if fields.get("event") in ("put", "delete"):
                data = json.loads(fields["data"])
                events.append({"kind": fields["event"], "key": data["key"], "revision": data["revision"]})
    return events


# ---------------------------------------------------------------------- the launcher's pass-through
def test_the_launcher_streams_a_watch_as_it_comes(launched) -> None:
    conn, resp = watch_through(launched.port, "prefix=relay/")
    try:
        assert resp.status == 200 and resp.getheader("Content-Type") == "text/event-stream"
        start = int(resp.getheader("X-Axon-Start-Revision"))
        client = writer(launched)
        put = client.put("relay/a", "1")
        assert put["revision"] >= start
        client.put("other/b", "ignored")
        gone = client.delete("relay/a")
        # each event arrives while the stream stays open: nothing is held until the answer ends
        assert read_events(resp, 2) == [{"kind": "put", "key": "relay/a", "revision": put["revision"]},
                                        {"kind": "delete", "key": "relay/a", "revision": gone["revision"]}]
    finally:
        conn.close()
    # resuming after an event id: the next change only
    again = client.put("relay/c", "3")
    conn, resp = watch_through(launched.port, "prefix=relay/", {"Last-Event-ID": str(gone["revision"])})
    try:
        assert read_events(resp, 1) == [{"kind": "put", "key": "relay/c", "revision": again["revision"]}]
    finally:
        conn.close()


def test_the_launcher_passes_a_refused_watch_on_as_json(launched) -> None:
    conn, resp = watch_through(launched.port, "")   # neither key nor prefix
    try:
        assert resp.status == 400
        assert "prefix" in json.loads(resp.read())["error"]
    finally:
        conn.close()


def test_a_watch_the_browser_leaves_is_closed_at_the_node(launched) -> None:
    """The relay ends with the browser: the nodes' open watch streams drop by the watches closed.

    Counted by the nodes' own gauge of watch streams, not of connections: the launcher's
    keep-alive pool to the nodes opens and drops connections of its own meanwhile."""
    def open_watches() -> float:
        total = 0.0
        for node in launched.nodes().values():
            conn = http.client.HTTPConnection(*node["http"].split(":"), timeout=5)
            conn.request("GET", "/metrics")
            text = conn.getresponse().read().decode()
            conn.close()
            total += sum(float(line.split()[-1]) for line in text.splitlines()
                         if line.startswith("axon_watchers "))
        return total
    # the browsers of earlier tests are closed; the relays they held close as their nodes notice
    wait_for(lambda: open_watches() == 0, 10, message="no watch stream open at the nodes")
    conns = [watch_through(launched.port, "prefix=leave/")[0] for _ in range(3)]
    wait_for(lambda: open_watches() == 3, 10, message="3 watch streams at the nodes")
    for conn in conns:
        conn.close()
    wait_for(lambda: open_watches() == 0, 10, message="the relayed watches closed at the nodes")


class _Child:
    def __init__(self, node_id: str, http_addr: str) -> None:
        self.state = "running"
        self.spec = type("Spec", (), {"node_id": node_id, "http": http_addr})()


class _Supervisor:
    """What the relay needs of the launcher's Supervisor: its children and its connection pool."""

    def __init__(self, nodes: dict[str, dict]) -> None:
        self.children = {nid: _Child(nid, n["http"]) for nid, n in sorted(nodes.items())}
        self.pool = HttpPool(timeout=5)


def test_the_relay_is_bounded_and_frees_its_place_when_closed(launched, monkeypatch) -> None:
    monkeypatch.setattr(watch_relay_module, "MAX_RELAYS", 2)
    relay = watch_relay_module.watch_relay(_Supervisor(launched.nodes()))
    ask = Request("GET", "/watch", "prefix=bound/", "HTTP/1.1", {}, b"", True)
    first, second = relay(ask), relay(ask)
    assert first.status == second.status == 200 and first.stream is not None
    with pytest.raises(Unavailable) as refused:
        relay(ask)
    assert refused.value.retry_after > 0
    assert next(iter(first.stream)).startswith(b": watching from revision")
    first.stream.close()
    first.stream.close()   # the server may close twice: the place is freed once
    third = relay(ask)
    with pytest.raises(Unavailable):
        relay(ask)
    for answer in (second, third):
        answer.stream.close()


# ---------------------------------------------------------------------- the data view, live
@pytest.mark.browser
def test_a_put_and_a_delete_by_another_client_show_up_through_the_launcher(context, launched) -> None:
    page = context.new_page()
    client = writer(launched)
    client.put("live/a", "first")
    open_live_data_view(page, launched.url, "live/")
    expect(key_row(page, "live/a")).to_be_visible()
    polls = []
    page.on("request", lambda req: polls.append(req.url) if "/kv?" in req.url else None)

    made = client.put("live/b", "from elsewhere")
    expect(key_row(page, "live/b")).to_have_attribute("data-revision", str(made["revision"]), timeout=LIVE_MS)
    expect(key_row(page, "live/b")).to_contain_text("from elsewhere")
    # the page is in key order, and a key under another prefix stays out
    client.put("elsewhere/x", "no")
    assert page.locator("[data-testid=key-row]").evaluate_all("rows => rows.map(r => r.dataset.key)") == \
        ["live/a", "live/b"]

    # the open key follows a change made elsewhere
    page.get_by_role("button", name="View key live/a").click()
    expect(page.get_by_test_id("detail-value")).to_have_text("first")
    changed = client.put("live/a", "second")
    expect(page.get_by_test_id("detail-revision")).to_have_text(str(changed["revision"]), timeout=LIVE_MS)
    expect(page.get_by_test_id("detail-value")).to_have_text("second")

    client.delete("live/b")
    expect(key_row(page, "live/b")).to_have_count(0, timeout=LIVE_MS)
    assert polls == []   # no re-listing: the watch brought every change
    expect(page.locator("[data-testid=key-row][data-key='elsewhere/x']")).to_have_count(0)


@pytest.mark.browser
def test_a_nodes_own_dashboard_is_live_too(context, launched) -> None:
    page = context.new_page()
    node = launched.nodes()["node-3"]
    open_live_data_view(page, f"http://{node['http']}/", "own/")
    made = writer(launched).put("own/k", "v")
    expect(key_row(page, "own/k")).to_have_attribute("data-revision", str(made["revision"]), timeout=LIVE_MS)


@pytest.mark.browser
def test_the_view_resumes_when_the_watching_node_stops(context, launched) -> None:
    """Stopping every node in turn but one: the launcher's relay breaks, the page reconnects
    (Last-Event-ID) through another node and misses nothing written meanwhile."""
    page = context.new_page()
    open_live_data_view(page, launched.url, "resume/")
    first = sorted(launched.nodes())[0]   # the relay's first choice
    launched.api.call("POST", f"/api/nodes/{first}/stop")
    try:
        others = [nid for nid in sorted(launched.nodes()) if nid != first]
        client = launched.node_client(others[0])
        made = wait_for(lambda: client.put("resume/while-away", "1"), 20, message="a write without " + first)
        expect(key_row(page, "resume/while-away")).to_have_attribute("data-revision", str(made["revision"]),
                                                                      timeout=20000)
        expect(page.get_by_test_id("live-indicator")).to_have_attribute("data-state", "live")
    finally:
        launched.api.call("POST", f"/api/nodes/{first}/start")
    launched.wait_ready(3)


# ---------------------------------------------------------------------- with auth on (launch --auth)
@pytest.fixture(scope="module")
def secured(tmp_path_factory) -> Iterator[AuthLaunch]:
    cluster = AuthLaunch(tmp_path_factory.mktemp("liveauth"))
    try:
        cluster.wait_ready()
        yield cluster
    finally:
        cluster.close()


@pytest.mark.browser
def test_live_with_auth_on_through_the_launcher(context, secured) -> None:
    page = context.new_page()
    page.goto(secured.url)
    page.get_by_label("Token").fill(secured.root)
    page.get_by_test_id("sign-in-submit").click()
    expect(page.get_by_test_id("principal")).to_have_text("root")
    page.get_by_role("tab", name="Data").click()
    page.get_by_label("Prefix").fill("sec/")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_test_id("live-indicator")).to_have_attribute("data-state", "live", timeout=LIVE_MS)
    admin = Client(f"{HOST}:{secured.port}", timeout=15, token=secured.root, retry_for=0)
    node = Client(admin.call("GET", "/api/nodes")["nodes"][1]["http"], timeout=15, token=secured.root, retry_for=0)
    made = node.put("sec/k", "v")
    expect(key_row(page, "sec/k")).to_have_attribute("data-revision", str(made["revision"]), timeout=LIVE_MS)
    node.delete("sec/k")
    expect(key_row(page, "sec/k")).to_have_count(0, timeout=LIVE_MS)


@pytest.mark.browser
def test_a_compacted_history_lists_the_page_again(context, launched) -> None:
    """The node ends the first stream with "the history no longer reaches back" (what a resume
    after a long absence gets): the view lists the page again and watches from there."""
    page = context.new_page()
    listings: list[str] = []
    page.on("request", lambda req: listings.append(req.url) if "/kv?prefix=again" in req.url else None)
    cut = []

    def first_stream_compacted(route) -> None:
        if cut:
            route.continue_()
            return
        cut.append(route.request.url)
        route.fulfill(status=200, headers={"Content-Type": "text/event-stream", "X-Axon-Start-Revision": "2"},
                      body='event: error\ndata: {"error": "compacted", "compacted_revision": 9}\n\n')
    page.route("**/watch?prefix=again*", first_stream_compacted)
    open_live_data_view(page, launched.url, "again/")
    pump_until(page, lambda: len(listings) >= 2, 10, message="a second listing after the compacted stream")
    assert len(cut) == 1
    made = writer(launched).put("again/k", "v")
    expect(key_row(page, "again/k")).to_have_attribute("data-revision", str(made["revision"]), timeout=LIVE_MS)


@pytest.mark.browser
def test_a_read_token_with_a_prefix_watches_its_own_keys(context, secured) -> None:
    admin = Client(f"{HOST}:{secured.port}", timeout=15, token=secured.root, retry_for=0)
    node = Client(admin.call("GET", "/api/nodes")["nodes"][0]["http"], timeout=15, token=secured.root, retry_for=0)
    reader = node.token_create("live-reader", "read", "team/")["token"]
    page = context.new_page()
    page.goto(secured.url)
    page.get_by_label("Token").fill(reader)
    page.get_by_test_id("sign-in-submit").click()
    expect(page.get_by_test_id("principal")).to_have_text("live-reader")
    page.get_by_role("tab", name="Data").click()
    expect(page.get_by_label("Prefix")).to_have_value("team/")
    expect(page.get_by_test_id("live-indicator")).to_have_attribute("data-state", "live", timeout=LIVE_MS)
    made = node.put("team/k", "v")
    expect(key_row(page, "team/k")).to_have_attribute("data-revision", str(made["revision"]), timeout=LIVE_MS)
    # a prefix the token may not read: the watch is refused (403) and the badge says so
    page.get_by_label("Prefix").fill("other/")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_test_id("live-indicator")).to_have_attribute("data-state", "off", timeout=LIVE_MS)
    expect(page.get_by_test_id("signed-in")).to_be_visible()

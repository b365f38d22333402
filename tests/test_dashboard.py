"""The dashboard in a real browser (Debian's Chromium through Playwright) against a real
`axon launch` cluster of 3 nodes: live node table, node actions, the data explorer."""
from __future__ import annotations

import random
import subprocess
import sys
from typing import Iterator

import pytest

from axon.client import Client
from axon.client.http import ClientError
from axon.testing.browser import chromium
from axon.testing.cluster import free_ports, interrupt_process, wait_for
HOST = "127.0.0.1"

pytestmark = pytest.mark.slow

try:
    from playwright.sync_api import expect
except ImportError:   # the proxy tests below still run; the browser fixture skips
    expect = None


class LaunchedCluster:
    """`python -m axon launch` as a subprocess on free ports; close() stops it and its nodes."""

    def __init__(self, directory: str, nodes: int = 3) -> None:
        [self.port] = free_ports(1)
        self.url = f"http://{HOST}:{self.port}/"
        self.log_path = directory + ".out"
        self.out = open(self.log_path, "ab")
        cmd = [sys.executable, "-m", "axon", "launch", "--dir", directory, "--nodes", str(nodes),
               "--port", str(self.port), "--base-port", str(random.randrange(30000, 40000, 10)),
               "--stop-timeout", "10"]
        self.proc = subprocess.Popen(cmd, stdout=self.out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.api = Client(f"{HOST}:{self.port}", timeout=15, retry_for=0)

    def output(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def nodes(self) -> dict[str, dict]:
        if self.proc.poll() is not None:
            raise AssertionError(f"launcher exited {self.proc.returncode}:\n{self.output()}")
        return {n["node_id"]: n for n in self.api.call("GET", "/api/nodes")["nodes"]}

    def wait_ready(self, count: int, timeout: float = 60) -> dict[str, dict]:
        def ready() -> dict | None:
            nodes = self.nodes()
            roles = sorted(n["role"] for n in nodes.values())
            return nodes if len(nodes) == count and roles.count("leader") == 1 and \
                roles.count("follower") == count - 1 else None
        return wait_for(ready, timeout, interval=0.2, message=f"{count} nodes with a leader")

    def node_client(self, node_id: str) -> Client:
        return Client(self.nodes()[node_id]["http"], timeout=10, retry_for=0)

    def close(self) -> None:
        interrupt_process(self.proc)
        self.out.close()


@pytest.fixture(scope="module")
def launched(tmp_path_factory) -> Iterator[LaunchedCluster]:
    cluster = LaunchedCluster(str(tmp_path_factory.mktemp("dash") / "cluster"))
    try:
        cluster.wait_ready(3)
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser, launched) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.dialogs = []   # any alert/confirm that fires lands here (there must be none)
    pg.on("dialog", lambda d: (pg.dialogs.append(d.message), d.dismiss()))
    pg.goto(launched.url)
    try:
        yield pg
    finally:
        context.close()


def row(page, node_id: str):
    return page.locator(f"[data-testid=node-row][data-node='{node_id}']")


def leader_id(launched: LaunchedCluster) -> str:
    return next(nid for nid, n in launched.wait_ready(3).items() if n["role"] == "leader")


def open_data_tab(page) -> None:
    page.get_by_role("tab", name="Data").click()
    expect(page.get_by_role("tab", name="Data")).to_have_attribute("aria-selected", "true")


def create_in_ui(page, key: str, value: str) -> None:
    page.get_by_label("Key", exact=True).fill(key)
    page.get_by_label("Value", exact=True).fill(value)
    page.get_by_role("button", name="Create").click()
    expect(page.get_by_test_id("detail-key")).to_have_text(key)


# ---------------------------------------------------------------------- the launcher's proxy (no browser)
def test_launcher_proxies_the_node_api_with_conditions_and_odd_keys(launched) -> None:
    api = launched.api
    key = "proxy/a b/ü?&#"
    created = api.put(key, "one", if_absent=True)
    with pytest.raises(ClientError) as err:
        api.put(key, "again", if_absent=True)
    assert err.value.status == 412
    with pytest.raises(ClientError) as err:
        api.put(key, "stale", if_revision=created["revision"] - 1)
    assert err.value.status == 412 and err.value.body["revision"] == created["revision"]
    assert api.put(key, "two", if_revision=created["revision"])["value"] == "two"
    listed = api.list_page(prefix="proxy/", limit=1)
    assert [i["key"] for i in listed["items"]] == [key]
    assert launched.node_client("node-3").get(key)["value"] == "two"
    overview = api.call("GET", "/cluster/overview")
    assert sorted(n["node_id"] for n in overview["nodes"]) == ["node-1", "node-2", "node-3"]
    assert overview["quorum"]["has_quorum"] is True
    assert api.delete(key)
    with pytest.raises(ClientError) as err:
        api.call("GET", "/cluster/nope")
    assert err.value.status == 404


def test_launcher_proxy_skips_a_stopped_node(launched) -> None:
    api = launched.api
    api.status()   # whichever node answered is the one the proxy prefers now
    preferred = api.status()["node_id"]
    launched.api.call("POST", f"/api/nodes/{preferred}/stop")
    try:
        answered = wait_for(lambda: api.call("GET", "/cluster/overview"), 10, message="overview via another node")
        assert answered["node_id"] != preferred
        offline = {n["node_id"] for n in answered["nodes"] if not n["online"]}
        assert offline == {preferred}
        wait_for(lambda: api.put("proxy/after-stop", "ok"), 20, message="a write through the proxy")
    finally:
        launched.api.call("POST", f"/api/nodes/{preferred}/start")
    launched.wait_ready(3)


# ---------------------------------------------------------------------- cluster view
@pytest.mark.browser
def test_shows_every_node_the_leader_and_quorum(page, launched) -> None:
    leader = leader_id(launched)
    expect(row(page, leader)).to_have_attribute("data-role", "leader")
    for nid in ("node-1", "node-2", "node-3"):
        expect(row(page, nid)).to_have_attribute("data-online", "true")
        expect(row(page, nid)).to_contain_text(launched.nodes()[nid]["http"])
    expect(page.get_by_test_id("quorum-banner")).to_contain_text("Quorum: yes")
    expect(page.get_by_test_id("quorum-banner")).to_contain_text("tolerates 1 more failure")
    assert page.dialogs == []


@pytest.mark.browser
def test_stop_shows_offline_within_5s_and_start_brings_it_back(page, launched) -> None:
    victim = next(nid for nid, n in sorted(launched.nodes().items()) if n["role"] == "follower")
    expect(row(page, victim)).to_have_attribute("data-online", "true")
    row(page, victim).get_by_role("button", name=f"Stop {victim}").click()
    expect(row(page, victim)).to_have_attribute("data-online", "false", timeout=5000)
    expect(row(page, victim).get_by_test_id("role")).to_have_text("offline")
    expect(page.get_by_test_id("action-results")).to_contain_text(f"{victim} stopped", timeout=20000)
    expect(page.get_by_test_id("quorum-banner")).to_contain_text("no further failure tolerated", timeout=5000)
    assert launched.nodes()[victim]["state"] == "stopped"

    row(page, victim).get_by_role("button", name=f"Start {victim}").click()
    expect(row(page, victim)).to_have_attribute("data-online", "true", timeout=20000)
    expect(page.get_by_test_id("action-results")).to_contain_text(f"{victim} started")
    launched.wait_ready(3)


# ---------------------------------------------------------------------- data explorer
@pytest.mark.browser
def test_key_created_in_the_ui_is_read_back_through_the_api(page, launched) -> None:
    open_data_tab(page)
    create_in_ui(page, "ui/greeting", '{"hello": "world", "n": [1, 2]}')
    got = launched.node_client("node-2").get("ui/greeting")
    assert got["value"] == '{"hello": "world", "n": [1, 2]}'
    # JSON is shown pretty-printed, and the key turns up in the listing
    expect(page.get_by_test_id("detail-value")).to_contain_text('"hello": "world",\n')
    page.get_by_label("Prefix").fill("ui/")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("button", name="View key ui/greeting")).to_be_visible()


@pytest.mark.browser
def test_markup_in_values_renders_as_text(page, launched) -> None:
    evil = "<img src=x onerror=alert(1)>"
    open_data_tab(page)
    create_in_ui(page, "ui/<b>evil</b>", evil)
    expect(page.get_by_test_id("detail-value")).to_have_text(evil)
    expect(page.get_by_test_id("detail-key")).to_have_text("ui/<b>evil</b>")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_test_id("key-table")).to_contain_text(evil)
    assert page.locator("img").count() == 0 and page.locator("main b, [data-testid] b").count() == 0
    page.wait_for_timeout(300)   # give an injected handler its chance to fire
    assert page.dialogs == []
    assert launched.node_client("node-1").get("ui/<b>evil</b>")["value"] == evil


@pytest.mark.browser
def test_edit_with_a_stale_revision_shows_the_conflict(page, launched) -> None:
    api = launched.node_client("node-1")
    first = api.put("ui/counter", "1")
    open_data_tab(page)
    page.get_by_label("Prefix").fill("ui/counter")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("button", name="View key ui/counter").click()
    expect(page.get_by_test_id("detail-revision")).to_have_text(str(first["revision"]))
    page.get_by_role("button", name="Edit").click()
    newer = api.put("ui/counter", "2 (someone else)")
    page.get_by_label("New value").fill("3 (mine)")
    page.get_by_role("button", name="Save").click()
    conflict = page.get_by_test_id("conflict")
    expect(conflict).to_contain_text(f"now revision {newer['revision']}")
    expect(page.get_by_test_id("conflict-value")).to_have_text("2 (someone else)")
    assert api.get("ui/counter")["value"] == "2 (someone else)"
    # the user may keep the edit and save it against the revision now seen
    page.get_by_role("button", name=f"Keep my edit, compare with revision {newer['revision']}").click()
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_test_id("detail-value")).to_have_text("3 (mine)")
    assert api.get("ui/counter")["value"] == "3 (mine)"


@pytest.mark.browser
def test_delete_asks_for_confirmation(page, launched) -> None:
    api = launched.node_client("node-1")
    api.put("ui/doomed", "bye")
    open_data_tab(page)
    page.get_by_label("Prefix").fill("ui/doomed")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("button", name="View key ui/doomed").click()
    page.get_by_role("button", name="Delete").click()
    page.get_by_role("dialog").get_by_role("button", name="Cancel").click()
    assert api.get("ui/doomed")["value"] == "bye"
    page.get_by_role("button", name="Delete").click()
    page.get_by_role("dialog").get_by_test_id("confirm").click()
    expect(page.get_by_test_id("key-detail")).to_contain_text('deleted "ui/doomed"')
    assert api.get("ui/doomed") is None   # 404


@pytest.mark.browser
def test_without_quorum_the_data_view_is_read_only(page, launched) -> None:
    followers = [nid for nid, n in sorted(launched.nodes().items()) if n["role"] == "follower"]
    open_data_tab(page)
    expect(page.get_by_role("button", name="Create")).to_be_enabled()
    try:
        for nid in followers:
            launched.api.call("POST", f"/api/nodes/{nid}/stop")
        expect(page.get_by_test_id("quorum-banner")).to_contain_text("No quorum", timeout=5000)
        expect(page.get_by_test_id("read-only")).to_be_visible()
        expect(page.get_by_role("button", name="Create")).to_be_disabled()
    finally:
        for nid in followers:
            launched.api.call("POST", f"/api/nodes/{nid}/start")
    launched.wait_ready(3)
    expect(page.get_by_test_id("quorum-banner")).to_contain_text("Quorum: yes", timeout=10000)
    expect(page.get_by_test_id("read-only")).to_have_count(0)


@pytest.mark.browser
def test_a_standalone_node_offers_remove_but_no_process_actions_nor_a_keyless_join(browser, launched) -> None:
    nodes = launched.wait_ready(3)   # an earlier test stopped and restarted the followers
    leader = next(nid for nid, n in nodes.items() if n["role"] == "leader")
    follower = next(nid for nid, n in sorted(nodes.items()) if n["role"] == "follower")
    context = browser.new_context(viewport={"width": 390, "height": 844})   # a phone
    try:
        pg = context.new_page()
        pg.goto(f"http://{nodes[follower]['http']}/")
        expect(row(pg, leader)).to_have_attribute("data-role", "leader")
        expect(pg.get_by_test_id("add-node")).to_have_count(0)
        expect(pg.get_by_role("button", name=f"Stop {leader}")).to_have_count(0)
        expect(pg.get_by_role("button", name=f"Remove {leader}")).to_have_count(1)

        # A launched cluster has a cluster key: a join must prove it, which a browser cannot,
        # so the node's status says join_requires_proof and the dashboard offers no join form.
        assert launched.node_client(follower).status()["join_requires_proof"] is True
        expect(pg.get_by_role("heading", name="Add a member")).to_have_count(0)
        expect(pg.get_by_label("Node id")).to_have_count(0)
    finally:
        context.close()


# ---------------------------------------------------------------------- membership (changes the cluster: last)
@pytest.mark.browser
def test_add_node_then_decommission_it(page, launched) -> None:
    page.get_by_test_id("add-node").click()
    expect(page.get_by_test_id("action-results")).to_contain_text("node-4 added", timeout=20000)
    expect(row(page, "node-4")).to_have_attribute("data-role", "follower", timeout=40000)

    row(page, "node-4").get_by_role("button", name="Decommission node-4").click()
    page.get_by_role("dialog").get_by_test_id("confirm").click()
    expect(page.get_by_test_id("action-results")).to_contain_text("node-4 decommissioned", timeout=30000)
    expect(row(page, "node-4")).to_have_count(0, timeout=5000)
    voters = launched.node_client("node-1").status()["voters"]
    assert "node-4" not in voters and len(voters) == 3
    assert "node-4" not in launched.nodes()

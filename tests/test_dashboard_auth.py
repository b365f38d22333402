"""Dashboard sign-in and a role-aware UI, in Debian's Chromium through Playwright, against a real
node bootstrapped with --auth and a cluster key; plus whoami and a keyed join into that cluster."""
from __future__ import annotations

import os
from typing import Iterator

import pytest

from axon.client import Client
from axon.client.http import ClientError
from axon.testing.browser import chromium
from axon.testing.cluster import Cluster, NodeHandle, cluster_key_args, wait_for

pytestmark = pytest.mark.slow

try:
    from playwright.sync_api import expect
except ImportError:   # the tests without a browser still run; the browser fixture skips
    expect = None


class Secured:
    """A running --auth cluster with its root token and a read and a write token."""

    def __init__(self, cluster: Cluster, node: NodeHandle, key_args: list[str]) -> None:
        self.cluster, self.node, self.key_args = cluster, node, key_args
        path = os.path.join(node.data_dir, "root.token")
        wait_for(lambda: os.path.exists(path), 15.0, message="root.token")
        with open(path, encoding="utf-8") as f:
            self.root = f.read().strip()
        cluster.use_token(self.root)
        self.admin = Client(node.http, timeout=10, token=self.root, retry_for=0)
        wait_for(lambda: _status(lambda: self.admin.list_page("")) == 200, 15.0, message="auth on")
        self.reader = self.admin.token_create("reader", "read", "")["token"]
        self.writer = self.admin.token_create("writer", "write", "app/")["token"]
        self.url = f"http://{node.http}/"


def _status(fn) -> int:
    try:
        fn()
        return 200
    except ClientError as err:
        return err.status


@pytest.fixture(scope="module")
def secured(tmp_path_factory) -> Iterator[Secured]:
    base = tmp_path_factory.mktemp("dashauth")
    key_args = cluster_key_args(str(base))
    with Cluster(base, 0, start=False, extra_args=key_args) as cluster:
        node = cluster.new_node(extra_args=key_args + ["--auth"])
        node.start(bootstrap=True)
        node.wait_serving()
        yield Secured(cluster, node, key_args)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser, secured) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.goto(secured.url)
    try:
        yield pg
    finally:
        context.close()


def sign_in(page, token: str) -> None:
    expect(page.get_by_test_id("sign-in")).to_be_visible()
    page.get_by_label("Token").fill(token)
    page.get_by_test_id("sign-in-submit").click()


def stored_token(page) -> str | None:
    return page.evaluate("() => sessionStorage.getItem('axon.token')")


def open_data_tab(page) -> None:
    page.get_by_role("tab", name="Data").click()
    expect(page.get_by_role("tab", name="Data")).to_have_attribute("aria-selected", "true")


# ---------------------------------------------------------------------- no browser
def test_whoami_says_who_the_token_is(secured) -> None:
    assert secured.admin.call("GET", "/auth/whoami") == \
        {"auth_enabled": True, "name": "root", "role": "admin", "prefix": ""}
    reader = Client(secured.node.http, timeout=5, token=secured.reader, retry_for=0)
    assert reader.call("GET", "/auth/whoami")["role"] == "read"
    assert _status(lambda: Client(secured.node.http, timeout=5, retry_for=0).call("GET", "/auth/whoami")) == 401
    assert _status(lambda: Client(secured.node.http, timeout=5, token="axon_nope", retry_for=0).call(
        "GET", "/auth/whoami")) == 401


def test_status_and_overview_say_joins_need_a_proof(secured) -> None:
    assert secured.admin.status()["join_requires_proof"] is True
    overview = secured.admin.call("GET", "/cluster/overview")
    assert overview["join_requires_proof"] is True and overview["alarms"] == []


def test_keyed_join_into_an_auth_cluster(secured) -> None:
    """A real process joins with the cluster key; the harness polls with the root token."""
    cluster = secured.cluster
    joiner = cluster.new_node(extra_args=secured.key_args)
    joiner.start(join=[secured.node.http])
    cluster.wait_voters([secured.node.node_id, joiner.node_id], 30.0)
    assert joiner.status()["cluster_id"] == secured.node.status()["cluster_id"]
    anonymous = Client(joiner.http, timeout=5, retry_for=0)
    assert _status(lambda: anonymous.status()) == 401


# ---------------------------------------------------------------------- browser
@pytest.mark.browser
def test_wrong_token_stays_at_sign_in(page) -> None:
    sign_in(page, "axon_not-a-token")
    expect(page.get_by_test_id("sign-in-error")).to_contain_text("401")
    expect(page.get_by_test_id("sign-in")).to_be_visible()
    assert stored_token(page) is None


@pytest.mark.browser
def test_admin_signs_in_puts_deletes_and_signs_out(page, secured) -> None:
    sign_in(page, secured.root)
    expect(page.get_by_test_id("principal")).to_have_text("root")
    expect(page.get_by_test_id("principal-role")).to_contain_text("admin")
    assert stored_token(page) == secured.root
    assert page.evaluate("() => localStorage.length") == 0
    expect(page.locator("[data-testid=node-row]")).to_have_count(len(secured.cluster.running()))
    # a keyed cluster: a browser cannot prove the cluster key, so no manual join form
    expect(page.get_by_role("heading", name="Add a member")).to_have_count(0)
    open_data_tab(page)
    page.get_by_label("Key", exact=True).fill("ui/signed")
    page.get_by_label("Value", exact=True).fill("in")
    page.get_by_role("button", name="Create").click()
    expect(page.get_by_test_id("detail-key")).to_have_text("ui/signed")
    assert secured.admin.get("ui/signed")["value"] == "in"
    page.get_by_role("button", name="Delete").click()
    page.get_by_role("dialog").get_by_test_id("confirm").click()
    expect(page.get_by_test_id("key-detail")).to_contain_text('deleted "ui/signed"')
    assert secured.admin.get("ui/signed") is None   # 404
    page.get_by_test_id("sign-out").click()
    expect(page.get_by_test_id("sign-in")).to_be_visible()
    assert stored_token(page) is None


@pytest.mark.browser
def test_read_token_sees_no_write_actions(page, secured) -> None:
    secured.admin.put("ro/seen", "x")
    sign_in(page, secured.reader)
    expect(page.get_by_test_id("principal-role")).to_contain_text("read")
    expect(page.get_by_role("button", name="Remove")).to_have_count(0)
    open_data_tab(page)
    expect(page.get_by_test_id("no-write")).to_be_visible()
    page.get_by_label("Prefix").fill("ro/")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("button", name="View key ro/seen").click()
    expect(page.get_by_test_id("detail-value")).to_contain_text("x")
    for name in ("Create", "Edit", "Delete"):
        expect(page.get_by_role("button", name=name, exact=True)).to_have_count(0)
    # the buttons are only hidden: the node is what refuses a write, with a 403
    status = page.evaluate("""async () => (await fetch('/kv/ro/seen', {method: 'PUT',
        headers: {'Authorization': 'Bearer ' + sessionStorage.getItem('axon.token'),
                  'Content-Type': 'application/json'}, body: '{"value": "y"}'})).status""")
    assert status == 403
    assert secured.admin.get("ro/seen")["value"] == "x"


@pytest.mark.browser
def test_write_outside_the_prefix_shows_the_403(page, secured) -> None:
    sign_in(page, secured.writer)
    expect(page.get_by_test_id("principal-role")).to_contain_text("write on app/*")
    secured.admin.put("app/mine", "1")
    open_data_tab(page)
    # the first listing is of the token's own prefix, not a 403 on every key
    expect(page.get_by_label("Prefix")).to_have_value("app/")
    expect(page.get_by_role("button", name="View key app/mine")).to_be_visible()
    expect(page.get_by_text("Listing failed")).to_have_count(0)
    page.get_by_label("Key", exact=True).fill("other/x")
    page.get_by_label("Value", exact=True).fill("no")
    page.get_by_role("button", name="Create").click()
    refusal = page.get_by_role("region", name="Create a key").get_by_role("alert")
    expect(refusal).to_contain_text("not allowed for this token")
    expect(refusal).to_contain_text("403")
    expect(page.get_by_test_id("signed-in")).to_be_visible()   # a 403 does not sign out
    assert secured.admin.get("other/x") is None   # 404


@pytest.mark.browser
def test_revoked_token_goes_back_to_sign_in(page, secured) -> None:
    token = secured.admin.token_create("brief", "read", "")["token"]
    sign_in(page, token)
    expect(page.get_by_test_id("principal")).to_have_text("brief")
    secured.admin.token_revoke("brief")
    expect(page.get_by_test_id("sign-in")).to_be_visible(timeout=15000)
    expect(page.get_by_test_id("sign-in-error")).to_contain_text("401")
    assert stored_token(page) is None


@pytest.mark.browser
def test_an_alarm_shows_as_a_banner(page, secured) -> None:
    """A node out of space says "alarms": ["nospace"] in its status; the overview carries it."""
    def with_alarm(route) -> None:
        answer = route.fetch()
        body = answer.json()
        body["alarms"] = ["nospace"]
        route.fulfill(response=answer, json=body)
    page.route("**/cluster/overview", with_alarm)
    sign_in(page, secured.root)
    expect(page.get_by_test_id("alarms")).to_contain_text("nospace")
    expect(page.get_by_test_id("alarms")).to_contain_text("writes are refused")
    page.unroute("**/cluster/overview")
    expect(page.get_by_test_id("alarms")).to_have_count(0)

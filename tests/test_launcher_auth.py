"""`axon launch --auth`: every launcher route has an auth decision; real processes: the root
token file (0600, never printed), the supervisor API refusing anonymous calls, admin-only actions."""
from __future__ import annotations

import json
import os
import random
import re
import stat
import subprocess
import sys
from typing import Iterator

import pytest

from axon.api.auth import Decision
from axon.client import Client
from axon.client.http import ClientError
from axon.launcher.api import PROXIED, PROXIED_PATHS, build_api, launcher_routes
from axon.launcher.supervisor import Supervisor
from axon.testing.browser import chromium
from axon.testing.cluster import free_ports, interrupt_process, wait_for
from axon.testing.inprocess import request

HOST = "127.0.0.1"
ADMIN, READER = "axon_admin-token", "axon_read-token"


class GatedSupervisor(Supervisor):
    """A supervisor with auth on whose token check needs no node: two known tokens."""

    def whoami(self, authorization: str) -> tuple[int, dict | None]:
        known = {f"Bearer {ADMIN}": {"name": "root", "role": "admin"},
                 f"Bearer {READER}": {"name": "r", "role": "read"}}
        return (200, known[authorization]) if authorization in known else (401, {"error": "unknown"})


@pytest.fixture
def gated(tmp_path) -> Iterator[GatedSupervisor]:
    sup = GatedSupervisor(str(tmp_path / "c"), HOST, random.randrange(40000, 50000, 10), nodes=2,
                          stop_timeout=2, say=lambda s: None, auth=True)
    try:
        yield sup
    finally:
        sup.shutdown()


def concrete(pattern: str) -> str:
    return re.sub(r"<[a-z_]+(:path)?>", "x", pattern)


def test_every_launcher_route_has_a_decision(gated) -> None:
    routes = launcher_routes(gated)
    for route in routes:
        assert isinstance(route.decision, Decision), route
        if route.pattern.startswith("/api/"):
            # viewing the processes: any token; changing them: admin only
            assert route.decision is (Decision.ANY_TOKEN if route.method == "GET" else Decision.ADMIN), route
        else:
            assert route.pattern in PROXIED_PATHS and route.decision is PROXIED, route


def test_launcher_routes_refuse_without_a_token_and_non_admin_changes(gated) -> None:
    app = build_api(gated)
    for route in launcher_routes(gated):
        if not route.pattern.startswith("/api/"):
            continue
        path = concrete(route.pattern).replace("/x/x", "/node-1/bogus")
        anonymous = app(request(route.method, path))
        assert anonymous.status == 401 and ("WWW-Authenticate", "Bearer") in anonymous.headers, route
        wrong = app(request(route.method, path, headers={"Authorization": "Bearer axon_nope"}))
        assert wrong.status == 401, route
        read = app(request(route.method, path, headers={"Authorization": f"Bearer {READER}"}))
        assert read.status == (403 if route.decision is Decision.ADMIN else 200 if route.pattern == "/api/nodes"
                               else read.status), route
    # an admin gets past the gate to the endpoint (an unknown verb is the endpoint's 404)
    admin = {"Authorization": f"Bearer {ADMIN}"}
    assert app(request("GET", "/api/nodes", headers=admin)).status == 200
    assert app(request("POST", "/api/nodes/node-1/bogus", headers=admin)).status == 404


def test_without_auth_the_launcher_checks_nothing(tmp_path) -> None:
    sup = Supervisor(str(tmp_path / "c"), HOST, random.randrange(40000, 50000, 10), nodes=1,
                     stop_timeout=2, say=lambda s: None)
    try:
        assert build_api(sup)(request("GET", "/api/nodes")).status == 200
    finally:
        sup.shutdown()


# ---------------------------------------------------------------------- real processes
class AuthLaunch:
    """`python -m axon launch --auth` of 2 nodes; ``root`` once the token file is there."""

    def __init__(self, tmp_path, auth: bool = True, port: int | None = None, base_port: int | None = None,
                 out: str = "launch.out") -> None:
        self.directory = str(tmp_path / "cluster")
        self.port = port or free_ports(1)[0]
        self.base_port = base_port or random.randrange(30000, 40000, 10)
        self.url = f"http://{HOST}:{self.port}/"
        self.out_path = str(tmp_path / out)
        cmd = [sys.executable, "-m", "axon", "launch", *(["--auth"] if auth else []), "--dir", self.directory,
               "--nodes", "2", "--port", str(self.port), "--base-port", str(self.base_port),
               "--stop-timeout", "10"]
        with open(self.out_path, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.token_file = os.path.join(self.directory, "root.token")
        self.root = ""

    def output(self) -> str:
        with open(self.out_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def wait_ready(self) -> None:
        def printed_token_path() -> bool:
            assert self.proc.poll() is None, self.output()
            return self.token_file in self.output()
        wait_for(printed_token_path, 60.0, interval=0.2, message="the launcher to print the token file")
        with open(self.token_file, encoding="utf-8") as f:
            self.root = f.read().strip()
        admin = Client(f"{HOST}:{self.port}", timeout=15, token=self.root, retry_for=0)

        def ready() -> bool:
            roles = sorted(n["role"] for n in admin.call("GET", "/api/nodes")["nodes"])
            return roles == ["follower", "leader"]
        wait_for(ready, 60.0, interval=0.2, message="2 nodes with a leader")

    def close(self) -> None:
        interrupt_process(self.proc)


@pytest.fixture(scope="module")
def launched(tmp_path_factory) -> Iterator[AuthLaunch]:
    cluster = AuthLaunch(tmp_path_factory.mktemp("launchauth"))
    try:
        cluster.wait_ready()
        yield cluster
    finally:
        cluster.close()
    assert cluster.root and cluster.root not in cluster.output()   # the secret never reaches the log


@pytest.mark.slow
def test_launch_with_auth(launched) -> None:
    port, root = launched.port, launched.root
    assert stat.S_IMODE(os.stat(launched.token_file).st_mode) == 0o600
    assert root.startswith("axon_") and root not in launched.output()
    anonymous = Client(f"{HOST}:{port}", timeout=15, retry_for=0)
    admin = Client(f"{HOST}:{port}", timeout=15, token=root, retry_for=0)
    with pytest.raises(ClientError) as err:
        anonymous.call("GET", "/api/nodes")
    assert err.value.status == 401
    with pytest.raises(ClientError) as err:   # proxied: the node refuses it
        anonymous.call("GET", "/cluster/overview")
    assert err.value.status == 401
    assert admin.call("GET", "/auth/whoami")["role"] == "admin"
    admin.put("launched/a", "1")
    assert admin.get("launched/a")["value"] == "1"
    overview = admin.call("GET", "/cluster/overview")
    assert all(n["online"] for n in overview["nodes"]), overview
    node_http = admin.call("GET", "/api/nodes")["nodes"][0]["http"]
    made = Client(node_http, timeout=15, token=root, retry_for=0).token_create("viewer", "read", "")
    reader = Client(f"{HOST}:{port}", timeout=15, token=made["token"], retry_for=0)
    assert len(reader.call("GET", "/api/nodes")["nodes"]) == 2
    with pytest.raises(ClientError) as err:
        reader.call("POST", "/api/nodes/node-2/restart")
    assert err.value.status == 403
    assert admin.call("POST", "/api/nodes/node-2/restart")["state"] == "running"


@pytest.mark.slow
@pytest.mark.browser
def test_the_launchers_dashboard_asks_for_a_token(launched) -> None:
    expect = pytest.importorskip("playwright.sync_api").expect
    with chromium() as browser:
        page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        page.goto(launched.url)
        expect(page.get_by_test_id("sign-in")).to_be_visible()
        page.get_by_label("Token").fill(launched.root)
        page.get_by_test_id("sign-in-submit").click()
        expect(page.get_by_test_id("principal")).to_have_text("root")
        expect(page.get_by_test_id("add-node")).to_be_visible()   # an admin: process actions
        expect(page.locator("[data-testid=node-row]")).to_have_count(2)
        page.get_by_test_id("sign-out").click()
        expect(page.get_by_test_id("sign-in")).to_be_visible()
        assert page.evaluate("() => sessionStorage.getItem('axon.token')") is None


@pytest.mark.slow
def test_relaunch_with_auth_turns_it_on_for_an_existing_cluster(tmp_path) -> None:
    first = AuthLaunch(tmp_path, auth=False)
    try:
        wait_for(lambda: first.proc.poll() is None and "cluster ready" in first.output(), 60.0, interval=0.2,
                 message="a cluster without auth")
    finally:
        first.close()
    again = AuthLaunch(tmp_path, auth=True, port=first.port, base_port=first.base_port, out="again.out")
    try:
        again.wait_ready()
        assert stat.S_IMODE(os.stat(again.token_file).st_mode) == 0o600
        with pytest.raises(ClientError) as err:
            Client(f"{HOST}:{again.port}", timeout=15, retry_for=0).call("GET", "/api/nodes")
        assert err.value.status == 401
        admin = Client(f"{HOST}:{again.port}", timeout=15, token=again.root, retry_for=0)
        assert admin.call("GET", "/auth/whoami")["role"] == "admin"
    finally:
        again.close()
    assert again.root not in again.output()


def test_launcher_actions_are_audited_with_the_tokens_name(gated, tmp_path) -> None:
    from axon.audit import AuditLog
    path = str(tmp_path / "audit.jsonl")
    log = AuditLog(path)
    try:
        app = build_api(gated, audit_log=log)
        app(request("POST", "/api/nodes/node-1/stop", headers={"Authorization": f"Bearer {READER}"}))
        app(request("POST", "/api/nodes/node-1/stop"))
    finally:
        log.close()
    with open(path, encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    # a known token refused (403) is named; no token at all is anonymous
    assert [(r["principal"], r["outcome"]) for r in records] == [("r", "refused"), ("anonymous", "refused")]

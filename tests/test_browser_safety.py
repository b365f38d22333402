"""Browser safety: pages on other origins cannot change a node or the launcher, and DNS
rebinding gets no answer.  The rule itself, without sockets; then real processes, and real
Chromium (Debian's, through Playwright) sending what an attacker's page can send."""
from __future__ import annotations

import http.client
import http.server
import json
import os
import subprocess
import sys
import threading
from typing import Iterator

import pytest

from axon.client import Client
from axon.testing.browser import chromium
from axon.testing.cluster import Cluster, free_ports, interrupt_process, wait_for
from axon.web.browser import BrowserGuard, allowed_hosts, host_name, judge
from axon.web.wire import Request, Response

HOST = "127.0.0.1"
LOOPBACK = allowed_hosts(HOST)
NONE: frozenset[str] = frozenset()

try:
    from playwright.sync_api import expect
except ImportError:
    expect = None   # the browser fixture skips first


# ---------------------------------------------------------------- the rule

def test_host_names_without_ports() -> None:
    assert host_name("127.0.0.1:7000") == "127.0.0.1"
    assert host_name("[::1]:7000") == "[::1]"
    assert host_name("LocalHost") == "localhost"
    assert allowed_hosts("0.0.0.0") is None and allowed_hosts("10.1.2.3") is None
    assert "127.0.0.2" in allowed_hosts("127.0.0.2")


@pytest.mark.parametrize("headers, verdict", [
    ({"host": "127.0.0.1:7000"}, None),                                        # curl, the CLI, a peer
    ({"host": "localhost:7000", "origin": "http://localhost:7000"}, None),     # the dashboard itself
    ({"host": "127.0.0.1:7000", "origin": "http://127.0.0.1:8080"}, 403),     # another port: another origin
    ({"host": "127.0.0.1:7000", "origin": "https://127.0.0.1:7000"}, 403),    # another scheme
    ({"host": "127.0.0.1:7000", "origin": "null"}, 403),                      # a sandboxed or file page
    ({"host": "127.0.0.1:7000", "origin": "https://ops.example"}, None),      # --allowed-origin
    ({"host": "127.0.0.1:7000", "sec-fetch-site": "cross-site"}, 403),
    ({"host": "127.0.0.1:7000", "sec-fetch-site": "same-site"}, 403),
    ({"host": "127.0.0.1:7000", "sec-fetch-site": "same-origin"}, None),
    ({"host": "rebind.attacker.example:7000", "origin": "http://rebind.attacker.example:7000"}, 421),
    ({}, None),                                                                # HTTP/1.0 without Host
])
def test_state_changing_requests(headers, verdict) -> None:
    refusal = judge("POST", headers, "http", LOOPBACK, frozenset({"https://ops.example"}))
    assert (refusal and refusal[0]) == verdict


def test_reads_are_judged_by_host_only() -> None:
    assert judge("GET", {"host": "127.0.0.1:1", "origin": "http://evil.example"}, "http", LOOPBACK, NONE) is None
    assert judge("GET", {"host": "rebind.attacker.example"}, "http", LOOPBACK, NONE)[0] == 421
    assert judge("GET", {"host": "rebind.attacker.example"}, "http", None, NONE) is None   # public bind


def test_the_middleware_answers_json_and_passes_the_rest() -> None:
    guard = BrowserGuard("127.0.0.1:7000")
    seen: list[str] = []

    def handler(req: Request) -> Response:
        seen.append(req.method)
        return Response(200, [], b"ok")

    def request(method: str, **headers: str) -> Response:
        return guard(Request(method, "/cluster/join", "", "HTTP/1.1", headers, b"", True), handler)

    assert request("GET", host="127.0.0.1:7000").status == 200
    refused = request("POST", host="127.0.0.1:7000", origin="http://127.0.0.1:9999")
    assert refused.status == 403 and json.loads(refused.body) == {"error": "cross-origin request refused"}
    assert request("GET", host="evil.example").status == 421
    assert seen == ["GET"]


# ---------------------------------------------------------------- a real node

def raw(addr: str, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, dict]:
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null")
    finally:
        conn.close()


@pytest.fixture(scope="module")
def node(tmp_path_factory) -> Iterator:
    base = tmp_path_factory.mktemp("browser")
    audit = str(base / "audit.jsonl")
    with Cluster(base, 1, extra_args=["--audit-log", audit, "--allowed-origin", "https://ops.example"]) as c:
        c.leader()
        c.nodes[0].audit_path = audit
        yield c.nodes[0]


JOIN = json.dumps({"node_id": "intruder", "raft": "127.0.0.1:9", "http": "127.0.0.1:9"}).encode()


@pytest.mark.slow
def test_dns_rebinding_gets_no_answer(node) -> None:
    status, body = raw(node.http, "GET", "/cluster/status", {"Host": "rebind.attacker.example"})
    assert status == 421 and "rebind.attacker.example" in body["error"]
    status, _ = raw(node.http, "GET", "/cluster/status", {"Host": f"localhost:{node.http.rsplit(':', 1)[1]}"})
    assert status == 200


@pytest.mark.slow
def test_cross_origin_join_refused_same_origin_and_allowed_pass(node) -> None:
    status, body = raw(node.http, "POST", "/cluster/join",
                       {"Host": node.http, "Origin": "http://127.0.0.1:1", "Content-Type": "text/plain"}, JOIN)
    assert (status, body) == (403, {"error": "cross-origin request refused"})
    assert "intruder" not in node.client.status()["learners"]
    # the node's own origin and an --allowed-origin reach the endpoint (which finds the body wanting)
    bad = b"{}"
    assert raw(node.http, "POST", "/cluster/join", {"Host": node.http, "Origin": f"http://{node.http}"}, bad)[0] == 400
    assert raw(node.http, "POST", "/cluster/join", {"Host": node.http, "Origin": "https://ops.example"}, bad)[0] == 400


# ---------------------------------------------------------------- real Chromium

class AttackerSite:
    """A page server on another port: another origin, as an attacker's site would be."""

    def __init__(self, html: str) -> None:
        page = html.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((HOST, 0), Handler)
        self.url = f"http://{HOST}:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with chromium() as b:
        yield b


def audit_lines(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f]


@pytest.mark.slow
@pytest.mark.browser
def test_a_no_cors_post_from_another_origin_adds_no_learner(browser, node) -> None:
    site = AttackerSite(f"""<script>
      fetch("http://{node.http}/cluster/join", {{method: "POST", mode: "no-cors",
            headers: {{"Content-Type": "text/plain"}}, body: '{JOIN.decode()}'}})
        .then(() => document.title = "sent", () => document.title = "failed");
    </script>""")
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(site.url)
        wait_for(lambda: page.title() in ("sent", "failed"), 15, message="the page's fetch")
        # the request reached the node and was refused (the audit log says so), and nothing joined
        refused = wait_for(lambda: [e for e in audit_lines(node.audit_path)
                                    if e["action"] == "join" and e["target"] == "intruder"], 10,
                           message="the refused join in the audit log")
        assert refused[-1]["outcome"] == "refused" and refused[-1]["status"] == 403
        status = node.client.status()
        assert "intruder" not in status["learners"] and "intruder" not in status["voters"]
    finally:
        context.close()
        site.close()


class Launcher:
    """`axon launch` with one node (and an audit log), as a subprocess on free ports."""

    def __init__(self, directory: str) -> None:
        [self.port] = free_ports(1)
        base = free_ports(1)[0]
        self.url = f"http://{HOST}:{self.port}/"
        self.audit = directory + ".audit.jsonl"
        self.out = open(directory + ".out", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "axon", "launch", "--dir", directory, "--nodes", "1", "--port",
             str(self.port), "--base-port", str(20000 + base % 20000), "--stop-timeout", "10",
             "--audit-log", self.audit], stdout=self.out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.api = Client(f"{HOST}:{self.port}", timeout=15, retry_for=0)

    def nodes(self) -> dict[str, dict]:
        assert self.proc.poll() is None, "the launcher exited"
        return {n["node_id"]: n for n in self.api.call("GET", "/api/nodes")["nodes"]}

    def close(self) -> None:
        interrupt_process(self.proc)
        self.out.close()


@pytest.fixture(scope="module")
def launcher(tmp_path_factory) -> Iterator[Launcher]:
    launched = Launcher(str(tmp_path_factory.mktemp("launch") / "cluster"))
    try:
        wait_for(lambda: launched.nodes()["node-1"]["role"] == "leader", 60, interval=0.2,
                 message="the launched node to lead")
        yield launched
    finally:
        launched.close()


@pytest.mark.slow
def test_launcher_refuses_rebinding_and_lists_no_paths(launcher) -> None:
    status, _ = raw(f"{HOST}:{launcher.port}", "GET", "/api/nodes", {"Host": "rebind.attacker.example"})
    assert status == 421
    node = launcher.nodes()["node-1"]
    assert "data_dir" not in node and "log" not in node


@pytest.mark.slow
@pytest.mark.browser
def test_a_form_post_from_another_origin_stops_no_node(browser, launcher) -> None:
    site = AttackerSite(f"""<form method="POST" action="{launcher.url}api/nodes/node-1/stop">
      </form><script>document.forms[0].submit()</script>""")
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(site.url)
        wait_for(lambda: [e for e in audit_lines(launcher.audit) if e["action"] == "launcher.stop"], 15,
                 message="the refused stop in the launcher's audit log")
        entry = [e for e in audit_lines(launcher.audit) if e["action"] == "launcher.stop"][-1]
        assert (entry["target"], entry["outcome"], entry["status"]) == ("node-1", "refused", 403)
        assert launcher.nodes()["node-1"]["state"] == "running"
        # the dashboard itself still works: it lists the node and its own actions pass
        page.goto(launcher.url)
        expect(page.locator("[data-testid=node-row][data-node='node-1']")).to_have_attribute(
            "data-online", "true", timeout=15000)
    finally:
        context.close()
        site.close()

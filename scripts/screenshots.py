"""Screenshots of the dashboard for README.md, taken from a real `axon launch` cluster.

    python scripts/screenshots.py [--out docs/screenshots] [--chromium /usr/bin/chromium]

Needs the playwright Python package and a Chromium binary (Debian's: apt-get install chromium);
it never downloads browsers.  Everything runs on 127.0.0.1 in a temporary directory.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import math
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from axon.client import Client  # noqa: E402  (after the path fix above)
from axon.testing.browser import CHROMIUM_ARGS  # noqa: E402
from axon.testing.cluster import free_ports, wait_for  # noqa: E402

SAMPLE = {
    "config/service/api": json.dumps({"replicas": 3, "image": "api:1.4.2", "env": {"LOG_LEVEL": "info"}}),
    "config/service/worker": json.dumps({"replicas": 5, "queue": "jobs", "batch": 50}),
    "feature/dark-mode": "on",
    "feature/new-checkout": "off",
    "users/1001": json.dumps({"name": "Ada", "roles": ["admin"]}),
    "users/1002": json.dumps({"name": "Grace", "roles": ["dev", "ops"]}),
}


def launch(directory: str, *extra: str) -> tuple[subprocess.Popen, Client, str]:
    """`axon launch` in the background; its output goes to <directory>.log."""
    [port] = free_ports(1)
    cmd = [sys.executable, "-m", "axon", "launch", "--dir", directory, "--port", str(port),
           "--base-port", str(random.randrange(40000, 50000, 10)), *extra]
    with open(directory + ".log", "ab") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return proc, Client(f"127.0.0.1:{port}", timeout=15, retry_for=0), f"http://127.0.0.1:{port}/"


def wait_ready(api: Client) -> dict[str, dict]:
    def ready() -> dict | None:
        nodes = {n["node_id"]: n for n in api.call("GET", "/api/nodes")["nodes"]}
        roles = sorted(n["role"] for n in nodes.values())
        return nodes if roles == ["follower", "follower", "leader"] else None
    return wait_for(ready, 60, interval=0.2, message="a 3-node cluster with a leader")


LOAD_S = 60   # of load before the Metrics shot


def load(nodes: list[dict], stop: threading.Event) -> None:
    """Writes and reads at a rate that swells and ebbs, so the charts have a shape to show."""
    clients = [Client(n["http"], timeout=5, retry_for=0) for n in nodes]
    started = time.monotonic()
    i = 0
    while not stop.is_set():
        rate = 40 + 35 * math.sin((time.monotonic() - started) / 8)
        client = clients[i % len(clients)]
        try:
            client.put(f"load/{i % 100}", str(i))
            for _ in range(3):
                client.get(f"load/{i % 100}", stale=True)
        except Exception:   # a node is being stopped for the degraded shot: carry on elsewhere
            pass
        i += 1
        stop.wait(1 / rate)


def shoot_metrics(page, out: str) -> None:
    """The Metrics tab after a minute of load."""
    from playwright.sync_api import expect
    page.get_by_role("tab", name="Metrics").click()
    expect(page.locator("[data-metric=writes_per_s] [data-testid=chart-line]")).to_have_count(3, timeout=15000)
    page.wait_for_timeout(2500)
    page.screenshot(path=os.path.join(out, "metrics.png"), full_page=True)


def shoot(url: str, api: Client, out: str, chromium: str) -> None:
    from playwright.sync_api import expect, sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 720})
        page.goto(url)
        expect(page.locator("[data-role=leader]")).to_have_count(1, timeout=15000)
        page.screenshot(path=os.path.join(out, "cluster.png"))

        nodes = api.call("GET", "/api/nodes")["nodes"]
        victim = next(n["node_id"] for n in nodes if n["role"] == "follower")
        page.get_by_role("button", name=f"Stop {victim}").click()
        expect(page.locator(f"[data-node='{victim}'][data-online=false]")).to_have_count(1, timeout=10000)
        expect(page.get_by_test_id("action-results")).to_contain_text("stopped", timeout=20000)
        page.screenshot(path=os.path.join(out, "cluster-degraded.png"))
        api.call("POST", f"/api/nodes/{victim}/start")

        page.get_by_role("tab", name="Data").click()
        page.get_by_role("button", name="View key config/service/api").click()
        expect(page.get_by_test_id("detail-value")).to_contain_text('"replicas": 3')
        page.screenshot(path=os.path.join(out, "data.png"))

        expect(page.locator(f"[data-node='{victim}'][data-online=true]")).to_have_count(1, timeout=20000)
        done = threading.Event()   # load only now: the data view's keys are the sample ones
        loader = threading.Thread(target=load, args=(nodes, done), daemon=True)
        loader.start()
        try:
            page.wait_for_timeout(LOAD_S * 1000)
            shoot_metrics(page, out)
        finally:
            done.set()
            loader.join(10)

        page.set_viewport_size({"width": 390, "height": 844})
        page.get_by_role("tab", name="Cluster").click()
        expect(page.locator(f"[data-node='{victim}'][data-online=true]")).to_have_count(1, timeout=20000)
        page.screenshot(path=os.path.join(out, "phone.png"), full_page=True)
        browser.close()


def shoot_sign_in(url: str, token: str, out: str, chromium: str) -> None:
    """The sign-in form of a cluster with auth on, then the data view of a read-only token."""
    from playwright.sync_api import expect, sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 720})
        page.goto(url)
        expect(page.get_by_test_id("sign-in")).to_be_visible(timeout=15000)
        page.screenshot(path=os.path.join(out, "sign-in.png"))
        page.get_by_label("Token").fill(token)
        page.get_by_test_id("sign-in-submit").click()
        expect(page.get_by_test_id("principal")).to_have_text("viewer", timeout=15000)
        page.get_by_role("tab", name="Data").click()
        page.get_by_role("button", name="View key config/service/api").click()
        expect(page.get_by_test_id("detail-value")).to_contain_text('"replicas": 3')
        page.screenshot(path=os.path.join(out, "signed-in-read-only.png"))
        browser.close()


def run_launch(tmp: str, name: str, *extra: str):
    """A launched cluster, ready: (process, launcher client, url).  With --auth the client
    carries the root token the launcher keeps in the cluster dir."""
    proc, api, url = launch(os.path.join(tmp, name), *extra)
    try:
        if "--auth" in extra:
            token_file = os.path.join(tmp, name, "root.token")
            wait_for(lambda: os.path.exists(token_file), 60, message="the root token file")
            with open(token_file, encoding="utf-8") as f:
                api = Client(api.endpoints, token=f.read().strip(), timeout=15, retry_for=0)
        wait_ready(api)
    except AssertionError:
        with open(os.path.join(tmp, f"{name}.log"), encoding="utf-8", errors="replace") as f:
            print(f.read()[-3000:], file=sys.stderr)
        stop(proc)
        raise
    return proc, api, url


def root_token(tmp: str, name: str) -> str:
    with open(os.path.join(tmp, name, "root.token"), encoding="utf-8") as f:
        return f.read().strip()


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(40)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "screenshots"))
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="axon-shots-") as tmp:
        proc, api, url = run_launch(tmp, "cluster")
        try:
            for key, value in SAMPLE.items():
                wait_for(lambda: api.put(key, value), 20, message=f"writing {key}")
            shoot(url, api, args.out, args.chromium)
        finally:
            stop(proc)
        proc, api, url = run_launch(tmp, "secured", "--auth")
        try:
            for key, value in SAMPLE.items():
                wait_for(lambda: api.put(key, value), 20, message=f"writing {key}")
            # tokens are made on a node, not through the launcher
            node = Client(api.call("GET", "/api/nodes")["nodes"][0]["http"], token=root_token(tmp, "secured"),
                          timeout=15, retry_for=0)
            viewer = node.token_create("viewer", "read", "")["token"]
            shoot_sign_in(url, viewer, args.out, args.chromium)
        finally:
            stop(proc)
    print(f"screenshots in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How the dashboard's data explorer behaves with many keys (default 100,000).

    python bench/dashboard_keys.py [--keys 100000] [--connections 64]

Starts one node (bootstrapped, data in a temp dir, ports on 127.0.0.1), loads the keys over
HTTP, then drives Debian's Chromium through Playwright: open the Data tab, page forward ten
times, search a prefix. Prints the time of each step; needs /usr/bin/chromium and the
playwright Python package (no downloaded browser).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from gevent import monkey

monkey.patch_all()

import gevent  # noqa: E402
from gevent.pool import Pool  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from axon.client import Client
from axon.client.http import HttpPool  # noqa: E402
from axon.testing.cluster import free_ports, wait_for  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]


def load(addr: str, keys: int, connections: int) -> float:
    pool = HttpPool(timeout=30)
    client = Client(addr, timeout=30, pool=pool, retry_for=0)
    started = time.monotonic()
    Pool(connections).map(lambda i: client.put(f"k/{i:06d}", f"value {i} " + "x" * 80), range(keys))
    return time.monotonic() - started


def browse(url: str) -> dict:
    from playwright.sync_api import expect, sync_playwright
    out = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)
        t = time.monotonic()
        page.get_by_role("tab", name="Data").click()
        expect(page.get_by_role("button", name="View key k/000000")).to_be_visible(timeout=30000)
        out["first_page_s"] = round(time.monotonic() - t, 3)
        times = []
        for n in range(1, 11):
            t = time.monotonic()
            page.get_by_role("button", name="Next →").click()
            expect(page.get_by_role("button", name=f"View key k/{n * 50:06d}")).to_be_visible(timeout=30000)
            times.append(time.monotonic() - t)
        out["next_page_s_median"] = round(sorted(times)[len(times) // 2], 3)
        out["next_page_s_max"] = round(max(times), 3)
        t = time.monotonic()
        page.get_by_label("Prefix").fill("k/0999")
        page.get_by_role("button", name="Search").click()
        expect(page.get_by_role("button", name="View key k/099900")).to_be_visible(timeout=30000)
        out["prefix_search_s"] = round(time.monotonic() - t, 3)
        browser.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--connections", type=int, default=64)
    args = ap.parse_args()
    base = tempfile.mkdtemp(prefix="axon-dash-bench-")
    http, raft, gossip = (f"127.0.0.1:{p}" for p in free_ports(3))
    proc = subprocess.Popen([sys.executable, "-m", "axon", "serve", "--node-id", "n1", "--data-dir",
                             os.path.join(base, "n1"), "--http", http, "--raft", raft, "--gossip", gossip,
                             "--bootstrap", "--log-level", "warning"], cwd=os.path.dirname(HERE))
    try:
        client = Client(http, timeout=5, retry_for=0)
        wait_for(lambda: client.status()["state"] == "leader", 30, message="leader")
        result = {"keys": args.keys, "load_s": round(load(http, args.keys, args.connections), 1)}
        result.update(browse(f"http://{http}/"))
        print(json.dumps(result))
        return 0
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

"""Debian's Chromium through Playwright, for the dashboard's browser tests."""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--no-first-run"]


@contextlib.contextmanager
def chromium() -> Iterator[object]:
    """A headless browser; skips the test when Playwright or Chromium is missing."""
    try:
        from playwright import sync_api
    except ImportError:
        pytest.skip("the playwright Python package is not installed (pip install playwright)")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()

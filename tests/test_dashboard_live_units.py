"""The dashboard's pure modules (SSE parser, live page, chart series) under Node's own test
runner: ui/tests/*.test.js.  Skipped where Node is missing."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

import axon

UI_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(axon.__file__))), "ui")


def test_ui_unit_tests_pass() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    tests = sorted(os.path.join("tests", f) for f in os.listdir(os.path.join(UI_DIR, "tests")) if f.endswith(".test.js"))
    assert tests, "no ui/tests/*.test.js"
    proc = subprocess.run([node, "--test", *tests], cwd=UI_DIR, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "# fail 0" in proc.stdout

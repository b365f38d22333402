"""The committed dashboard bundle (axon/static) is exactly what ui/ builds to.

The sources are copied to a temp dir, installed with `npm ci` from the committed
package-lock.json, built into a temp outDir, and compared file by file.  Skipped where
npm is missing; `npm ci` needs the npm registry (or a warm npm cache).
"""
from __future__ import annotations

import filecmp
import os
import shutil
import subprocess

import pytest

import axon

REPO = os.path.dirname(os.path.dirname(os.path.abspath(axon.__file__)))
UI_DIR = os.path.join(REPO, "ui")
STATIC_DIR = os.path.join(REPO, "axon", "static")
SKIP_COPY = shutil.ignore_patterns("node_modules", "dist", ".vite")


def tree(root: str) -> set[str]:
    """Every file under root, as paths relative to it."""
    out = set()
    for dirpath, _dirs, files in os.walk(root):
        out.update(os.path.relpath(os.path.join(dirpath, f), root) for f in files)
    return out


def run(cmd: list[str], cwd: str, timeout: float) -> None:
    proc = subprocess.run(cmd, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def test_ui_sources_are_complete() -> None:
    for name in ("package.json", "package-lock.json", "vite.config.js", "index.html", "src/App.svelte"):
        assert os.path.isfile(os.path.join(UI_DIR, name)), f"ui/{name} is missing"
    assert {"index.html", "assets/app.js", "assets/index.css"} <= tree(STATIC_DIR)


def test_static_bundle_serves_only_relative_same_origin_urls() -> None:
    with open(os.path.join(STATIC_DIR, "index.html"), encoding="utf-8") as f:
        html = f.read()
    assert 'src="/static/assets/app.js"' in html and 'href="/static/assets/index.css"' in html
    with open(os.path.join(STATIC_DIR, "assets", "app.js"), encoding="utf-8") as f:
        js = f.read()
    assert "http://127.0.0.1" not in js and "localhost:" not in js
    assert os.path.getsize(os.path.join(STATIC_DIR, "assets", "app.js")) < 200_000


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not installed (the bundle is prebuilt in axon/static)")
def test_committed_bundle_matches_a_fresh_build(tmp_path) -> None:
    src = tmp_path / "ui"
    out = tmp_path / "out"
    shutil.copytree(UI_DIR, src, ignore=SKIP_COPY)
    run(["npm", "ci", "--no-audit", "--no-fund"], str(src), timeout=600)
    run(["npm", "run", "build", "--", "--outDir", str(out), "--emptyOutDir"], str(src), timeout=300)
    built, committed = tree(str(out)), tree(STATIC_DIR)
    assert built == committed, (f"only in a fresh build: {sorted(built - committed)}; "
                                f"only in axon/static: {sorted(committed - built)}; rebuild: ui/scripts/build.sh")
    _match, mismatch, errors = filecmp.cmpfiles(str(out), STATIC_DIR, sorted(built), shallow=False)
    assert not mismatch and not errors, f"axon/static is stale ({mismatch + errors}); rebuild: ui/scripts/build.sh"

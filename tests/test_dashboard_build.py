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


def assets(suffix: str) -> list[str]:
    return sorted(f for f in tree(STATIC_DIR) if f.startswith("assets/") and f.endswith(suffix))


def test_ui_sources_and_bundle_are_complete() -> None:
    for name in ("package.json", "package-lock.json", "vite.config.js", "index.html", "src/App.svelte"):
        assert os.path.isfile(os.path.join(UI_DIR, name)), f"ui/{name} is missing"
    assert "index.html" in tree(STATIC_DIR)
    assert len(assets(".js")) == 1 and len(assets(".css")) == 1


def test_sources_never_render_raw_html() -> None:
    """Keys and values are untrusted: text interpolation only, never {@html} or innerHTML."""
    for rel in tree(os.path.join(UI_DIR, "src")):
        with open(os.path.join(UI_DIR, "src", rel), encoding="utf-8") as f:
            text = f.read()
        assert "{@html" not in text and "innerHTML" not in text, f"ui/src/{rel} renders raw HTML"


def test_bundle_is_small_and_uses_same_origin_urls_only() -> None:
    with open(os.path.join(STATIC_DIR, "index.html"), encoding="utf-8") as f:
        html = f.read()
    [js], [css] = assets(".js"), assets(".css")
    assert f'src="/static/{js}"' in html and f'href="/static/{css}"' in html
    with open(os.path.join(STATIC_DIR, js), encoding="utf-8") as f:
        code = f.read()
    assert "http://127.0.0.1" not in code and "localhost:" not in code
    total = sum(os.path.getsize(os.path.join(STATIC_DIR, f)) for f in tree(STATIC_DIR))
    assert total < 250_000, f"the dashboard bundle grew to {total} bytes"


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

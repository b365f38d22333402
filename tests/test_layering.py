"""The house's boundaries, read from the imports: data flows web -> api -> raft -> kv.

A module that reaches across a boundary fails here, by name, before it becomes a habit.
"""
from __future__ import annotations

import ast
import os

import axon

ROOT = os.path.dirname(axon.__file__)


def _modules(package: str) -> dict[str, set[str]]:
    """Every module of ``axon.<package>`` -> the axon modules and third-party roots it imports."""
    out = {}
    base = os.path.join(ROOT, package)
    for dirpath, _, files in os.walk(base):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, os.path.dirname(ROOT))[:-3].replace(os.sep, ".")
            with open(path) as f:
                tree = ast.parse(f.read())
            imports = set()
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    imports.update(a.name for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    imports.add(node.module)
            out[rel] = imports
    return out


def _offenders(package: str, forbidden: tuple[str, ...], allowed: tuple[str, ...] = ()) -> list[str]:
    return sorted(f"{mod} imports {imp}" for mod, imps in _modules(package).items() if mod not in allowed
                  for imp in imps if any(imp == f or imp.startswith(f + ".") for f in forbidden))


def test_raft_knows_nothing_above_it():
    assert _offenders("raft", ("axon.api", "axon.web", "axon.kv", "axon.node", "axon.client", "bottle",
                               "http", "axon.launcher", "axon.cli")) == []


def test_kv_imports_raft_types_only_in_its_adapter():
    assert _offenders("kv", ("axon.raft",), allowed=("axon.kv.machine",)) == []
    assert _offenders("kv", ("axon.api", "axon.web", "axon.node", "bottle", "http")) == []


def test_api_knows_no_http():
    assert _offenders("api", ("axon.web", "bottle", "http", "axon.node", "axon.launcher", "axon.cli")) == []


def test_no_status_codes_below_web():
    """An HTTP status (a 3-digit literal 1xx-5xx next to 'status') appears nowhere in api/, raft/, kv/."""
    hits = []
    for package in ("api", "raft", "kv"):
        for dirpath, _, files in os.walk(os.path.join(ROOT, package)):
            for name in (f for f in files if f.endswith(".py")):
                with open(os.path.join(dirpath, name)) as f:
                    tree = ast.parse(f.read())
                for node in ast.walk(tree):
                    if isinstance(node, ast.keyword) and node.arg == "status" \
                            and isinstance(node.value, ast.Constant) and node.value.value in range(100, 600):
                        hits.append(f"{package}/{name}:{node.lineno}")
                    if isinstance(node, ast.Attribute) and node.attr == "status" and isinstance(node.ctx, ast.Store):
                        hits.append(f"{package}/{name}:{node.lineno}")
    assert hits == []


def test_gossip_stands_alone():
    assert _offenders("gossip", ("axon.raft", "axon.api", "axon.web", "axon.kv", "axon.node")) == []

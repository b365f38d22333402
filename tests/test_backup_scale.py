"""A million keys saved from a loaded 3-node cluster, restored, and every key and revision equal."""
from __future__ import annotations

import json
import os
import time

import pytest

from axon.kv.store import Store
from axon.testing.cluster import Cluster
from test_backup import axon_cli, load_keys, restored_node

KEYS = 1_000_000


def _stores_equal(a: str, b: str) -> int:
    """Walk two stores side by side (keys, values, revisions); returns the keys compared."""
    with Store.open(a) as left, Store.open(b) as right:
        after, seen = None, 0
        while True:
            items, nxt = left.scan("", after, 20_000)
            other, _ = right.scan("", after, 20_000)
            assert items == other, f"stores differ after key {after!r}"
            seen += len(items)
            if nxt is None:
                assert right.scan("", items[-1][0] if items else None, 1)[0] == []
                return seen
            after = nxt


@pytest.mark.slow
def test_a_million_keys_saved_restored_equal(tmp_path, capsys) -> None:
    (tmp_path / "old").mkdir()
    timings = {}
    with Cluster(tmp_path / "old", 3) as cluster:
        leader = cluster.leader()
        started = time.monotonic()
        load_keys(leader.http, KEYS, per_txn=128, workers=12)
        timings["load"] = time.monotonic() - started
        snap = str(tmp_path / "million.snap")
        started = time.monotonic()
        saved = axon_cli("snapshot", "save", snap, "--addr", leader.http, "--json", timeout=300)
        timings["save"] = time.monotonic() - started
        assert saved.returncode == 0, saved.stderr
        assert json.loads(saved.stdout)["keys"] == KEYS
        leader.stop()
    started = time.monotonic()
    node = restored_node(tmp_path / "new", "r1", snap)
    timings["restore"] = time.monotonic() - started
    try:
        assert node.client.get("k0999999")["value"] == "v999999"
    finally:
        node.stop()
    compared = _stores_equal(os.path.join(leader.data_dir, "store"), os.path.join(node.data_dir, "store"))
    assert compared == KEYS
    with capsys.disabled():
        print(f"\n1M keys: load {timings['load']:.1f} s, save {timings['save']:.1f} s "
              f"({os.path.getsize(snap) / 1e6:.1f} MB), restore {timings['restore']:.1f} s")

"""Backups: the file format, restore into a new data dir, and `axon snapshot save|restore` against
real node processes (a loaded 3-node cluster, auth on, a damaged file refused)."""
from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from axon.kv.commands import Put, encode_commands
from axon.kv.machine import KVStateMachine
from axon.kv.snapshot_file import SnapshotFileError, SnapshotFileReader, SnapshotHeader, file_chunks
from axon.kv.store import Store
from axon.node.backup import restore, verify_file
from axon.node.datadir import read_cluster_id
from axon.node.recover import RecoverError
from axon.raft.core import encode_config_bytes
from axon.raft.types import ClusterConfig, Entry, EntryKind, Member
from axon.testing.cluster import REPO_ROOT, Cluster, NodeHandle, wait_for

OLD = Member("127.0.0.1:1", "127.0.0.1:2")
NEW = Member("127.0.0.1:11", "127.0.0.1:12")


# ---------------------------------------------------------------- the file, without processes

def _write_backup(tmp_path, keys: int) -> tuple[str, dict[str, tuple[str, int]]]:
    """A store with ``keys`` keys (one entry each 1000) saved as a backup file; its content."""
    with Store.open(str(tmp_path / "source")) as store:
        machine = KVStateMachine(store)
        machine.apply([Entry(1, 1, EntryKind.CONFIG, encode_config_bytes(ClusterConfig(voters={"n1": OLD})))])
        for index, start in enumerate(range(0, keys, 1000), start=2):
            batch = [Put(f"k{i:07d}", f"v{i}") for i in range(start, min(keys, start + 1000))]
            machine.apply([Entry(index, 1, EntryKind.NORMAL, encode_commands(batch))])
        at, stream = store.snapshot_reader(4096)
        header = SnapshotHeader("c" * 32, "n1", at.index, at.term, stream.count(), at.config_blob,
                                "2026-12-04T00:00:00Z")
        path = str(tmp_path / "backup.snap")
        with open(path, "wb") as f:
            for piece in file_chunks(header, stream):
                f.write(piece)
        content, after = {}, None
        while True:
            items, after = store.scan("", after, 1000)
            content.update({k: (v, r) for k, v, r in items})
            if after is None:
                return path, content


def test_restore_writes_a_one_voter_data_dir_with_every_key_and_revision(tmp_path) -> None:
    path, content = _write_backup(tmp_path, 2500)
    header = verify_file(path)
    assert (header.keys, header.node_id, header.cluster_id) == (2500, "n1", "c" * 32)
    data_dir = str(tmp_path / "restored")
    done = restore(path, data_dir, "r1", NEW)
    assert done.revision == header.revision + 1 and done.previous_cluster_id == "c" * 32
    assert read_cluster_id(data_dir) == done.cluster_id != "c" * 32
    assert stat.S_IMODE(os.stat(data_dir).st_mode) == 0o700
    with Store.open(os.path.join(data_dir, "store")) as store:
        assert KVStateMachine(store).config == ClusterConfig(voters={"r1": NEW})
        assert {k: store.get(k) for k in content} == content
        assert store.count() == len(content)


@pytest.mark.parametrize("damage", ["truncated", "flipped-data", "flipped-header", "flipped-checksum",
                                    "extra-byte", "empty"])
def test_a_damaged_file_is_refused_in_one_line_and_writes_nothing(tmp_path, damage) -> None:
    path, _ = _write_backup(tmp_path, 3000)
    data = bytearray(open(path, "rb").read())
    if damage == "truncated":
        del data[len(data) // 2:]
    elif damage == "flipped-data":
        data[len(data) // 2] ^= 0x01
    elif damage == "flipped-header":
        data[30] ^= 0x01
    elif damage == "flipped-checksum":
        data[-1] ^= 0x80
    elif damage == "extra-byte":
        data += b"\0"
    else:
        data = bytearray()
    open(path, "wb").write(data)
    with pytest.raises(SnapshotFileError) as refused:
        verify_file(path)
    message = str(refused.value)
    assert "\n" not in message and ("damaged" in message or "truncated" in message
                                    or "not an Axon snapshot" in message), message
    data_dir = tmp_path / "restored"
    with pytest.raises(SnapshotFileError):
        restore(path, str(data_dir), "r1", NEW)
    assert not data_dir.exists()


def test_restore_refuses_a_data_dir_in_use(tmp_path) -> None:
    path, _ = _write_backup(tmp_path, 10)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "node.json").write_text("{}")
    with pytest.raises(RecoverError, match="not empty"):
        restore(path, str(tmp_path / "taken"), "r1", NEW)


def test_reader_refuses_a_frame_length_past_the_limit() -> None:
    header = SnapshotHeader(None, "n1", 1, 1, 0, None, "t")
    good = b"".join(file_chunks(header, [b"x"]))
    head_len = len(b"".join(file_chunks(header, []))) - 36
    bad = good[:head_len] + (1 << 30).to_bytes(4, "big") + good[head_len + 4:]
    with pytest.raises(SnapshotFileError, match="over"):
        SnapshotFileReader(io.BytesIO(bad)).verify()


# ---------------------------------------------------------------- real processes

def axon_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=REPO_ROOT)
    env.pop("AXON_TOKEN", None)
    return subprocess.run([sys.executable, "-m", "axon", *args], cwd=REPO_ROOT, env=env, text=True,
                          capture_output=True, timeout=timeout)


def load_keys(addr: str, count: int, token: str | None = None, per_txn: int = 128,
              workers: int = 16) -> None:
    """``count`` small keys "k0000000"... as transactions of ``per_txn`` puts, concurrently."""
    from axon.client import Client
    from axon.client.http import HttpPool
    pool = HttpPool(timeout=30)

    def txn(start: int) -> None:
        client = Client(addr, timeout=30, pool=pool, token=token, retry_for=0)
        ops = [{"op": "put", "key": f"k{i:07d}", "value": f"v{i}"} for i in range(start, min(count, start + per_txn))]
        client.call("POST", "/txn", {"compare": [], "success": ops, "failure": []})

    with ThreadPoolExecutor(workers) as executor:
        list(executor.map(txn, range(0, count, per_txn)))


def every_key(node: NodeHandle, token: str | None = None, stale: bool = False) -> dict[str, tuple[str, int]]:
    from axon.client import Client
    client = Client(node.http, timeout=30, pool=node.pool, token=token, retry_for=0)
    content, after = {}, None
    while True:
        page = client.list_page("", 1000, after, stale=stale)
        content.update({item["key"]: (item["value"], item["revision"]) for item in page["items"]})
        after = page["next"]
        if after is None:
            return content


def restored_node(base, node_id: str, snap: str, token: str | None = None) -> NodeHandle:
    """A node whose data dir `axon snapshot restore` writes from ``snap``; started and serving."""
    os.makedirs(base, exist_ok=True)
    node = NodeHandle(str(base), node_id, token=token)
    done = axon_cli("snapshot", "restore", snap, "--node-id", node_id, "--data-dir", node.data_dir,
                    "--http", node.http, "--raft", node.raft, "--gossip", node.gossip, "--json")
    assert done.returncode == 0, done.stderr
    node.start()
    node.wait_serving()
    wait_for(lambda: node.status()["state"] == "leader", 20, message="the restored node to lead", nodes=[node])
    return node


def test_save_from_a_follower_restore_and_join(tmp_path) -> None:
    (tmp_path / "old").mkdir()
    with Cluster(tmp_path / "old", 3) as cluster:
        leader = cluster.leader()
        load_keys(leader.http, 3000)
        follower = next(n for n in cluster.nodes if n is not leader)
        snap = str(tmp_path / "backup.snap")
        saved = axon_cli("snapshot", "save", snap, "--addr", follower.http, "--json")
        assert saved.returncode == 0, saved.stderr
        report = json.loads(saved.stdout)
        assert report["keys"] == 3000
        assert stat.S_IMODE(os.stat(snap).st_mode) == 0o600
        before = every_key(leader)
        old_id = leader.status()["cluster_id"]
    checked = axon_cli("snapshot", "check", snap)
    assert checked.returncode == 0 and "3000 keys" in checked.stdout
    new = Cluster(tmp_path / "new", 0)
    try:
        node = restored_node(tmp_path / "new", "r1", snap)
        new.nodes.append(node)
        assert node.status()["cluster_id"] not in (None, old_id)
        assert every_key(node) == before
        node.client.put("after", "restore")
        joiner = new.add_node([node.http], node_id="r2")
        new.wait_converged()
        assert every_key(joiner) == {**before, "after": every_key(node)["after"]}
    finally:
        new.close()


def test_save_needs_admin_when_auth_is_on(tmp_path) -> None:
    with Cluster(tmp_path, 1, extra_args=["--auth"]) as cluster:
        node = cluster.nodes[0]
        root = node.harness_token()
        from axon.client import Client
        admin = Client(node.http, token=root, retry_for=0)
        reader = admin.call("POST", "/auth/tokens", {"name": "r", "role": "read", "prefix": ""}, ok=(201,))
        admin.put("a", "1")
        snap = str(tmp_path / "s.snap")
        anonymous = axon_cli("snapshot", "save", snap, "--addr", node.http)
        assert anonymous.returncode == 1 and "HTTP 401" in anonymous.stderr
        refused = axon_cli("snapshot", "save", snap, "--addr", node.http, "--token", reader["token"])
        assert refused.returncode == 1 and "HTTP 403" in refused.stderr
        assert not os.path.exists(snap) and not os.path.exists(snap + ".part")
        saved = axon_cli("snapshot", "save", snap, "--addr", node.http, "--token", root)
        assert saved.returncode == 0, saved.stderr
    # the auth state travels with the data: the root token still opens the restored node
    node = restored_node(tmp_path / "restored", "r1", snap, token=root)
    try:
        assert Client(node.http, token=root, retry_for=0).get("a")["value"] == "1"
        assert Client(node.http, token=reader["token"], retry_for=0).get("a")["value"] == "1"
    finally:
        node.kill()


def test_cli_refuses_a_damaged_file_in_one_line(tmp_path) -> None:
    path, _ = _write_backup(tmp_path, 100)
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0x10
    open(path, "wb").write(data)
    done = axon_cli("snapshot", "restore", path, "--node-id", "r1", "--data-dir", str(tmp_path / "d"))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == "error: damaged snapshot file: SHA-256 checksum mismatch"
    assert not (tmp_path / "d").exists()


# ---------------------------------------------------------------- the route, in process

def test_route_streams_a_checked_file_and_holds_at_most_two_streams(tmp_path) -> None:
    from axon.api.errors import Unavailable
    from axon.web.maintenance import MAX_STREAMS, maintenance_routes
    from axon.web.wire import Request
    waited = []
    with Store.open(str(tmp_path / "s")) as store:
        KVStateMachine(store).apply([Entry(1, 1, EntryKind.NORMAL, encode_commands([Put("a", "1")]))])
        [route] = maintenance_routes(store, lambda index, timeout: waited.append(index), 5.0,
                                     lambda req: 2, "n1", lambda: "c" * 32)
        request = Request("GET", "/maintenance/snapshot", "", "HTTP/1.1", {}, b"", True)
        held = [route.endpoint(request) for _ in range(MAX_STREAMS)]
        with pytest.raises(Unavailable, match="retry later"):
            route.endpoint(request)
        assert waited == [1, 1, 1]   # each waited for the leader's read index to be applied here
        answer = held.pop()
        assert dict(answer.headers)["X-Axon-Keys"] == "1" and dict(answer.headers)["X-Axon-Revision"] == "1"
        data = b"".join(answer.stream)
        answer.stream.close()
        reader = SnapshotFileReader(io.BytesIO(data))
        assert (reader.header.keys, reader.header.cluster_id, reader.verify()) == (1, "c" * 32, len(data))
        again = route.endpoint(request)   # a closed stream gave its slot back
        for answer in (*held, again):
            answer.stream.close()

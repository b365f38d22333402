"""A full disk, for real: each node's data dir on a small tmpfs this test mounts.

Past the free-space floor the cluster refuses writes with 507 and an alarm, keeps serving
reads and deletes, and takes writes again once space is back.  With no floor at all, a
write that meets ENOSPC makes the node wait for space instead of exiting, and no
acknowledged write is lost.
"""
from __future__ import annotations

import errno
import os
import subprocess
import sys
from typing import Iterator

import pytest

from axon.client.http import ClientError
from axon.testing.cluster import REPO_ROOT, Cluster, wait_for

pytestmark = pytest.mark.slow
MiB = 1 << 20


def _mount_tmpfs(path: str, size: int) -> bool:
    os.makedirs(path, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", path],
                          capture_output=True)
    return done.returncode == 0


@pytest.fixture
def small_disks(tmp_path) -> Iterator[callable]:
    """mount(node_id, size): a tmpfs of ``size`` bytes as that node's data dir; unmounted after."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted: list[str] = []

    def mount(node_id: str, size: int) -> str:
        path = str(tmp_path / node_id)
        if not _mount_tmpfs(path, size):
            pytest.skip("cannot mount a tmpfs here")
        mounted.append(path)
        return path

    yield mount
    for path in mounted:
        subprocess.run(["umount", "-l", path], capture_output=True)


def _fill(directory: str, leave: int = 0) -> str:
    """Write a ballast file until only ``leave`` bytes are free (0: until ENOSPC); its path."""
    path = os.path.join(directory, "ballast")
    chunk = b"\0" * MiB
    with open(path, "wb") as f:
        while True:
            st = os.statvfs(directory)
            free = st.f_bavail * st.f_frsize - leave
            if free <= 0:
                break
            try:
                f.write(chunk[:min(len(chunk), free)])
                f.flush()
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
    return path


def _put_status(node, key: str, value: str) -> int:
    try:
        node.client.put(key, value)
        return 200
    except ClientError as exc:
        return exc.status


def _alarms(node) -> list:
    status = node.try_status()
    return status.get("alarms", []) if status else []


def test_past_the_floor_writes_get_507_reads_and_deletes_work_and_space_back_clears(tmp_path, small_disks):
    for node_id in ("n1", "n2", "n3"):
        small_disks(node_id, 64 * MiB)
    with Cluster(tmp_path, n=3, extra_args=["--min-free-bytes", str(24 * MiB),
                                            "--snapshot-bytes", str(4 * MiB)]) as cluster:
        leader = cluster.leader()
        for i in range(20):
            leader.client.put(f"k{i}", f"v{i}")
        follower = next(n for n in cluster.nodes if n is not leader)
        ballast = _fill(follower.data_dir, leave=16 * MiB)   # under the floor on a follower only

        # the follower raises the alarm, gossip carries it, and the leader refuses writes for all
        wait_for(lambda: _alarms(follower) == ["nospace"], 10)
        wait_for(lambda: _put_status(leader, "new", "x") == 507, 10)
        with pytest.raises(ClientError) as refused:
            follower.client.put("new", "x")
        assert refused.value.status == 507 and "nospace" in refused.value.body["error"]
        assert "nospace" in leader.client.call("GET", "/cluster/overview")["alarms"]
        out = subprocess.run([sys.executable, "-m", "axon", "status", "--addr", follower.http],
                             capture_output=True, text=True, cwd=REPO_ROOT, timeout=30)
        assert "ALARM nospace" in out.stdout, out.stdout + out.stderr

        assert leader.client.get("k1")["value"] == "v1"            # reads go on
        leader.client.delete("k2")                                  # deletes go on
        result = leader.client.call("POST", "/txn", {"compare": [], "success": [
            {"op": "delete", "key": "k3"}], "failure": []})         # so do txns without puts
        assert result["succeeded"]
        with pytest.raises(ClientError) as txn_put:
            leader.client.call("POST", "/txn", {"compare": [], "success": [
                {"op": "put", "key": "k4", "value": "w"}], "failure": []})
        assert txn_put.value.status == 507

        os.remove(ballast)
        wait_for(lambda: _alarms(follower) == [], 10)
        wait_for(lambda: _put_status(leader, "new", "y") == 200, 15)
        assert all(node.running for node in cluster.nodes)
        assert leader.client.get("k2") is None   # deleted while the alarm was raised
        assert leader.client.get("new")["value"] == "y"


def test_enospc_waits_for_space_and_loses_no_acknowledged_write(tmp_path, small_disks):
    for node_id in ("n1", "n2", "n3"):
        small_disks(node_id, 48 * MiB)
    with Cluster(tmp_path, n=3, extra_args=["--min-free-bytes", "0",
                                            "--snapshot-bytes", str(4 * MiB)]) as cluster:
        leader = cluster.leader()
        acknowledged = {}
        for i in range(50):
            leader.client.put(f"k{i}", f"v{i}")
            acknowledged[f"k{i}"] = f"v{i}"
        ballasts = [_fill(node.data_dir) for node in cluster.nodes]    # no room left anywhere

        big = "z" * (256 * 1024)
        for i in range(8):   # writes now meet ENOSPC in the WAL or LevelDB: refused or timed out
            status = _put_status(leader, f"late{i}", big)
            if status == 200:
                acknowledged[f"late{i}"] = big
            elif _alarms(leader) == ["nospace"]:
                break
        wait_for(lambda: _alarms(leader) == ["nospace"], 20)
        assert all(node.running for node in cluster.nodes), "a node exited on ENOSPC"
        assert "waiting for space" in leader.log_text()   # it met ENOSPC, not just a reading

        for path in ballasts:
            os.remove(path)
        wait_for(lambda: all(_alarms(node) == [] for node in cluster.nodes), 20)
        leader = cluster.leader(timeout=30)
        wait_for(lambda: _put_status(leader, "after", "ok") == 200, 30)
        assert all(node.running for node in cluster.nodes), "a node exited on ENOSPC"
        for key, value in acknowledged.items():
            assert leader.client.get(key)["value"] == value
        cluster.wait_converged()


def test_store_refuses_writes_after_enospc_until_reopened_and_loses_nothing(tmp_path, small_disks):
    """LevelDB refuses every write after one failed for lack of space; reopen() brings it back."""
    from axon.kv.commands import Put, encode_commands
    from axon.kv.store import Slot, Store, StoreError
    from axon.node.disk import is_nospace

    disk = small_disks("store", 16 * MiB)
    store = Store.open(os.path.join(disk, "db"))
    try:
        big = "x" * (512 * 1024)
        store.apply([Slot(1, 1, commands=encode_commands([Put("kept", "v")]))])
        ballast = _fill(disk)
        index, failed = 2, None
        for index in range(2, 200):   # LevelDB buffers a little: write until the disk says no
            try:
                store.apply([Slot(index, 1, commands=encode_commands([Put(f"k{index}", big)]))])
            except StoreError as exc:
                failed = exc
                break
        assert failed is not None and is_nospace(failed)
        assert store.applied_index == index - 1          # the failed batch left nothing behind
        os.remove(ballast)
        store.reopen()
        store.apply([Slot(index, 1, commands=encode_commands([Put(f"k{index}", "again")]))])
        assert store.get(f"k{index}") == ("again", index)
        assert store.get("kept") == ("v", 1)
    finally:
        store.close()

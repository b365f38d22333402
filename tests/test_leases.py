"""Leases on real node processes: grant, attach, keepalive, expiry seen by a watcher, revoke in
one revision, a leader's crash that must not expire a lease early, a whole-cluster restart."""
from __future__ import annotations

import json
import os
import queue
import threading
import time
from typing import Iterator

import pytest

from axon.client import Client
from axon.client.http import ClientError
from axon.testing.cluster import Cluster, wait_for

pytestmark = pytest.mark.slow

TTL = 3
ELECTION = 1.0   # the longest election timeout with the default flags


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("leases"), n=3)
    try:
        yield c
    finally:
        c.close()


class Watcher:
    """A client watch (resuming across nodes) read by a thread into a queue."""

    def __init__(self, node, prefix: str, from_revision: int) -> None:
        self.client = Client([node.http], timeout=5.0)
        self.events: queue.Queue = queue.Queue()
        self.stream = self.client.watch(prefix=prefix, from_revision=from_revision)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for event in self.stream:
                self.events.put(event)
        except Exception:   # closed under us
            pass

    def changes(self, count: int, timeout: float = 10.0) -> list[tuple[str, str, str | None, int]]:
        deadline = time.monotonic() + timeout
        out = []
        for _ in range(count):
            e = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            out.append((e.kind, e.key, e.value, e.revision))
        return out

    def close(self) -> None:
        self.client.close()


def client_of(cluster: Cluster) -> Client:
    return Client([n.http for n in cluster.running()], timeout=5.0)


def grant(cluster: Cluster, ttl: int = TTL) -> int:
    return cluster.leader().client.call("POST", "/leases", {"ttl": ttl}, ok=(201,))["id"]


def keepalive(cluster: Cluster, lease_id: int) -> dict:
    return cluster.leader().client.call("POST", f"/leases/{lease_id}/keepalive")


def test_keepalives_keep_keys_past_the_ttl_and_without_them_a_watcher_sees_the_deletes(cluster) -> None:
    lease_id = grant(cluster)
    follower = next(n for n in cluster.nodes if n is not cluster.leader())
    for key in ("e/a", "e/b"):
        revision = follower.client.call("PUT", f"/kv/{key}?lease={lease_id}", {"value": "1"})["revision"]
    watcher = Watcher(follower, "e/", revision + 1)
    try:
        end = time.monotonic() + 2 * TTL
        while time.monotonic() < end:
            stopped = time.monotonic()          # the last keepalive sent
            assert keepalive(cluster, lease_id) == {"id": lease_id, "ttl": TTL}
            time.sleep(TTL / 3)
        assert follower.client.get("e/a")["value"] == "1"
        deletes = watcher.changes(2, timeout=TTL + 3 * ELECTION)
        gone_after = time.monotonic() - stopped
        assert [(kind, key) for kind, key, _, _ in deletes] == [("delete", "e/a"), ("delete", "e/b")]
        assert deletes[0][3] == deletes[1][3]                       # one revision, one entry
        assert TTL - 0.5 <= gone_after <= TTL + 2 * ELECTION, gone_after
        with pytest.raises(ClientError) as err:
            keepalive(cluster, lease_id)
        assert err.value.status == 404
    finally:
        watcher.close()


def test_revoke_deletes_every_key_at_one_revision_and_reputs_detach(cluster) -> None:
    lease_id = grant(cluster, 30)
    node = cluster.nodes[0]
    for key in ("r/a", "r/b", "r/c"):
        node.client.call("PUT", f"/kv/{key}?lease={lease_id}", {"value": "1"})
    node.client.put("r/c", "kept")                                   # detached by a put without a lease
    txn = node.client.call("POST", "/txn", {
        "compare": [{"key": "r/d", "exists": False}],
        "success": [{"op": "put", "key": "r/d", "value": "1", "lease": lease_id}]})
    assert txn["succeeded"]
    shown = node.client.call("GET", f"/leases/{lease_id}")
    assert shown["keys"] == ["r/a", "r/b", "r/d"] and shown["ttl"] == 30 and 0 < shown["remaining"] <= 30
    watcher = Watcher(node, "r/", txn["revision"] + 1)
    try:
        answer = node.client.call("DELETE", f"/leases/{lease_id}")
        deletes = watcher.changes(3)
        assert {key for _, key, _, _ in deletes} == {"r/a", "r/b", "r/d"}
        assert {rev for *_, rev in deletes} == {answer["revision"]}
    finally:
        watcher.close()
    assert node.client.get("r/c")["value"] == "kept"
    with pytest.raises(ClientError) as err:
        node.client.call("PUT", f"/kv/r/x?lease={lease_id}", {"value": "1"})
    assert err.value.status == 404 and "lease not found" in err.value.body["error"]


def test_bad_lease_requests_are_4xx(cluster) -> None:
    node = cluster.nodes[1]
    for method, path, body, status in [("POST", "/leases", {"ttl": 0}, 400), ("POST", "/leases", {"ttl": 10 ** 9}, 400),
                                       ("POST", "/leases", {"tt": 5}, 400), ("GET", "/leases/zz", None, 400),
                                       ("GET", "/leases/12345", None, 404), ("DELETE", "/leases/12345", None, 404),
                                       ("POST", "/leases/12345/keepalive", None, 404)]:
        with pytest.raises(ClientError) as err:
            node.client.call(method, path, body)
        assert err.value.status == status, (method, path, err.value.body)


def test_the_client_lease_keeps_itself_alive_and_revokes_on_exit(cluster) -> None:
    with client_of(cluster) as c:
        with c.lease(TTL) as lease:
            assert lease.ttl == TTL
            c.put("c/a", "1", lease=lease)
            time.sleep(2 * TTL)
            assert c.get("c/a")["value"] == "1" and lease.valid
        assert c.get("c/a") is None


def test_a_leader_crash_restarts_the_ttl_in_full(cluster) -> None:
    ttl = 6
    lease_id = grant(cluster, ttl)
    cluster.leader().client.call("PUT", f"/kv/f/a?lease={lease_id}", {"value": "1"})
    time.sleep(ttl - 2)              # 2 s left on the old leader when it dies
    old = cluster.leader()
    old.kill()
    killed = time.monotonic()
    try:
        new = cluster.leader(among=[n for n in cluster.nodes if n is not old])
        shown = new.client.call("GET", f"/leases/{lease_id}")
        assert shown["remaining"] > ttl - (time.monotonic() - killed) - 0.5, shown
        # still there after the old deadline, gone within a TTL of the new leader's start
        time.sleep(max(0.0, killed + 3 - time.monotonic()))
        assert new.client.get("f/a")["value"] == "1"
        wait_for(lambda: new.client.call("GET", "/kv?prefix=f/")["items"] == [], timeout=ttl + 4 * ELECTION)
    finally:
        old.start()
        old.wait_serving()


def test_leases_survive_a_restart_of_the_whole_cluster(cluster) -> None:
    lease_id = grant(cluster, 30)
    cluster.leader().client.call("PUT", f"/kv/s/a?lease={lease_id}", {"value": "1"})
    cluster.wait_converged()
    for node in cluster.nodes:
        node.stop()
    for node in cluster.nodes:
        node.start()
    for node in cluster.nodes:
        node.wait_serving()
    leader = cluster.leader()
    shown = wait_for(lambda: _show(leader, lease_id), timeout=20)
    assert shown["keys"] == ["s/a"] and shown["remaining"] > 25
    leader.client.call("DELETE", f"/leases/{lease_id}")
    assert leader.client.call("GET", "/kv?prefix=s/")["items"] == []


def _show(node, lease_id: int) -> dict | None:
    try:
        return node.client.call("GET", f"/leases/{lease_id}")
    except ClientError:
        return None


def test_lease_auth_needs_write_and_revoking_needs_write_on_each_key(tmp_path) -> None:
    c = Cluster(tmp_path, n=1)
    try:
        node = c.nodes[0]
        root = node.client.auth_enable()["token"]
        with Client(node.http, token=root, retry_for=0) as admin:
            writer = {"Authorization": f"Bearer {admin.token_create('w', 'write', 'app/')['token']}"}
            reader = {"Authorization": f"Bearer {admin.token_create('r', 'read', 'app/')['token']}"}
        mine = node.client.call("POST", "/leases", {"ttl": 30}, headers=writer, ok=(201,))["id"]
        node.client.call("PUT", f"/kv/app/x?lease={mine}", {"value": "1"}, headers=writer)
        node.client.call("POST", f"/leases/{mine}/keepalive", headers=writer)
        theirs = node.client.call("POST", "/leases", {"ttl": 30}, headers={"Authorization": f"Bearer {root}"},
                                  ok=(201,))["id"]
        node.client.call("PUT", f"/kv/other?lease={theirs}", {"value": "1"}, headers={"Authorization": f"Bearer {root}"})
        for method, path, headers, status in [("POST", "/leases", reader, 403), ("POST", "/leases", {}, 401),
                                              ("DELETE", f"/leases/{theirs}", writer, 403),
                                              ("GET", f"/leases/{theirs}", writer, 403)]:
            with pytest.raises(ClientError) as err:
                node.client.call(method, path, {"ttl": 30} if method == "POST" else None, headers=headers)
            assert err.value.status == status, (method, path)
        node.client.call("DELETE", f"/leases/{mine}", headers=writer)
        assert json.dumps(node.client.call("GET", "/kv?prefix=app/", headers=writer)["items"]) == "[]"
    finally:
        c.close()


def test_the_cli_grants_attaches_keeps_alive_shows_and_revokes(cluster) -> None:
    from click.testing import CliRunner

    from axon.cli.main import cli

    addr = ["--addr", ",".join(n.http for n in cluster.nodes)]

    def run(*args: str):
        return CliRunner().invoke(cli, [*args, *addr], prog_name="axon", env={})

    granted = run("lease", "grant", "20", "--json")
    assert granted.exit_code == 0, granted.output
    lease_id = str(json.loads(granted.output)["id"])
    put = CliRunner().invoke(cli, ["kv", "put", "cli/a", "1", "--lease", lease_id, "--addr", cluster.nodes[0].http],
                             prog_name="axon", env={})
    assert put.exit_code == 0, put.output
    kept = run("lease", "keepalive", lease_id, "--once")
    assert kept.exit_code == 0 and "s left" in kept.output, kept.output
    shown = run("lease", "show", lease_id)
    assert shown.exit_code == 0 and "cli/a" in shown.output
    revoked = run("lease", "revoke", lease_id)
    assert revoked.exit_code == 0 and "1 key(s) deleted" in revoked.output
    for args in (("lease", "show", lease_id), ("lease", "keepalive", lease_id), ("lease", "revoke", lease_id),
                 ("lease", "grant", "0.5")):
        result = run(*args)
        assert result.exit_code != 0 and result.output.count("\n") == 1 and "error:" in result.output, result.output


def test_the_client_keepalive_thread_survives_the_loss_of_its_node(cluster) -> None:
    first = cluster.nodes[0]
    with Client([n.http for n in cluster.nodes], timeout=3.0) as c:
        lease = c.lease(TTL)
        try:
            c.put("fo/a", "1", lease=lease)
            first.kill()
            time.sleep(3 * TTL)
            assert lease.valid, lease.lost_reason
            assert c.get("fo/a")["value"] == "1"
        finally:
            first.start()
            first.wait_serving()
            lease.revoke()
        assert c.get("fo/a") is None


def test_a_follower_brought_up_to_date_by_a_snapshot_gets_the_leases(tmp_path) -> None:
    from axon.kv.store import Store

    with Cluster(tmp_path, n=3, extra_args=["--snapshot-bytes", str(1 << 20)]) as c:
        leader = c.leader()
        lease_id = leader.client.call("POST", "/leases", {"ttl": 600}, ok=(201,))["id"]
        leader.client.call("PUT", f"/kv/snap/a?lease={lease_id}", {"value": "1"})
        follower = next(n for n in c.nodes if n is not leader)
        follower.stop()
        for i in range(1500):   # past the 1,000 entries the leader keeps: the follower needs a snapshot
            leader.client.put(f"fill/{i % 50}", "x" * 4096)
        follower.start()
        follower.wait_serving()
        c.wait_converged()
        assert "installed" in follower.log_text()     # "snapshot at index N installed"
        follower.stop()
        with Store.open(os.path.join(follower.data_dir, "store")) as store:
            assert store.leases.to_obj() == [[lease_id, 600, ["snap/a"]]]
        follower.start()
        follower.wait_serving()

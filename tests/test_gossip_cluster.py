"""Gossip on real processes: --seed alone forms a cluster; failure detection; reaping; CLI."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from axon.testing.cluster import REPO_ROOT, Cluster, NodeHandle

pytestmark = pytest.mark.slow


def member_status(node: NodeHandle) -> dict[str, str]:
    return {m["node_id"]: m["status"] for m in node.client.members()}


def seeded_cluster(tmp_path, n: int, extra: tuple[str, ...] = ()) -> Cluster:
    """Node 1 bootstraps; every other node gets only --seed (no --join)."""
    cluster = Cluster(tmp_path, n=0, extra_args=extra)
    first = cluster.new_node()
    first.start(bootstrap=True)
    first.wait_serving()
    for _ in range(n - 1):
        cluster.new_node().start(extra_args=["--seed", first.gossip])
    cluster.wait_voters([node.node_id for node in cluster.nodes], timeout=60)
    return cluster


def test_seed_only_nodes_form_one_cluster_and_failures_are_seen(tmp_path):
    cluster = seeded_cluster(tmp_path, 5)
    try:
        ids = sorted(node.node_id for node in cluster.nodes)
        cluster.wait_for(lambda: all(member_status(node) == {i: "alive" for i in ids}
                                     for node in cluster.nodes),
                         timeout=30, message="every node sees all five alive")
        leader = cluster.leader()
        leader.client.put("seeded", "yes")
        victim = next(node for node in cluster.nodes if node is not leader)
        victim.kill()
        others = [node for node in cluster.nodes if node is not victim]
        cluster.wait_for(lambda: all(member_status(node)[victim.node_id] == "dead" for node in others),
                         timeout=45, message=f"{victim.node_id} marked dead everywhere")
        status = leader.client.status()
        online = {entry["node_id"]: entry["online"] for entry in status["nodes"]}
        assert online[victim.node_id] is False
        assert victim.node_id in status["voters"], "a dead node stays a voter without --reap-dead-after"
        victim.start()
        cluster.wait_for(lambda: all(member_status(node)[victim.node_id] == "alive"
                                     for node in cluster.nodes if node.running),
                         timeout=45, message=f"{victim.node_id} alive again everywhere")
        cluster.wait_for(lambda: victim.client.get("seeded", stale=True)["value"] == "yes",
                         timeout=20, message="restarted node caught up")
    finally:
        cluster.close()


def test_reap_dead_after_removes_a_dead_voter_but_never_below_three(tmp_path):
    cluster = seeded_cluster(tmp_path, 4, extra=("--reap-dead-after", "2"))
    try:
        leader = cluster.leader()
        first, second = [node for node in cluster.nodes if node is not leader][:2]
        first.kill()
        survivors = [n.node_id for n in cluster.nodes if n is not first]
        cluster.wait_voters(survivors, timeout=60, among=[leader])
        second.kill()
        # Detection plus the reap delay is well under this; the voter must still be there after it.
        cluster.wait_for(lambda: member_status(leader)[second.node_id] == "dead", timeout=45,
                         message=f"{second.node_id} dead")
        remaining = [n for n in cluster.nodes if n.running]
        cluster.wait_for(lambda: leader.client.put("after", "reap")["revision"] > 0, timeout=20,
                         message="writes still commit with 2 of 3 voters")
        assert second.node_id in leader.client.status()["voters"]
        assert len(remaining) == 2
    finally:
        cluster.close()


def test_members_and_status_commands(tmp_path):
    cluster = seeded_cluster(tmp_path, 3)
    try:
        node = cluster.nodes[0]
        cluster.wait_for(lambda: len([s for s in member_status(node).values() if s == "alive"]) == 3,
                         timeout=30, message="three alive members")

        def axon(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run([sys.executable, "-m", "axon", *args, "--addr", node.http],
                                  cwd=REPO_ROOT, capture_output=True, text=True, timeout=30)
        table = axon("members")
        assert table.returncode == 0, table.stderr
        assert table.stdout.splitlines()[0].split()[:2] == ["NODE_ID", "STATUS"]
        assert sum("alive" in line for line in table.stdout.splitlines()) == 3
        as_json = json.loads(axon("members", "--json").stdout)
        assert {m["node_id"] for m in as_json} == {n.node_id for n in cluster.nodes}
        status = json.loads(axon("status", "--json").stdout)
        assert status["leader"] and len(status["voters"]) == 3
        assert all(entry["online"] for entry in status["nodes"])
        missing = axon("remove", "no-such-node")
        assert missing.returncode != 0 and missing.stderr.count("\n") == 1
    finally:
        cluster.close()

"""`axon recover --force-new-cluster`: two of three nodes lost for good, the third becomes a
one-voter cluster, two fresh nodes join it, and every acknowledged write is there."""
from __future__ import annotations

import json
import threading

from axon.client import Client
from axon.client.http import ClientError, HttpPool
from axon.testing.cluster import Cluster
from test_backup import axon_cli, every_key


def _writer(addr: str, name: str, acked: dict[str, str], stop: threading.Event) -> None:
    """Put name/0, name/1, ... until stopped; records each write the cluster acknowledged."""
    client = Client(addr, timeout=2, pool=HttpPool(timeout=2), retry_for=0)
    n = 0
    while not stop.is_set():
        key, value = f"{name}/{n:06d}", f"v{n}"
        try:
            client.put(key, value)
            acked[key] = value
        except ClientError:
            pass   # not acknowledged: it may or may not be there after the recovery
        n += 1


def test_recover_from_the_survivor_of_a_lost_quorum(tmp_path) -> None:
    with Cluster(tmp_path, 3) as cluster:
        leader = cluster.leader()
        followers = [n for n in cluster.nodes if n is not leader]
        acked: dict[str, str] = {}
        stop = threading.Event()
        writers = [threading.Thread(target=_writer, args=(leader.http, f"w{i}", acked, stop)) for i in range(4)]
        for t in writers:
            t.start()
        try:
            cluster.wait_for(lambda: len(acked) >= 300, 60, message="300 acknowledged writes")
            for node in followers:   # lost for good, while the writes go on
                node.kill()
            # the writers keep trying for a moment: nothing more can be acknowledged
            cluster.wait_for(lambda: leader.status()["state"] != "leader", 20, message="the leader to step down")
            leader.kill()
        finally:
            stop.set()
            for t in writers:
                t.join()

        survivor = leader
        survivor.start()   # running: recover must refuse its data dir
        survivor.wait_serving()
        busy = axon_cli("recover", "--data-dir", survivor.data_dir, "--force-new-cluster")
        assert busy.returncode == 1
        assert "is in use: stop the node that runs on it first" in busy.stderr.strip().splitlines()[-1]
        survivor.stop()

        asked = axon_cli("recover", "--data-dir", survivor.data_dir)
        assert asked.returncode == 1 and "pass --force-new-cluster" in asked.stderr
        old_id = json.load(open(f"{survivor.data_dir}/node.json"))["cluster_id"]
        done = axon_cli("recover", "--data-dir", survivor.data_dir, "--force-new-cluster", "--json")
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert report["previous_cluster_id"] == old_id != report["cluster_id"]
        assert sorted(report["removed_members"]) == sorted(n.node_id for n in followers)

        survivor.start()   # its usual flags: no --bootstrap, no --join
        cluster.wait_for(lambda: survivor.status()["state"] == "leader", 20, message="the survivor to lead")
        assert survivor.status()["cluster_id"] == report["cluster_id"]
        survivor.client.put("after", "recovery")
        fresh = [cluster.add_node([survivor.http], node_id=f"f{i}") for i in (1, 2)]
        cluster.wait_voters([survivor.node_id, "f1", "f2"], among=[survivor, *fresh])
        cluster.wait_converged(among=[survivor, *fresh])
        for node in (survivor, *fresh):
            content = {k: v for k, (v, _) in every_key(node, stale=True).items()}
            missing = {k for k in acked if content.get(k) != acked[k]}
            assert not missing, f"{node.node_id} lost acknowledged writes: {sorted(missing)[:5]}"
            assert content["after"] == "recovery"
        assert len(acked) >= 300

"""Who may join: proof of the cluster key, the cluster id, and the refusals both sides log.

In-process first (the web chain, the joiner and the cluster id without sockets), then real
node processes: keyed clusters, nodes with a wrong key or none, a replayed join, and a node
of another cluster pointed at this one.
"""
from __future__ import annotations

import json
import logging
import os
import stat
import time

import pytest

from axon import keys
from axon.api.admission import join_key, make_proof
from axon.api.validate import JoinRequest
from axon.client import Client
from axon.config import ConfigError
from axon.node.cluster_id import ClusterId
from axon.node.datadir import NODE_FILE, claim_data_dir
from axon.node.joiner import Joiner
from axon.testing.cluster import Cluster, NodeHandle, free_ports, wait_for
from axon.testing.fake_raft import FakeRaftNode
from axon.testing.inprocess import api_cluster

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
CID = "00112233445566778899aabbccddeeff"
N4 = JoinRequest("n4", "10.0.0.4:7001", "10.0.0.4:7000", "10.0.0.4:7002")
ABSENT_FOR = 3.0        # how long a refused node is watched not to appear
NO_KEY_WARNING = "no cluster key: peer traffic is neither authenticated nor encrypted; fine on loopback only"


def join_body(req: JoinRequest, key: bytes | None = KEY) -> bytes:
    data: dict = {"node_id": req.node_id, "raft": req.raft, "http": req.http, "gossip": req.gossip}
    if req.cluster_id is not None:
        data["cluster_id"] = req.cluster_id
    if key is not None:
        data["proof"] = make_proof(join_key(key), req)
    return json.dumps(data).encode()


def answer(resp) -> tuple[int, dict]:
    return resp.status, json.loads(resp.body)


# ---------------------------------------------------------------------- the web chain, in-process
def test_a_join_through_a_follower_reaches_the_leader_unchanged_and_is_judged_there() -> None:
    nodes = api_cluster(cluster_key=KEY, cluster_id=CID)
    body = join_body(N4)
    status, data = answer(nodes["n3"].call("POST", "/cluster/join", body=body))
    assert (status, data["status"], data["cluster_id"]) == (202, "learner", CID)
    assert nodes["n1"].net.sent[-1].body == body          # forwarded as the joiner sent it
    assert [(c.op, c.node_id) for c in nodes["n1"].raft.changes] == [("add_learner", "n4")]
    status, data = answer(nodes["n2"].call("POST", "/cluster/join", body=body))   # the same proof again
    assert status == 403 and data["error"].startswith("join refused: ") and "used before" in data["error"]


@pytest.mark.parametrize("key", [None, OTHER_KEY])
def test_a_join_without_proof_of_the_key_is_403_and_adds_nobody(key: bytes | None) -> None:
    nodes = api_cluster(cluster_key=KEY, cluster_id=CID)
    for via in ("n1", "n3"):
        status, data = answer(nodes[via].call("POST", "/cluster/join", body=join_body(N4, key)))
        assert status == 403 and data["error"].startswith("join refused: ") and "cluster key" in data["error"]
    assert nodes["n1"].raft.changes == []


def test_a_join_naming_another_cluster_is_409() -> None:
    nodes = api_cluster(cluster_key=KEY, cluster_id=CID)
    other = JoinRequest(**{**N4.__dict__, "cluster_id": "ab" * 16})
    status, data = answer(nodes["n2"].call("POST", "/cluster/join", body=join_body(other)))
    assert status == 409 and data == {"error": f"join refused: node n4 belongs to cluster {'ab' * 16}, "
                                               f"not {CID}; refusing", "cluster_id": CID}


def test_status_names_the_cluster_id() -> None:
    nodes = api_cluster(cluster_id=CID)
    assert all(answer(n.call("GET", "/cluster/status"))[1]["cluster_id"] == CID for n in nodes.values())


# ---------------------------------------------------------------------- the cluster id
def test_a_cluster_id_is_kept_in_node_json_owner_only(tmp_path) -> None:
    data_dir = str(tmp_path / "n1")
    claim_data_dir(data_dir, "n1")
    ids = ClusterId(data_dir)
    assert ids() is None
    minted = ids.mint()
    assert len(minted) == 32 and int(minted, 16) >= 0 and ClusterId(data_dir)() == minted
    assert ids.mint() != minted                       # a new cluster, a new id
    path = os.path.join(data_dir, NODE_FILE)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with open(path) as f:
        assert json.load(f) == {"node_id": "n1", "format": 1, "cluster_id": ids()}
    claim_data_dir(data_dir, "n1")                    # the node still owns its dir


def test_adopt_takes_the_first_id_and_refuses_another(tmp_path) -> None:
    data_dir = str(tmp_path / "n1")
    claim_data_dir(data_dir, "n1")
    ids = ClusterId(data_dir)
    assert ids.adopt(CID) and ids() == CID
    assert ids.adopt(CID)
    assert not ids.adopt("ab" * 16) and ClusterId(data_dir)() == CID


def test_a_corrupt_cluster_id_is_a_config_error(tmp_path) -> None:
    data_dir = tmp_path / "n1"
    claim_data_dir(str(data_dir), "n1")
    (data_dir / NODE_FILE).write_text(json.dumps({"node_id": "n1", "format": 1, "cluster_id": "../x"}))
    with pytest.raises(ConfigError, match="invalid cluster id"):
        ClusterId(str(data_dir))


# ---------------------------------------------------------------------- the joiner, in-process
def joiner(tmp_path, key: bytes | None, cluster_id: str | None = None, target: str = "10.0.0.3:7000",
           cid: str | None = CID) -> tuple[Joiner, ClusterId]:
    """n4 joining an in-process cluster (with key KEY and id ``cid``) through ``target``."""
    nodes = api_cluster(cluster_key=KEY, cluster_id=cid)
    data_dir = str(tmp_path / "n4")
    claim_data_dir(data_dir, "n4")
    ids = ClusterId(data_dir)
    if cluster_id is not None:
        ids.adopt(cluster_id)
    pool = nodes["n1"].net.pool(remote="10.0.0.4")
    j = Joiner(FakeRaftNode("n4", {}), lambda: [target], pool, ids, raft=N4.raft, http=N4.http,
               gossip=N4.gossip, cluster_key=key)
    return j, ids


def refusals(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and r.name == "axon.join"]


def test_the_joiner_proves_the_key_and_adopts_the_cluster_id(tmp_path) -> None:
    j, ids = joiner(tmp_path, KEY)
    got = j.ask("10.0.0.3:7000")
    assert got is not None and got["status"] == "learner"
    assert j.same_cluster("10.0.0.3:7000", got) and ids() == CID


@pytest.mark.parametrize("key, hint", [(OTHER_KEY, "(different cluster key?)"),
                                       (None, "(this node has no cluster key: give it --cluster-key-file)")])
def test_a_joiner_refused_for_its_key_says_so_once(tmp_path, caplog, key, hint) -> None:
    j, ids = joiner(tmp_path, key)
    assert j.ask("10.0.0.3:7000") is None and j.ask("10.0.0.3:7000") is None
    [line] = refusals(caplog)                         # retries do not repeat it
    assert line.startswith("join via 10.0.0.3:7000 refused: ") and line.endswith(hint)
    assert ids() is None


def test_a_joiner_of_another_cluster_is_refused_with_one_clear_line(tmp_path, caplog) -> None:
    j, ids = joiner(tmp_path, KEY, cluster_id="ab" * 16)
    assert j.ask("10.0.0.3:7000") is None
    assert refusals(caplog) == [f"join via 10.0.0.3:7000 refused: node n4 belongs to cluster {'ab' * 16}, "
                                f"not {CID}; refusing"]
    assert ids() == "ab" * 16


def test_the_joiner_refuses_an_answer_of_another_cluster(tmp_path, caplog) -> None:
    """A leader that does not check (an older version) must not move this node to its cluster."""
    j, ids = joiner(tmp_path, KEY, cluster_id="ab" * 16)
    assert not j.same_cluster("10.0.0.1:7000", {"status": "learner", "cluster_id": CID})
    assert not j.same_cluster("10.0.0.2:7000", {"status": "learner", "cluster_id": None})
    assert [line.split(": ", 1)[0] for line in refusals(caplog)] == \
        ["join via 10.0.0.1:7000 refused", "join via 10.0.0.2:7000 refused"]
    assert f"belongs to cluster {'ab' * 16}, not {CID}; refusing" in refusals(caplog)[0]
    assert ids() == "ab" * 16


def test_a_fresh_joiner_of_a_cluster_without_an_id_stays_without_one(tmp_path) -> None:
    j, ids = joiner(tmp_path, KEY, cid=None)
    got = j.ask("10.0.0.3:7000")
    assert got is not None and got["cluster_id"] is None
    assert j.same_cluster("10.0.0.3:7000", got) and ids() is None


# ---------------------------------------------------------------------- real processes
def key_file(path) -> str:
    keys.write_key_file(path, keys.new_key())
    return str(path)


def log_lines(nodes, fragment: str) -> list[str]:
    return [line for node in nodes for line in node.log_text().splitlines() if fragment in line]


def members(cluster: Cluster) -> list[NodeHandle]:
    """The cluster's own three nodes (tests add others that must stay out)."""
    return cluster.nodes[:3]


def assert_never_a_member(cluster: Cluster, *node_ids: str) -> None:
    """Watch the members' status for a while: none of ``node_ids`` may ever show up."""
    deadline = time.monotonic() + ABSENT_FOR
    while True:
        for node in members(cluster):
            st = node.status()
            known = set(st["voters"]) | set(st["learners"]) | {n["node_id"] for n in st["nodes"]}
            assert not known & set(node_ids), (node.node_id, st)
        if time.monotonic() >= deadline:
            return
        time.sleep(0.1)


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    """Three nodes with one cluster key (node 1 bootstrapped, the others joined with a proof)."""
    base = tmp_path_factory.mktemp("keyed")
    key = key_file(base / "cluster.key")
    (base / "nodes").mkdir()
    cluster = Cluster(base / "nodes", n=3, extra_args=["--cluster-key-file", key])
    cluster.key_file = key
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.mark.slow
def test_nodes_with_the_key_join_as_voters_and_share_one_cluster_id(keyed: Cluster) -> None:
    # Cluster() returned once n2 and n3 were voters: their joins carried a valid proof
    ids = {node.node_id: node.status()["cluster_id"] for node in members(keyed)}
    [cluster_id] = set(ids.values())
    assert cluster_id is not None and len(cluster_id) == 32
    for node in members(keyed):
        path = os.path.join(node.data_dir, NODE_FILE)
        with open(path) as f:
            assert json.load(f)["cluster_id"] == cluster_id
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert NO_KEY_WARNING not in node.log_text()
    assert log_lines(keyed.nodes[:1], f"new cluster {cluster_id}")
    assert all(log_lines([n], f"this node belongs to cluster {cluster_id}") for n in keyed.nodes[1:3])


@pytest.mark.slow
def test_a_node_with_a_wrong_key_or_none_is_refused_and_never_added(keyed: Cluster, tmp_path) -> None:
    leader = keyed.leader(among=members(keyed))
    wrong = keyed.new_node("wrongkey", extra_args=["--cluster-key-file", key_file(tmp_path / "other.key")])
    keyless = keyed.new_node("keyless", extra_args=[])
    for node in (wrong, keyless):
        node.start(join=[leader.http])
    keyed.wait_for(lambda: log_lines([wrong], f"join via {leader.http} refused: ")
                   and log_lines([keyless], f"join via {leader.http} refused: ")
                   and log_lines([leader], "(node wrongkey,") and log_lines([leader], "(node keyless,"),
                   timeout=20, message="both refusals logged by the joiners and the leader")
    [wrong_line] = log_lines([wrong], "refused")          # one line, however often it retried
    assert "WARNING" in wrong_line and wrong_line.endswith("(different cluster key?)")
    assert log_lines([keyless], "refused")[0].endswith("(this node has no cluster key: give it --cluster-key-file)")
    assert all("cluster key" in line for line in log_lines([leader], "join refused: "))
    assert len(log_lines([keyless], NO_KEY_WARNING)) == 1
    # what anyone without the key gets
    resp = leader.pool.request("POST", leader.http, "/cluster/join", join_body(N4, key=None))
    assert resp.status == 403 and resp.json()["error"].startswith("join refused: ")
    assert_never_a_member(keyed, "wrongkey", "keyless", "n4")
    assert keyed.nodes[1].client.put("k", "still fine")["value"] == "still fine"
    wrong.kill()
    keyless.kill()


@pytest.mark.slow
def test_a_replayed_join_is_refused_and_a_learner_that_never_answers_is_not_promoted(keyed: Cluster) -> None:
    key = keys.load_key(keyed.key_file)
    leader = keyed.leader(among=members(keyed))
    follower = next(n for n in members(keyed) if n is not leader)
    raft_port, http_port = free_ports(2)    # nothing listens there: a node that never answers
    ghost = JoinRequest("ghost", f"127.0.0.1:{raft_port}", f"127.0.0.1:{http_port}")
    body = join_body(ghost, key)
    first = follower.pool.request("POST", follower.http, "/cluster/join", body)
    assert first.status == 202 and first.json()["status"] == "learner"
    for node in (leader, follower):         # again, straight or forwarded: the leader remembers the nonce
        again = node.pool.request("POST", node.http, "/cluster/join", body)
        assert again.status == 403 and "used before" in again.json()["error"]
    deadline = time.monotonic() + ABSENT_FOR
    while time.monotonic() < deadline:       # it never caught up, so it never votes
        st = leader.status()
        assert "ghost" in st["learners"] and "ghost" not in st["voters"], st
        time.sleep(0.1)
    assert leader.client.put("k", "quorum intact")["value"] == "quorum intact"
    assert leader.client.remove("ghost") == {"removed": "ghost"}


@pytest.mark.slow
def test_a_node_of_another_cluster_is_refused_with_a_clear_line(keyed: Cluster, tmp_path) -> None:
    ours = keyed.nodes[0].status()["cluster_id"]
    # the same key: it is the cluster id that keeps the clusters apart
    stranger = NodeHandle(str(tmp_path), "stranger", extra_args=["--cluster-key-file", keyed.key_file])
    try:
        stranger.start(bootstrap=True)
        theirs = wait_for(lambda: stranger.status()["state"] == "leader" and stranger.status()["cluster_id"],
                          20, message="the stranger to lead its own cluster", nodes=[stranger])
        assert theirs != ours
        assert stranger.stop() == 0
        leader = keyed.leader(among=members(keyed))
        stranger.start(join=[leader.http])
        expected = f"belongs to cluster {theirs}, not {ours}; refusing"
        wait_for(lambda: log_lines([stranger], f"join via {leader.http} refused: node stranger {expected}")
                 and log_lines(members(keyed), f"join refused: node stranger {expected}"),
                 20, message="the refusal logged on both sides", nodes=[stranger, leader])
        assert_never_a_member(keyed, "stranger")
        st = stranger.status()
        assert (st["cluster_id"], st["voters"]) == (theirs, ["stranger"])
    finally:
        stranger.kill()


def test_a_keyless_node_on_loopback_warns_once(tmp_path) -> None:
    cluster = Cluster(tmp_path, n=1)
    try:
        node = cluster.nodes[0]
        cluster.wait_for(lambda: log_lines([node], NO_KEY_WARNING), message="the warning")
        node.client.put("k", "v")
        assert len(log_lines([node], NO_KEY_WARNING)) == 1
        assert Client(node.http, retry_for=0).status()["cluster_id"]
    finally:
        cluster.close()


def test_refusals_are_logged_at_warning(caplog) -> None:
    """The joiner's and the leader's refusal lines are warnings (operators grep for them)."""
    caplog.set_level(logging.INFO)
    nodes = api_cluster(cluster_key=KEY, cluster_id=CID)
    nodes["n1"].call("POST", "/cluster/join", body=join_body(N4, OTHER_KEY))
    [record] = [r for r in caplog.records if "join refused" in r.getMessage()]
    assert record.levelname == "WARNING" and "(node n4, raft 10.0.0.4:7001, http 10.0.0.4:7000)" in record.getMessage()

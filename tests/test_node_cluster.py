"""Real-process cluster behaviour: faults, restarts, membership, start-up errors, logging."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from typing import Iterator

import pytest

from axon.api.admission import join_key, make_proof
from axon.api.validate import JoinRequest
from axon.client import Client
from axon.client.http import ClientError, HttpPool, Response
from axon.keys import load_key
from axon.testing.chaos import Workload
from axon.testing.cluster import REPO_ROOT, Cluster, NodeHandle, cluster_key_args, free_ports, wait_for
from axon.testing.linearizability import check_history

REQUEST_TIMEOUT = 2.0
# Generous: the request timeout, plus one forwarding hop's grace, plus a loaded CI machine.
UNAVAILABLE_BOUND = REQUEST_TIMEOUT + 3.0


def raw(node: NodeHandle, method: str, path: str, body: bytes | None = None,
        headers: dict[str, str] | None = None, timeout: float = 15.0) -> Response:
    return node.pool.request(method, node.http, path, body, headers, timeout=timeout)


def timed(fn, *args):
    start = time.monotonic()
    result = fn(*args)
    return result, time.monotonic() - start


def assert_unavailable(resp: Response, elapsed: float) -> None:
    assert resp.status == 503, resp
    assert elapsed < UNAVAILABLE_BOUND, f"503 took {elapsed:.2f}s"
    assert int(resp.headers["retry-after"]) >= 1
    body = resp.json()
    assert isinstance(body["error"], str) and "leader" in body, body


def local_items(node: NodeHandle) -> list[tuple[str, str, int]]:
    """Everything the node holds locally (a stale scan), for divergence checks."""
    items, after = [], None
    while True:
        page = node.client.list_page("", limit=1000, after=after, stale=True)
        items += [(i["key"], i["value"], i["revision"]) for i in page["items"]]
        after = page["next"]
        if after is None:
            return items


def assert_no_divergence(cluster: Cluster, nodes: list[NodeHandle] | None = None) -> list:
    nodes = nodes or cluster.running()
    cluster.wait_converged(among=nodes)
    snapshots = {node.node_id: local_items(node) for node in nodes}
    first = next(iter(snapshots.values()))
    for node_id, items in snapshots.items():
        assert items == first, f"{node_id} diverged"
    return first


def run_serve(args: list[str], timeout: float = 20.0, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `axon serve` expecting it to exit on its own (start-up errors)."""
    full_env = dict(os.environ, PYTHONPATH=REPO_ROOT, **(env or {}))
    return subprocess.run([sys.executable, "-m", "axon", "serve", *args], cwd=REPO_ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def serve_args(tmp_path, node_id: str, data_dir) -> list[str]:
    http, raft, gossip = free_ports(3)
    return ["--node-id", node_id, "--data-dir", str(data_dir), "--http", f"127.0.0.1:{http}",
            "--raft", f"127.0.0.1:{raft}", "--gossip", f"127.0.0.1:{gossip}"]


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str, after_logs: bool = False) -> None:
    """Non-zero exit and one "error: ..." line; with ``after_logs`` ordinary log lines may precede it."""
    assert proc.returncode != 0, proc
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], proc.stderr
    if not after_logs:
        assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in errors[0], errors


# ---------------------------------------------------------------------- quorum loss

@pytest.mark.slow
def test_quorum_loss_answers_503_in_bound_and_recovers_without_divergence(cluster: Cluster) -> None:
    leader = cluster.leader()
    for i in range(5):
        leader.client.put(f"before/{i}", str(i))
    cluster.wait_converged()
    down = [node for node in cluster.nodes if node is not leader]
    for node in down:
        node.kill()

    # The old leader survives alone: writes and linearizable reads fail within the bound.
    for method, path, body in (("PUT", "/kv/during", b'{"value": "x"}'), ("GET", "/kv/before/1", None),
                               ("DELETE", "/kv/before/2", None), ("GET", "/kv?prefix=before", None)):
        resp, elapsed = timed(raw, leader, method, path, body)
        assert_unavailable(resp, elapsed)
    assert leader.client.get("before/1", stale=True)["value"] == "1"   # local reads still work
    cluster.wait_for(lambda: raw(leader, "GET", "/ready").status == 503, message="survivor not ready")

    # One node comes back: a leader is elected and the cluster continues.
    down[0].start()
    new_leader = cluster.leader(among=[leader, down[0]])
    written = new_leader.client.put("after", "y")
    for node in (leader, down[0]):
        assert node.client.get("after") == written
        assert node.client.get("before/4")["value"] == "4"
    # Writes through the node that was alone work again too.
    assert leader.client.put("after2", "z")["value"] == "z"
    down[1].start()
    cluster.leader()
    items = assert_no_divergence(cluster)
    assert {k for k, _, _ in items} >= {f"before/{i}" for i in range(5)} | {"after", "after2"}


@pytest.mark.slow
def test_follower_alone_answers_503_in_bound(cluster: Cluster) -> None:
    leader = cluster.leader()
    leader.client.put("k", "v")
    survivor = [node for node in cluster.nodes if node is not leader][0]
    for node in cluster.nodes:
        if node is not survivor:
            node.kill()
    for _ in range(3):   # right away (leader still known), and after its election timeouts
        for method, path, body in (("PUT", "/kv/k", b'{"value": "x"}'), ("GET", "/kv/k", None)):
            resp, elapsed = timed(raw, survivor, method, path, body)
            assert_unavailable(resp, elapsed)
        time.sleep(0.5)
    assert survivor.status()["leader"] is None
    assert raw(survivor, "GET", "/ready").status == 503


@pytest.mark.slow
def test_paused_leader_gives_503_in_bound_then_cluster_moves_on(cluster: Cluster) -> None:
    leader = cluster.leader()
    leader.client.put("k", "v1")
    follower = [node for node in cluster.nodes if node is not leader][0]
    leader.pause()
    try:
        resp, elapsed = timed(raw, follower, "PUT", "/kv/k", b'{"value": "v2"}')
        # The two followers elect a new leader, so the write may even succeed; it must not hang.
        assert resp.status in (200, 503), resp
        assert elapsed < UNAVAILABLE_BOUND + 1.0, f"took {elapsed:.2f}s"
        others = [node for node in cluster.nodes if node is not leader]
        new_leader = cluster.leader(among=others)
        assert new_leader is not leader
        assert follower.client.put("k", "v3")["value"] == "v3"
    finally:
        leader.resume()
    cluster.wait_for(lambda: leader.client.get("k")["value"] == "v3", message="old leader to rejoin")
    assert_no_divergence(cluster)


# ---------------------------------------------------------------------- leader kill under writes

class Writers:
    """Threads writing unique keys through every node; remembers what was acknowledged."""

    def __init__(self, nodes: list[NodeHandle], threads: int = 4) -> None:
        self.nodes = nodes
        self.acked: dict[str, str] = {}
        self.errors: list[str] = []
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(t,), daemon=True) for t in range(threads)]

    def __enter__(self) -> "Writers":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(30)

    def count(self) -> int:
        with self._lock:
            return len(self.acked)

    def _run(self, t: int) -> None:
        pool = HttpPool(timeout=REQUEST_TIMEOUT + 4)
        i = 0
        while not self.stop.is_set():
            node = self.nodes[(t + i) % len(self.nodes)]
            key, value = f"w/{t}/{i}", f"value-{t}-{i}"
            i += 1
            try:
                Client(node.http, timeout=REQUEST_TIMEOUT + 4, pool=pool, retry_for=0).put(key, value)
            except ClientError as exc:
                if exc.status not in (0, 503):
                    with self._lock:
                        self.errors.append(f"{key} via {node.node_id}: HTTP {exc.status} {exc.body}")
                time.sleep(0.02)
                continue
            with self._lock:
                self.acked[key] = value
        pool.close()


@pytest.mark.slow
def test_leader_kill9_under_concurrent_writes_loses_no_acknowledged_write(cluster: Cluster) -> None:
    with Writers(cluster.nodes) as writers:
        cluster.wait_for(lambda: writers.count() >= 30, message="writes to flow")
        for _ in range(2):
            leader = cluster.leader()
            before = writers.count()
            leader.kill()
            others = [node for node in cluster.nodes if node is not leader]
            cluster.leader(among=others)
            cluster.wait_for(lambda: writers.count() >= before + 30, message="writes to resume")
            leader.start()
            cluster.wait_for(lambda: leader.status()["leader"] is not None, message="restarted node to follow")
    assert not writers.errors, writers.errors[:5]
    acked = dict(writers.acked)
    assert len(acked) >= 90
    cluster.leader()
    for node in cluster.nodes:
        missing = []
        for key, value in acked.items():
            try:
                answer = node.client.get(key)
                got = answer["value"] if answer is not None else "HTTP 404"
            except ClientError as exc:
                got = f"HTTP {exc.status}"
            if got != value:
                missing.append((key, value, got))
        assert not missing, f"{node.node_id} lost {len(missing)} acknowledged writes: {missing[:5]}"
    assert_no_divergence(cluster)


# ---------------------------------------------------------------------- restarts

@pytest.mark.slow
def test_full_restart_keeps_data_and_bootstrap_flag_changes_nothing(cluster: Cluster) -> None:
    leader = cluster.leader()
    written = {f"k{i}": leader.client.put(f"k{i}", f"v{i}") for i in range(10)}
    cluster.wait_converged()
    term_before = leader.status()["term"]
    for node in cluster.nodes:
        assert node.stop() == 0

    # A lone node restarted with --bootstrap keeps its cluster: it must not elect itself.
    lone = cluster.nodes[1]
    lone.start(bootstrap=True)
    lone.wait_serving()
    deadline = time.monotonic() + 2.5   # several election timeouts
    while time.monotonic() < deadline:
        st = lone.status()
        assert st["state"] != "leader" and st["leader"] is None, st
        assert sorted(st["voters"]) == ["n1", "n2", "n3"], st
        time.sleep(0.1)
    assert lone.client.get("k3", stale=True) == written["k3"]

    for node in cluster.nodes:
        if node is not lone:
            node.start(bootstrap=True)
    new_leader = cluster.leader()
    terms = set()
    for node in cluster.nodes:
        st = node.status()
        assert sorted(st["voters"]) == ["n1", "n2", "n3"], st
        assert st["leader"] == new_leader.node_id
        terms.add(st["term"])
        assert "bootstrapped" not in node.log_text().split("==== start")[-1]
    assert len(terms) == 1 and terms.pop() > term_before
    for node in cluster.nodes:
        for key, answer in written.items():
            assert node.client.get(key) == answer
    assert cluster.nodes[2].client.put("k0", "new")["revision"] > written["k9"]["revision"]


def test_sigterm_exits_zero_promptly_and_restart_finds_the_data(tmp_path) -> None:
    cluster = Cluster(tmp_path, n=1)
    try:
        node = cluster.nodes[0]
        written = node.client.put("k", "v")
        node.client.get("k")   # leaves an idle keep-alive connection open: must not delay the exit
        code, elapsed = timed(node.stop)
        assert code == 0
        assert elapsed < 3.0, f"SIGTERM took {elapsed:.2f}s"
        node.start()
        cluster.wait_for(lambda: node.client.get("k") == written, message="data after restart")
        assert node.client.put("k", "v2")["revision"] > written["revision"]
    finally:
        cluster.close()


# ---------------------------------------------------------------------- membership

@pytest.mark.slow
def test_fourth_node_joins_via_a_follower_while_writes_flow(cluster: Cluster) -> None:
    leader = cluster.leader()
    follower = [node for node in cluster.nodes if node is not leader][0]
    with Writers(cluster.nodes[:3], threads=2) as writers:
        cluster.wait_for(lambda: writers.count() >= 20, message="writes to flow")
        n4 = cluster.add_node(join=[follower.http], node_id="n4")
        count = writers.count()
        cluster.wait_for(lambda: writers.count() >= count + 20, message="writes after the join")
    assert not writers.errors, writers.errors[:5]
    cluster.wait_voters(["n1", "n2", "n3", "n4"])
    acked = dict(writers.acked)
    for key, value in list(acked.items())[:: max(1, len(acked) // 50)]:
        assert n4.client.get(key)["value"] == value
    assert n4.client.put("from-n4", "x")["value"] == "x"
    assert_no_divergence(cluster)


@pytest.mark.slow
def test_join_started_while_the_leader_is_down_succeeds_after_recovery(cluster: Cluster) -> None:
    leader = cluster.leader()
    leader.client.put("k", "v")
    survivor = [node for node in cluster.nodes if node is not leader][0]
    down = [node for node in cluster.nodes if node is not survivor]
    for node in down:
        node.kill()
    n4 = cluster.new_node("n4")
    n4.start(join=[survivor.http])
    n4.wait_serving()
    time.sleep(1.5)   # the joiner is retrying against a cluster without a leader
    assert "n4" not in survivor.status()["voters"]
    for node in down:
        node.start()
    cluster.wait_voters(["n1", "n2", "n3", "n4"], timeout=40)
    assert n4.client.get("k")["value"] == "v"
    assert n4.client.put("k", "v4")["value"] == "v4"


@pytest.mark.slow
def test_remove_a_node_then_it_stops_serving_writes(cluster: Cluster) -> None:
    leader = cluster.leader()
    victim = [node for node in cluster.nodes if node is not leader][0]
    through = [node for node in cluster.nodes if node not in (leader, victim)][0]
    assert through.client.remove(victim.node_id) == {"removed": victim.node_id}
    rest = [node for node in cluster.nodes if node is not victim]
    cluster.wait_voters([node.node_id for node in rest], among=rest)
    assert rest[0].client.put("k", "after-remove")["value"] == "after-remove"

    # At once, although the removed node may never learn of its removal itself.
    for _ in range(10):
        for method, path, body in (("PUT", "/kv/k", b'{"value": "from-removed"}'), ("GET", "/kv/k", None),
                                   ("DELETE", "/kv/k", None)):
            resp = raw(victim, method, path, body)
            assert resp.status == 503, (method, resp)
            assert "error" in resp.json()
        time.sleep(0.1)
    for node in rest:
        assert node.client.get("k")["value"] == "after-remove"
    with pytest.raises(ClientError) as err:
        leader.client.remove(victim.node_id)
    assert err.value.status == 404


@pytest.mark.slow
def test_leave_takes_the_node_out(cluster: Cluster) -> None:
    leader = cluster.leader()
    leaver = [node for node in cluster.nodes if node is not leader][0]
    assert leaver.client.leave() == {"removed": leaver.node_id}
    rest = [node for node in cluster.nodes if node is not leaver]
    cluster.wait_voters([node.node_id for node in rest], among=rest)
    assert rest[1].client.put("k", "v")["value"] == "v"
    cluster.wait_for(lambda: raw(leaver, "PUT", "/kv/k", b'{"value": "x"}').status == 503,
                     timeout=10, message="the node that left to refuse writes")


@pytest.mark.slow
def test_the_leader_can_leave(cluster: Cluster) -> None:
    leader = cluster.leader()
    assert leader.client.leave() == {"removed": leader.node_id}
    rest = [node for node in cluster.nodes if node is not leader]
    new_leader = cluster.leader(among=rest)
    assert new_leader is not leader
    cluster.wait_voters([node.node_id for node in rest], among=rest)
    assert rest[0].client.put("k", "v")["value"] == "v"
    assert rest[1].client.get("k")["value"] == "v"


@pytest.mark.slow
def test_a_member_that_slept_through_membership_changes_answers_the_new_member(cluster: Cluster) -> None:
    """Found by the chaos suite (membership): n3 was paused while n4 joined and n1 was removed,
    and no connection to n3 got through meanwhile.  Awake, n3 had no address for n4, so it
    could not answer n4, and n3 and n4 (n2 down) never elected anyone."""
    n1, n2, n3 = cluster.nodes
    n1.client.put("k", "before")
    n3.pause()
    for node in (n1, n2):   # new connections to n3 cannot finish their handshake from now on
        node.kill()
        node.start()
        cluster.leader(among=[n1, n2], timeout=30)
    n4 = cluster.new_node("n4")
    n4.start(join=[n1.http, n2.http])
    cluster.wait_voters(["n1", "n2", "n3", "n4"], among=[n1, n2, n4])
    try:
        n2.client.remove("n1")
    except ClientError as exc:   # the leader removed itself: the answer may miss the 2 s timeout
        assert exc.status == 503, exc
    cluster.wait_voters(["n2", "n3", "n4"], among=[n2, n4])
    n1.kill()
    n2.kill()
    n3.resume()
    leader = cluster.leader(among=[n3, n4], timeout=30)
    assert leader.client.put("k", "after")["value"] == "after"
    cluster.wait_voters(["n2", "n3", "n4"], among=[n3, n4])
    cluster.wait_converged(among=[n3, n4])
    assert n3.client.get("k", stale=True)["value"] == "after"


# ---------------------------------------------------------------------- start-up errors

def test_data_dir_of_another_node_is_a_one_line_error(tmp_path) -> None:
    cluster = Cluster(tmp_path, n=1)
    try:
        node = cluster.nodes[0]
        node.client.put("k", "v")
        assert node.stop() == 0
    finally:
        cluster.close()
    proc = run_serve(serve_args(tmp_path, "other", node.data_dir))
    assert_one_line_error(proc, "n1", "other")


def test_data_dir_that_is_a_file_is_a_one_line_error(tmp_path) -> None:
    path = tmp_path / "afile"
    path.write_text("not a dir")
    assert_one_line_error(run_serve(serve_args(tmp_path, "n1", path)), "not a directory")
    assert_one_line_error(run_serve(serve_args(tmp_path, "n1", path / "sub")), "data dir")


def test_foreign_non_empty_data_dir_is_a_one_line_error(tmp_path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "precious.txt").write_text("x")
    assert_one_line_error(run_serve(serve_args(tmp_path, "n1", data)), "not empty")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores permissions")
def test_unwritable_data_dir_is_a_one_line_error(tmp_path) -> None:
    data = tmp_path / "ro"
    data.mkdir()
    data.chmod(0o500)
    try:
        assert_one_line_error(run_serve(serve_args(tmp_path, "n1", data)), str(data))
    finally:
        data.chmod(0o700)


def test_bad_flags_are_one_line_errors(tmp_path) -> None:
    base = serve_args(tmp_path, "n1", tmp_path / "d")
    assert_one_line_error(run_serve(base + ["--request-timeout", "0"]), "request-timeout")
    assert_one_line_error(run_serve(base + ["--snapshot-rate", "-1"]), "snapshot-rate")
    assert_one_line_error(run_serve(base + ["--join", "nohost"]), "join")
    keyfile = tmp_path / "short.key"
    keyfile.write_text("short")
    keyfile.chmod(0o600)
    assert_one_line_error(run_serve(base + ["--cluster-key-file", str(keyfile)]), "too short")
    assert_one_line_error(run_serve(base + ["--cluster-key-file", str(tmp_path / "missing")]), "cluster key")


def test_http_port_in_use_is_a_one_line_error(tmp_path) -> None:
    cluster = Cluster(tmp_path, n=1)
    try:
        busy = cluster.nodes[0].http
        args = serve_args(tmp_path, "n2", tmp_path / "n2")
        args[args.index("--http") + 1] = busy
        assert_one_line_error(run_serve(args + ["--bootstrap"]), busy.split(":")[1], after_logs=True)
    finally:
        cluster.close()


def test_env_vars_configure_the_node(tmp_path) -> None:
    cluster = Cluster(tmp_path, n=0)
    try:
        node = cluster.new_node("envnode")
        node.env = {"AXON_BOOTSTRAP": "1", "AXON_REQUEST_TIMEOUT": "2", "AXON_LOG_JSON": "1"}
        node.start()
        cluster.wait_for(lambda: node.status()["state"] == "leader", message="env-bootstrapped node to lead")
        assert node.client.put("k", "v")["value"] == "v"
        assert json.loads(node.log_text().splitlines()[-1])["node"] == "envnode"
    finally:
        cluster.close()


# ---------------------------------------------------------------------- no state, no bootstrap

def test_node_without_state_or_bootstrap_never_elects_itself(tmp_path) -> None:
    cluster = Cluster(tmp_path, n=0)
    try:
        node = cluster.new_node("fresh")
        node.start()
        node.wait_serving()
        deadline = time.monotonic() + 2.5   # well past the 0.5-1 s election timeout
        while time.monotonic() < deadline:
            st = node.status()
            assert st["state"] != "leader" and st["leader"] is None and st["term"] == 0, st
            assert raw(node, "GET", "/ready").status == 503
            time.sleep(0.1)
        assert "waiting to be added" in node.log_text()
    finally:
        cluster.close()


# ---------------------------------------------------------------------- cluster key and logging

def key_files(tmp_path) -> tuple[str, str]:
    good, bad = tmp_path / "good.key", tmp_path / "bad.key"
    good.write_text("a-shared-secret-of-enough-bytes\n")
    bad.write_text("another-secret-that-does-not-match\n")
    good.chmod(0o600)   # a node refuses a key file others may read
    bad.chmod(0o600)
    return str(good), str(bad)


@pytest.mark.slow
def test_cluster_key_admits_matching_nodes_and_refuses_a_wrong_key(tmp_path) -> None:
    good, bad = key_files(tmp_path)
    cluster = Cluster(tmp_path, n=3, extra_args=["--cluster-key-file", good])
    try:
        leader = cluster.leader()
        assert cluster.nodes[2].client.put("k", "v")["value"] == "v"
        intruder = cluster.new_node("intruder", extra_args=["--cluster-key-file", bad])
        intruder.start(join=[leader.http])

        def refusal_lines(node: NodeHandle) -> list[str]:
            return [line for line in node.log_text().splitlines() if "cluster key" in line and "WARNING" in line]
        # gossip's refusal and the join's can come in either order; the leader's must name the intruder
        cluster.wait_for(lambda: refusal_lines(intruder)
                         and any("intruder" in line for line in refusal_lines(leader)), timeout=20,
                         message="a cluster key refusal logged on both sides, the leader's naming the intruder")
        for line in refusal_lines(leader) + refusal_lines(intruder):
            assert "a-shared-secret" not in line and "another-secret" not in line
        st = intruder.status()
        assert st["leader"] is None and st["state"] != "leader", st
        assert cluster.nodes[1].client.put("k", "v2")["value"] == "v2"   # the cluster is unharmed
    finally:
        cluster.close()


@pytest.mark.slow
def test_a_learner_that_never_answered_is_not_promoted(tmp_path) -> None:
    """A joiner admitted (it proved the key) but never reachable must stay a learner, not count for quorum."""
    good, _bad = key_files(tmp_path)
    cluster = Cluster(tmp_path, n=1, extra_args=["--cluster-key-file", good])
    try:
        leader = cluster.nodes[0]
        raft_port, http_port = free_ports(2)   # nothing listens there
        ghost = JoinRequest("ghost", f"127.0.0.1:{raft_port}", f"127.0.0.1:{http_port}")
        proof = make_proof(join_key(load_key(good)), ghost)
        assert leader.client.join(ghost.node_id, ghost.raft, ghost.http, proof=proof)["status"] == "learner"
        deadline = time.monotonic() + 1.5   # well past the time a reachable learner takes to catch up
        while time.monotonic() < deadline:
            st = leader.status()
            assert "ghost" in st["learners"] and "ghost" not in st["voters"], st
            time.sleep(0.1)
        # With the ghost a voter, this one-node cluster would have lost its quorum.
        assert leader.client.put("k", "v")["value"] == "v"
    finally:
        cluster.close()


def test_log_json_prints_json_lines(tmp_path) -> None:
    cluster = Cluster(tmp_path, n=1, extra_args=["--log-json"])
    try:
        node = cluster.nodes[0]
        node.client.put("k", "v")
        assert node.stop() == 0
        lines = [line for line in node.log_text().splitlines() if line and not line.startswith("==== ")]
        assert len(lines) >= 3
        for line in lines:
            record = json.loads(line)
            assert record["node"] == "n1" and record["level"] in ("debug", "info", "warning", "error")
            assert isinstance(record["msg"], str) and isinstance(record["ts"], (int, float))
    finally:
        cluster.close()


def test_harness_wait_for_reports_message_and_logs(tmp_path) -> None:
    cluster = Cluster(tmp_path, n=1)
    try:
        with pytest.raises(AssertionError) as err:
            cluster.wait_for(lambda: False, timeout=0.2, message="the impossible")
        assert "the impossible" in str(err.value) and "n1" in str(err.value)
        assert wait_for(lambda: 42, timeout=1) == 42
    finally:
        cluster.close()
    assert not cluster.nodes[0].running


# ---------------------------------------------------------------------- linearizability under leader kills

@pytest.fixture
def keyed_cluster(tmp_path) -> Iterator[Cluster]:
    """Three nodes sharing a cluster key: every raft frame and gossip packet sealed."""
    c = Cluster(tmp_path, n=3, extra_args=cluster_key_args(str(tmp_path)))
    try:
        yield c
    finally:
        c.close()


@pytest.mark.slow
def test_concurrent_history_is_linearizable_under_leader_kills(keyed_cluster: Cluster, tmp_path) -> None:
    cluster = keyed_cluster
    keys = ["h0", "h1", "h2", "h3"]
    kills = 0
    with Workload(cluster.nodes, keys, clients=6, seed=7, timeout=REQUEST_TIMEOUT + 4) as clients:
        deadline = time.monotonic() + 22
        time.sleep(2)
        while time.monotonic() < deadline:
            leader = cluster.leader()
            leader.kill()
            kills += 1
            time.sleep(1.0)
            leader.start()
            time.sleep(3.0)
    history = clients.history
    dump = tmp_path / "history.jsonl"
    history.dump(str(dump))
    assert kills >= 3
    assert not clients.problems, clients.problems[:5]
    ops = history.ops()
    done = [op for op in ops if op.status == "ok"]
    assert len(done) >= 200, f"only {len(done)} ops completed"
    assert {op.kind for op in done} >= {"read", "write", "cas"}
    result = check_history(history, timeout_per_key=60)
    assert not result.timed_out, f"checker timed out: {result.explanation} (history in {dump})"
    assert result.ok, f"{result.explanation}\n(history in {dump})"
    assert_no_divergence(cluster)

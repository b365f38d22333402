"""`axon launch`: the persisted layout, the supervisor API, and real launched clusters."""
from __future__ import annotations

import json
import os
import random
import signal
import socket
import stat
import subprocess
import sys

import pytest

from axon.client import Client
from axon.client.http import ClientError
from axon.keys import load_key
from axon.launcher.layout import Layout, LayoutError, NodeSpec, load_layout, save_layout
from axon.launcher.api import build_api
from axon.launcher.supervisor import (LaunchError, Supervisor, discovery_args, ensure_cluster_key, node_args,
                                      role_of)
from axon.testing.cluster import free_ports, wait_for
from axon.testing.inprocess import request

HOST = "127.0.0.1"


# ---------------------------------------------------------------------- layout (pure + file)
def test_layout_allocates_blocks_skipping_busy_and_used_ports() -> None:
    layout = Layout(HOST, 7000)
    busy = {7010, 7032}
    first = layout.add_node(lambda ports: not busy.intersection(ports))
    second = layout.add_node(lambda ports: not busy.intersection(ports))
    third = layout.add_node(lambda ports: not busy.intersection(ports))
    assert (first.node_id, first.http, first.raft, first.gossip) == \
        ("node-1", "127.0.0.1:7000", "127.0.0.1:7001", "127.0.0.1:7002")
    assert (second.node_id, second.http) == ("node-2", "127.0.0.1:7020")
    assert (third.node_id, third.http) == ("node-3", "127.0.0.1:7040")


def test_layout_never_reuses_ids_and_reuses_freed_ports() -> None:
    layout = Layout(HOST, 7000)
    for _ in range(3):
        layout.add_node(lambda ports: True)
    layout.remove_node("node-2")
    again = layout.add_node(lambda ports: True)
    assert again.node_id == "node-4"
    assert again.http == "127.0.0.1:7010"
    assert [n.node_id for n in layout.nodes] == ["node-1", "node-3", "node-4"]


def test_layout_runs_out_of_ports_with_an_error() -> None:
    layout = Layout(HOST, 65530)
    layout.add_node(lambda ports: True)
    with pytest.raises(LayoutError, match="no free port"):
        layout.add_node(lambda ports: True)


def test_layout_round_trips_atomically(tmp_path) -> None:
    layout = Layout(HOST, 7000, bootstrapped=True)
    layout.add_node(lambda ports: True)
    save_layout(str(tmp_path), layout)
    assert os.listdir(tmp_path) == ["layout.json"]
    assert load_layout(str(tmp_path)) == layout
    assert load_layout(str(tmp_path / "missing")) is None


@pytest.mark.parametrize("content", ["{not json", "[]", '{"format": 1}', '{"format": 2, "nodes": []}',
                                     json.dumps({"format": 1, "host": HOST, "base_port": 1, "next_index": 2,
                                                 "bootstrapped": True,
                                                 "nodes": [{"node_id": "bad id", "http": "h:1",
                                                            "raft": "h:2", "gossip": "h:3"}]}),
                                     json.dumps({"format": 1, "host": HOST, "base_port": 1, "next_index": 2,
                                                 "bootstrapped": True,
                                                 "nodes": [{"node_id": "a", "http": "nope",
                                                            "raft": "h:2", "gossip": "h:3"}]})])
def test_corrupt_layout_is_a_clear_error(tmp_path, content: str) -> None:
    (tmp_path / "layout.json").write_text(content)
    with pytest.raises(LayoutError, match="layout.json"):
        load_layout(str(tmp_path))


# ---------------------------------------------------------------------- node arguments
def test_node_args_bootstrap_only_when_asked_and_discover_through_others() -> None:
    me = NodeSpec("node-2", "h:7010", "h:7011", "h:7012")
    others = [NodeSpec("node-1", "h:7000", "h:7001", "h:7002"), NodeSpec("node-3", "h:7020", "h:7021", "h:7022")]
    args = node_args(me, "d/node-2", others, bootstrap=False, log_level="info")
    assert args[:11] == ["serve", "--node-id", "node-2", "--data-dir", "d/node-2", "--http", "h:7010",
                         "--raft", "h:7011", "--gossip", "h:7012"]
    assert "--bootstrap" not in args
    assert args[-8:] == discovery_args(others)
    assert "--join" in args and "h:7000" in args and "--seed" in args and "h:7022" in args
    assert "--bootstrap" in node_args(me, "d", [], bootstrap=True, log_level="info")
    keyed = node_args(me, "d", others, bootstrap=False, log_level="info", key_file="c/cluster.key")
    assert keyed[keyed.index("--cluster-key-file") + 1] == "c/cluster.key" and keyed[-8:] == discovery_args(others)


def test_the_cluster_key_is_made_once_owner_only_and_a_readable_one_refused(tmp_path) -> None:
    path = ensure_cluster_key(str(tmp_path))
    assert path == str(tmp_path / "cluster.key")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and len(load_key(path)) == 32
    key = load_key(path)
    assert ensure_cluster_key(str(tmp_path)) == path and load_key(path) == key   # kept, not replaced
    os.chmod(path, 0o644)
    with pytest.raises(LaunchError, match="chmod 600"):
        ensure_cluster_key(str(tmp_path))


def test_role_of() -> None:
    status = {"state": "leader", "voters": ["a", "b"], "learners": ["c"]}
    assert role_of("a", status) == "leader"
    assert role_of("c", status) == "learner"
    assert role_of("z", status) == "none"
    assert role_of("a", None) == "unknown"


# ---------------------------------------------------------------------- API without processes
def call(app, method: str, path: str) -> tuple[int, object]:
    resp = app(request(method, path))
    if "json" in dict(resp.headers).get("Content-Type", ""):
        return resp.status, json.loads(resp.body)
    return resp.status, resp.body


@pytest.fixture
def idle_supervisor(tmp_path):
    """A supervisor whose nodes are never started (no processes)."""
    sup = Supervisor(str(tmp_path / "c"), HOST, random_base(), nodes=2, stop_timeout=2, say=lambda s: None)
    try:
        yield sup
    finally:
        sup.shutdown()


def test_api_lists_stopped_nodes_and_answers_json_errors(idle_supervisor) -> None:
    app = build_api(idle_supervisor)
    status, body = call(app, "GET", "/api/nodes")
    assert status == 200
    assert [(n["node_id"], n["state"], n["pid"], n["role"]) for n in body["nodes"]] == \
        [("node-1", "stopped", None, None), ("node-2", "stopped", None, None)]
    assert call(app, "GET", "/api/nodes/nope") == (404, {"error": "no node 'nope'"})
    assert call(app, "POST", "/api/nodes/nope/stop")[0] == 404
    assert call(app, "POST", "/api/nodes/node-1/explode")[0] == 404
    assert call(app, "PUT", "/api/nodes")[0] == 405
    assert call(app, "GET", "/no/such/route")[0] == 404
    # decommission needs another running node to remove it through Raft
    status, body = call(app, "DELETE", "/api/nodes/node-2")
    assert status == 409 and "no other node is running" in body["error"]
    # stopping a stopped node is harmless
    assert call(app, "POST", "/api/nodes/node-1/stop")[1]["state"] == "stopped"
    status, page = call(app, "GET", "/")
    assert status == 200 and b"<html" in page.lower()


def test_a_supervisor_makes_its_cluster_key(idle_supervisor) -> None:
    assert idle_supervisor.key_file == os.path.join(idle_supervisor.directory, "cluster.key")
    assert stat.S_IMODE(os.stat(idle_supervisor.key_file).st_mode) == 0o600


def test_second_launcher_on_the_same_dir_is_refused(idle_supervisor) -> None:
    with pytest.raises(LaunchError, match="another launcher"):
        Supervisor(idle_supervisor.directory, HOST, 7000, nodes=1, say=lambda s: None)


def test_unusable_dir_is_a_clear_error(tmp_path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(LaunchError, match="cannot use"):
        Supervisor(str(tmp_path / "file" / "c"), HOST, 7000, nodes=1, say=lambda s: None)


# ---------------------------------------------------------------------- real launched clusters
def random_base() -> int:
    """A base port below the usual ephemeral range; the launcher skips busy blocks itself."""
    return random.randrange(20000, 30000, 10)


class Launched:
    """A real `axon launch` process and its supervisor API."""

    def __init__(self, directory, nodes: int = 3, base: int | None = None,
                 command: list[str] | None = None, env: dict | None = None) -> None:
        self.directory = str(directory)
        [self.port] = free_ports(1)
        self.api = f"{HOST}:{self.port}"
        self.out_path = os.path.join(self.directory + ".out")
        cmd = (command or [sys.executable, "-m", "axon"]) + [
            "launch", "--dir", self.directory, "--nodes", str(nodes), "--port", str(self.port),
            "--base-port", str(base or random_base()), "--stop-timeout", "10"]
        self.out = open(self.out_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self.out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env)
        self.client = Client(self.api, timeout=15, retry_for=0)
        self.pids: set[int] = set()

    def output(self) -> str:
        with open(self.out_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def nodes(self) -> dict[str, dict]:
        if self.proc.poll() is not None:
            raise AssertionError(f"launcher exited {self.proc.returncode}:\n{self.output()}")
        nodes = {n["node_id"]: n for n in self.client.call("GET", "/api/nodes")["nodes"]}
        self.pids.update(n["pid"] for n in nodes.values() if n["pid"])
        return nodes

    def wait_roles(self, expected_ids: list[str], timeout: float = 60) -> dict[str, dict]:
        """Until exactly these nodes run, one leads and the others follow."""
        def settled():
            nodes = self.nodes()
            roles = sorted(n["role"] for n in nodes.values())
            ok = (sorted(nodes) == sorted(expected_ids)
                  and all(n["state"] == "running" for n in nodes.values())
                  and roles.count("leader") == 1 and roles.count("follower") == len(expected_ids) - 1)
            return nodes if ok else None
        return wait_for(settled, timeout, interval=0.2, message=f"{expected_ids} running with a leader")

    def action(self, method: str, path: str, ok: tuple[int, ...] = (200,)) -> dict:
        return self.client.call(method, path, ok=ok)

    def interrupt(self, timeout: float = 40) -> int:
        self.nodes()
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout)
        self.out.close()
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for pid in self.pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        self.out.close()


def alive(pid: int) -> bool:
    """True if pid is a live process (a zombie counts as alive: nobody reaped it)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
    except OSError:
        return False
    return b"axon" in cmdline or cmdline == b""


def cmdline(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().decode().split("\0")


def wait_gone(pids: set[int], timeout: float = 20) -> None:
    wait_for(lambda: not any(alive(p) for p in pids), timeout, interval=0.1,
             message=f"processes {sorted(pids)} to be gone")


def voters(addr: str) -> list[str]:
    return sorted(Client(addr, timeout=5, retry_for=0).status()["voters"])


@pytest.mark.slow
def test_launch_supervises_nodes_through_the_api(tmp_path) -> None:
    launched = Launched(tmp_path / "cluster")
    try:
        nodes = launched.wait_roles(["node-1", "node-2", "node-3"])
        out = launched.output()
        assert f"http://{HOST}:{launched.port}/" in out
        for node in nodes.values():
            assert node["http"] in out and "data_dir" not in node and "log" not in node
            assert os.path.exists(os.path.join(launched.directory, "logs", node["node_id"] + ".log"))
        first = Client(nodes["node-1"]["http"], timeout=10, retry_for=0)
        wait_for(lambda: first.put("greeting", "hello"), 20, message="a first write")

        # one cluster key, owner-only, given to every node; one cluster id
        key_file = os.path.join(launched.directory, "cluster.key")
        assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600 and f"cluster key in {key_file}" in out
        for node in nodes.values():
            args = cmdline(node["pid"])
            assert args[args.index("--cluster-key-file") + 1] == key_file
        cluster_ids = {Client(n["http"], timeout=10, retry_for=0).status()["cluster_id"] for n in nodes.values()}
        assert len(cluster_ids) == 1 and None not in cluster_ids

        # the dashboard is served too
        status, _ = http_get(launched.api, "/")
        assert status == 200

        # stop / start
        old_pid = nodes["node-3"]["pid"]
        stopped = launched.action("POST", "/api/nodes/node-3/stop")
        assert stopped["state"] == "stopped" and stopped["pid"] is None
        wait_gone({old_pid})
        started = launched.action("POST", "/api/nodes/node-3/start")
        assert started["state"] == "running" and started["pid"] != old_pid
        with pytest.raises(ClientError) as err:
            launched.action("POST", "/api/nodes/node-3/start")
        assert err.value.status == 409
        launched.wait_roles(["node-1", "node-2", "node-3"])

        # restart
        old_pid = launched.nodes()["node-2"]["pid"]
        restarted = launched.action("POST", "/api/nodes/node-2/restart")
        assert restarted["state"] == "running" and restarted["pid"] != old_pid
        wait_gone({old_pid})

        # add a node: it joins as a voter and reads the data
        added = launched.action("POST", "/api/nodes", ok=(201,))
        assert added["node_id"] == "node-4" and added["state"] == "running"
        launched.wait_roles(["node-1", "node-2", "node-3", "node-4"])
        wait_for(lambda: voters(added["http"]) == ["node-1", "node-2", "node-3", "node-4"], 30,
                 message="node-4 a voter")
        assert Client(added["http"], timeout=10, retry_for=0).get("greeting")["value"] == "hello"
        assert "--cluster-key-file" in cmdline(added["pid"])
        assert Client(added["http"], timeout=10, retry_for=0).status()["cluster_id"] in cluster_ids

        # a node that exits on its own is recorded, not restarted
        os.kill(launched.nodes()["node-3"]["pid"], signal.SIGKILL)
        exited = wait_for(lambda: launched.nodes()["node-3"]["state"] == "exited" and launched.nodes()["node-3"],
                          10, message="node-3 recorded as exited")
        assert exited["exit_code"] == -signal.SIGKILL and exited["pid"] is None
        launched.action("POST", "/api/nodes/node-3/start")

        # decommission: out of Raft, stopped, data deleted, gone from the layout
        pid4 = launched.nodes()["node-4"]["pid"]
        assert launched.action("DELETE", "/api/nodes/node-4") == {"removed": "node-4"}
        wait_gone({pid4})
        assert not os.path.exists(os.path.join(launched.directory, "data", "node-4"))
        assert "node-4" not in launched.nodes()
        wait_for(lambda: voters(nodes["node-1"]["http"]) == ["node-1", "node-2", "node-3"], 20,
                 message="node-4 removed from the voters")
        layout = load_layout(launched.directory)
        assert [n.node_id for n in layout.nodes] == ["node-1", "node-2", "node-3"]

        # Ctrl-C: every node stops, nothing is left behind
        launched.wait_roles(["node-1", "node-2", "node-3"])
        pids = set(launched.pids)
        assert launched.interrupt() == 0
        wait_gone(pids, timeout=5)
        assert "all nodes stopped" in launched.output()
    finally:
        launched.close()


@pytest.mark.slow
def test_relaunch_after_full_stop_keeps_cluster_and_data(tmp_path) -> None:
    directory = tmp_path / "cluster"
    launched = Launched(directory)
    try:
        nodes = launched.wait_roles(["node-1", "node-2", "node-3"])
        assert "--bootstrap" in cmdline(nodes["node-1"]["pid"])
        client = Client(nodes["node-2"]["http"], timeout=10, retry_for=0)
        wait_for(lambda: client.put("kept", "yes"), 20, message="a write")
        key = load_key(os.path.join(str(directory), "cluster.key"))
        assert launched.interrupt() == 0
        wait_gone(launched.pids)
    finally:
        launched.close()

    again = Launched(directory, nodes=5)   # the saved layout wins over --nodes
    try:
        nodes = again.wait_roles(["node-1", "node-2", "node-3"])
        assert "--bootstrap" not in cmdline(nodes["node-1"]["pid"])
        assert "bringing back 3 nodes" in again.output()
        assert load_key(os.path.join(str(directory), "cluster.key")) == key   # the same key again
        for node in nodes.values():
            addr = node["http"]
            assert voters(addr) == ["node-1", "node-2", "node-3"]
            assert wait_for(lambda: Client(addr, timeout=10, retry_for=0).get("kept")["value"], 20,
                            message=f"the key on {node['node_id']}") == "yes"
        assert again.interrupt() == 0
        wait_gone(again.pids)
    finally:
        again.close()


@pytest.mark.slow
def test_children_die_with_a_killed_launcher(tmp_path) -> None:
    launched = Launched(tmp_path / "cluster", nodes=2)
    try:
        launched.wait_roles(["node-1", "node-2"])
        pids = set(launched.pids)
        launched.proc.kill()   # no chance to clean up: PR_SET_PDEATHSIG must do it
        launched.proc.wait(10)
        wait_gone(pids, timeout=20)
    finally:
        launched.close()


def test_dashboard_port_taken_is_a_clear_error(tmp_path) -> None:
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "axon", "launch", "--dir", str(tmp_path / "c"),
                               "--port", str(port), "--base-port", str(random_base())],
                              capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("error: cannot serve the dashboard")
    assert "Traceback" not in proc.stderr


def http_get(addr: str, path: str) -> tuple[int, bytes]:
    import http.client
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()

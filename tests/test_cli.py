"""The `axon` command line: help, default node settings, and data commands failing cleanly."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from axon.cli.commands import cli, default_node_settings
from axon.testing.cluster import Cluster, free_ports

COMMANDS = ["serve", "launch", "status", "members", "join", "leave", "remove", "kv"]


def run_cli(*args: str) -> "CliRunner.invoke":
    return CliRunner().invoke(cli, list(args), prog_name="axon")


def defaults(**given: object) -> dict:
    base = dict(host=None, port=7000, node_id=None, data_dir=None, http_addr=None, raft=None,
                gossip=None, bootstrap=False, join=(), seed=())
    base.update(given)
    return default_node_settings(**base)


# ---------------------------------------------------------------------- help and defaults
def test_help_lists_every_command() -> None:
    result = run_cli("--help")
    assert result.exit_code == 0
    for command in COMMANDS:
        assert f"  {command} " in result.output
    for option in ("--seed", "--join", "--port", "--data-dir"):
        assert option in result.output
    kv_help = run_cli("kv", "--help").output
    for command in ("get", "put", "delete", "list"):
        assert f"  {command} " in kv_help


def test_serve_help_keeps_its_flags() -> None:
    out = run_cli("serve", "--help").output
    for flag in ("--node-id", "--data-dir", "--http", "--raft", "--gossip", "--bootstrap", "--join",
                 "--seed", "--cluster-key-file", "--gossip-key-file", "--reap-dead-after",
                 "--request-timeout", "--max-value-bytes", "--log-level", "--log-json"):
        assert flag in out


def test_defaults_without_seed_start_a_new_cluster() -> None:
    s = defaults()
    assert s["node_id"] == "127.0.0.1-7000"
    assert s["data_dir"] == os.path.join(".", "axon-data", "127.0.0.1-7000")
    assert (s["http_addr"], s["raft"], s["gossip"]) == ("127.0.0.1:7000", "127.0.0.1:7001", "127.0.0.1:7002")
    assert s["bootstrap"] is True


def test_defaults_with_seed_join_and_follow_the_port() -> None:
    s = defaults(port=7100, seed=("127.0.0.1:7002",))
    assert s["bootstrap"] is False
    assert s["seed"] == ("127.0.0.1:7002",)
    assert (s["http_addr"], s["raft"], s["gossip"]) == ("127.0.0.1:7100", "127.0.0.1:7101", "127.0.0.1:7102")
    assert s["node_id"] == "127.0.0.1-7100"


def test_explicit_values_win_over_defaults() -> None:
    s = defaults(host="10.1.2.3", node_id="n9", data_dir="d", join=("10.1.2.4:7000,10.1.2.5:7000",))
    assert s["node_id"] == "n9" and s["data_dir"] == "d"
    assert s["http_addr"] == "10.1.2.3:7000"
    assert s["join"] == ("10.1.2.4:7000", "10.1.2.5:7000")
    assert s["bootstrap"] is False


def test_node_option_with_a_command_is_refused() -> None:
    result = run_cli("--seed", "127.0.0.1:7002", "status")
    assert result.exit_code == 1
    assert "--seed is a node option" in result.output


# ---------------------------------------------------------------------- data commands
def axon(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """Run the real CLI in a process, as a user would."""
    return subprocess.run([sys.executable, "-m", "axon", *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def assert_one_line_error(proc: subprocess.CompletedProcess, fragment: str) -> None:
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and fragment in lines[0], lines[0]
    assert proc.stdout == ""


@pytest.mark.parametrize("args", [["kv", "get", "k"], ["kv", "put", "k", "v"], ["kv", "delete", "k"],
                                  ["kv", "list", "--prefix", "a"], ["status"]])
def test_unreachable_node_fails_with_one_line(args: list[str]) -> None:
    [port] = free_ports(1)
    assert_one_line_error(axon(*args, "--addr", f"127.0.0.1:{port}"), "connection refused")


def test_bad_default_node_config_is_one_line_error(tmp_path) -> None:
    assert_one_line_error(axon("--node-id", "bad id!", "--data-dir", str(tmp_path / "d")),
                          "invalid node id")


def test_bad_address_fails_with_one_line() -> None:
    assert_one_line_error(axon("kv", "get", "k", "--addr", "nonsense"), "invalid address")


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    cluster = Cluster(tmp_path_factory.mktemp("cli-node"), n=1)
    try:
        cluster.leader()
        yield cluster.nodes[0].http
    finally:
        cluster.close()


def test_kv_round_trip_and_json(node: str) -> None:
    put = axon("kv", "put", "fruit/apple", "red", "--addr", node)
    assert put.returncode == 0 and put.stdout.startswith("revision ")
    revision = int(put.stdout.split()[1])
    got = axon("kv", "get", "fruit/apple", "--addr", node, "--json")
    assert got.returncode == 0
    assert json.loads(got.stdout) == {"key": "fruit/apple", "value": "red", "revision": revision}
    assert axon("kv", "get", "fruit/apple", "--addr", node).stdout == "red\n"
    cas = axon("kv", "put", "fruit/apple", "green", "--if-revision", str(revision), "--addr", node)
    assert cas.returncode == 0
    axon("kv", "put", "veg/leek", "white", "--addr", node)
    listed = json.loads(axon("kv", "list", "--prefix", "fruit/", "--json", "--addr", node).stdout)
    assert [(i["key"], i["value"]) for i in listed["items"]] == [("fruit/apple", "green")]
    assert axon("kv", "delete", "fruit/apple", "--addr", node).returncode == 0


def test_missing_key_is_404_error(node: str) -> None:
    assert_one_line_error(axon("kv", "get", "no/such/key", "--addr", node), "not found")
    assert_one_line_error(axon("kv", "delete", "no/such/key", "--addr", node), "not found")


def test_revision_mismatch_is_412_error(node: str) -> None:
    assert axon("kv", "put", "cas/key", "v1", "--addr", node).returncode == 0
    proc = axon("kv", "put", "cas/key", "v2", "--if-revision", "999999", "--addr", node)
    assert proc.returncode != 0 and proc.stderr.startswith("error: ")
    assert len(proc.stderr.strip().splitlines()) == 1
    assert axon("kv", "get", "cas/key", "--addr", node).stdout == "v1\n"
    proc = axon("kv", "delete", "cas/key", "--if-revision", "999999", "--addr", node)
    assert proc.returncode != 0 and len(proc.stderr.strip().splitlines()) == 1


def test_bad_key_is_4xx_error(node: str) -> None:
    proc = axon("kv", "put", "x" * 5000, "v", "--addr", node)
    assert proc.returncode != 0
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("error: ")

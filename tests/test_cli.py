"""The `axon` command line: help, node flags from NodeConfig, keygen, and commands failing cleanly."""
from __future__ import annotations

import base64
import dataclasses
import json
import os
import stat
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from axon import keys
from axon.cli import node as cli_node
from axon.cli.main import cli
from axon.cli.node import default_node_settings
from axon.config import NodeConfig, flag_default, node_flags
from axon.testing.cluster import Cluster, free_ports

COMMANDS = ["serve", "launch", "status", "members", "join", "leave", "remove", "kv", "bench", "keygen"]


def run_cli(*args: str) -> "CliRunner.invoke":
    return CliRunner().invoke(cli, list(args), prog_name="axon")


def defaults(**given: object) -> dict:
    base = dict(host=None, port=7000, node_id=None, data_dir=None, http=None, raft=None,
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
                 "--request-timeout", "--max-value-bytes", "--log-level", "--log-json", "--insecure"):
        assert flag in out


def test_defaults_without_seed_start_a_new_cluster() -> None:
    s = defaults()
    assert s["node_id"] == "127.0.0.1-7000"
    assert s["data_dir"] == os.path.join(".", "axon-data", "127.0.0.1-7000")
    assert (s["http"], s["raft"], s["gossip"]) == ("127.0.0.1:7000", "127.0.0.1:7001", "127.0.0.1:7002")
    assert s["bootstrap"] is True


def test_defaults_with_seed_join_and_follow_the_port() -> None:
    s = defaults(port=7100, seed=("127.0.0.1:7002",))
    assert s["bootstrap"] is False
    assert s["seed"] == ("127.0.0.1:7002",)
    assert (s["http"], s["raft"], s["gossip"]) == ("127.0.0.1:7100", "127.0.0.1:7101", "127.0.0.1:7102")
    assert s["node_id"] == "127.0.0.1-7100"


def test_explicit_values_win_over_defaults() -> None:
    s = defaults(host="10.1.2.3", node_id="n9", data_dir="d", join=("10.1.2.4:7000,10.1.2.5:7000",))
    assert s["node_id"] == "n9" and s["data_dir"] == "d"
    assert s["http"] == "10.1.2.3:7000"
    assert s["join"] == ("10.1.2.4:7000", "10.1.2.5:7000")
    assert s["bootstrap"] is False


def test_defaults_of_an_ipv6_host_are_bracketed() -> None:
    s = defaults(host="::1")
    assert (s["http"], s["raft"], s["gossip"]) == ("[::1]:7000", "[::1]:7001", "[::1]:7002")
    assert s["node_id"] == "1-7000"


def test_node_option_with_a_command_is_refused() -> None:
    result = run_cli("--seed", "127.0.0.1:7002", "status")
    assert result.exit_code == 1
    assert "--seed is a node option" in result.output
    result = run_cli("--http", "127.0.0.1:7100", "status")
    assert result.exit_code == 1
    assert "--http is a node option" in result.output


# ---------------------------------------------------------------------- node flags come from NodeConfig
def options_of(command: click.Command) -> dict[str, click.Option]:
    return {p.name: p for p in command.params if isinstance(p, click.Option)}


def test_serve_options_are_node_configs_flag_table() -> None:
    serve = options_of(cli.commands["serve"])
    group = options_of(cli)
    for f, flag in node_flags():
        option = serve[f.name]
        assert option.opts == [flag.option] and option.envvar == flag.envvar, f.name
        assert flag.envvar == "AXON_" + flag.option[2:].upper().replace("-", "_")
        assert group[f.name].opts == [flag.option] and group[f.name].envvar == flag.envvar
        default = flag_default(f.name)
        if default is dataclasses.MISSING:
            assert option.required
        elif flag.load is None and not flag.repeat:
            assert option.default == default, f.name
    assert set(serve) == {f.name for f, _ in node_flags()}


@pytest.fixture
def captured_node(monkeypatch) -> list[NodeConfig]:
    """Commands that would run a node build its NodeConfig instead, and stop there."""
    configs: list[NodeConfig] = []
    monkeypatch.setattr(cli_node, "run_node", lambda flags: configs.append(NodeConfig.from_flags(**flags)))
    monkeypatch.setattr("axon.cli.main.run_node", lambda flags: configs.append(NodeConfig.from_flags(**flags)))
    return configs


def test_serve_without_flags_has_node_configs_defaults(captured_node, tmp_path) -> None:
    result = CliRunner().invoke(cli, ["serve", "--node-id", "n1", "--data-dir", str(tmp_path)], env={})
    assert result.exit_code == 0, result.output
    assert captured_node == [NodeConfig("n1", str(tmp_path))]


def test_serve_reads_axon_variables(captured_node, tmp_path) -> None:
    key = tmp_path / "cluster.key"
    keys.write_key_file(key, bytes(range(32)))
    env = {"AXON_NODE_ID": "env-node", "AXON_DATA_DIR": str(tmp_path), "AXON_REQUEST_TIMEOUT": "2.5",
           "AXON_MAX_VALUE_BYTES": "4096", "AXON_SNAPSHOT_RATE": "0", "AXON_LOG_LEVEL": "debug",
           "AXON_LOG_JSON": "1", "AXON_BOOTSTRAP": "1", "AXON_JOIN": "10.0.0.1:7000,10.0.0.2:7000",
           "AXON_CLUSTER_KEY_FILE": str(key), "AXON_GOSSIP_KEY_FILE": str(key),
           "AXON_REAP_DEAD_AFTER": "30", "AXON_HTTP": "127.0.0.1:8000"}
    result = CliRunner().invoke(cli, ["serve"], env=env)
    assert result.exit_code == 0, result.output
    [config] = captured_node
    assert (config.node_id, config.request_timeout, config.max_value_bytes) == ("env-node", 2.5, 4096)
    assert (config.snapshot_rate_mb, config.log_level, config.log_json) == (0.0, "debug", True)
    assert config.bootstrap and config.join == ["10.0.0.1:7000", "10.0.0.2:7000"]
    assert config.cluster_key == config.gossip_key == bytes(range(32))
    assert (config.reap_dead_after, config.http) == (30.0, "127.0.0.1:8000")


def test_axon_without_a_command_runs_a_node_with_derived_defaults(captured_node, tmp_path) -> None:
    result = CliRunner().invoke(cli, ["--port", "7100", "--data-dir", str(tmp_path)], env={})
    assert result.exit_code == 0, result.output
    [config] = captured_node
    assert (config.node_id, config.http, config.gossip) == ("127.0.0.1-7100", "127.0.0.1:7100", "127.0.0.1:7102")
    assert config.bootstrap and config.request_timeout == flag_default("request_timeout")


# ---------------------------------------------------------------------- keygen
def test_keygen_writes_a_private_base64_key(tmp_path) -> None:
    path = tmp_path / "cluster.key"
    result = run_cli("keygen", "--out", str(path))
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    text = path.read_text()
    assert text.endswith("\n") and len(base64.b64decode(text.strip(), validate=True)) == 32
    assert keys.load_key(path) == base64.b64decode(text)
    again = run_cli("keygen", "--out", str(path))
    assert again.exit_code == 1 and "already exists" in again.output
    assert path.read_text() == text


def test_keygen_prints_a_new_key_each_time() -> None:
    one, two = run_cli("keygen").output, run_cli("keygen").output
    assert len(base64.b64decode(one.strip(), validate=True)) == 32 and one != two


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
    assert_one_line_error(axon("kv", "get", "k", "--addr", "127.0.0.1:7\u00b2"), "invalid address")


def test_key_file_others_can_read_is_refused(tmp_path) -> None:
    key = tmp_path / "cluster.key"
    key.write_text(base64.b64encode(bytes(32)).decode())
    key.chmod(0o644)
    proc = axon("serve", "--node-id", "n1", "--data-dir", str(tmp_path / "d"), "--cluster-key-file", str(key))
    assert_one_line_error(proc, "chmod 600")
    assert not (tmp_path / "d").exists()   # refused before anything was created


@pytest.mark.parametrize("flag, addr", [("--http", "0.0.0.0:{port}"), ("--raft", "10.1.2.3:{port}"),
                                        ("--gossip", "[::]:{port}"), ("--http", "node1.example:{port}")])
def test_a_bind_beyond_loopback_without_a_key_is_refused(tmp_path, flag: str, addr: str) -> None:
    [port] = free_ports(1)
    proc = axon("serve", "--node-id", "n1", "--data-dir", str(tmp_path / "d"), flag, addr.format(port=port))
    assert_one_line_error(proc, "is not a loopback address and there is no cluster key: give --cluster-key-file "
                                "(make one with `axon keygen --out FILE`) or --insecure")
    assert addr.format(port=port) in proc.stderr
    assert not (tmp_path / "d").exists()   # refused before anything was created


def test_insecure_or_a_key_allows_a_bind_beyond_loopback(captured_node, tmp_path) -> None:
    key = tmp_path / "cluster.key"
    keys.write_key_file(key, keys.new_key())
    base = ["serve", "--node-id", "n1", "--data-dir", str(tmp_path), "--http", "0.0.0.0:7000"]
    for args, env in ((["--insecure"], {}), ([], {"AXON_INSECURE": "1"}), (["--cluster-key-file", str(key)], {})):
        result = CliRunner().invoke(cli, base + args, env=env)
        assert result.exit_code == 0, result.output
    assert [(c.insecure, c.cluster_key is not None) for c in captured_node] == \
        [(True, False), (True, False), (False, True)]
    assert captured_node[0].exposed_addresses() == ["0.0.0.0:7000"]


def test_loopback_binds_need_neither_key_nor_insecure(captured_node, tmp_path) -> None:
    for host in ("127.0.0.1", "127.8.9.10", "[::1]", "localhost"):
        result = CliRunner().invoke(cli, ["serve", "--node-id", "n1", "--data-dir", str(tmp_path),
                                          "--http", f"{host}:7000", "--raft", f"{host}:7001",
                                          "--gossip", f"{host}:7002"], env={})
        assert result.exit_code == 0, result.output
    assert all(c.exposed_addresses() == [] for c in captured_node)


def test_keygen_to_an_unwritable_place_is_one_line(tmp_path) -> None:
    assert_one_line_error(axon("keygen", "--out", str(tmp_path / "no" / "such" / "dir" / "k")), "cannot create")


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


# ---------------------------------------------------------------------- auth tokens
@pytest.fixture(scope="module")
def auth_node(tmp_path_factory):
    """One node bootstrapped with --auth: (its address, the root token from its data dir)."""
    cluster = Cluster(tmp_path_factory.mktemp("cli-auth"), 0, start=False)
    try:
        node = cluster.new_node(extra_args=["--auth"])
        node.start(bootstrap=True)
        node.wait_serving()
        path = os.path.join(node.data_dir, "root.token")
        cluster.wait_for(lambda: os.path.exists(path) and axon(
            "token", "list", "--addr", node.http, "--token", open(path).read().strip()).returncode == 0, 20.0)
        with open(path) as f:
            yield node.http, f.read().strip()
    finally:
        cluster.close()


def test_token_create_list_revoke_and_token_option(auth_node) -> None:
    addr, root = auth_node
    made = axon("token", "create", "app-reader", "--role", "read", "--prefix", "app/",
                "--addr", addr, "--token", root)
    assert made.returncode == 0, made.stderr
    reader = made.stdout.strip()
    assert reader.startswith("axon_")
    listed = axon("token", "list", "--addr", addr, "--token", root)
    assert "app-reader" in listed.stdout and "read" in listed.stdout and reader not in listed.stdout
    assert axon("kv", "put", "app/a", "1", "--addr", addr, "--token", root).returncode == 0
    env = {**os.environ, "AXON_TOKEN": reader}
    got = subprocess.run([sys.executable, "-m", "axon", "kv", "get", "app/a", "--addr", addr],
                         capture_output=True, text=True, timeout=30, env=env, stdin=subprocess.DEVNULL)
    assert got.stdout == "1\n", got.stderr
    assert_one_line_error(axon("kv", "get", "app/a", "--addr", addr), "token")
    assert_one_line_error(axon("kv", "put", "app/a", "2", "--addr", addr, "--token", reader), "read")
    assert axon("token", "revoke", "app-reader", "--addr", addr, "--token", root).returncode == 0
    assert_one_line_error(axon("kv", "get", "app/a", "--addr", addr, "--token", reader), "token")


def test_token_help_lists_its_commands() -> None:
    text = run_cli("token", "--help").output
    for command in ("create", "list", "revoke"):
        assert f"  {command} " in text
    assert "--token" in run_cli("kv", "get", "--help").output

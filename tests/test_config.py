"""axon.config: NodeConfig's flag table, building a config from flags, node ids."""
from __future__ import annotations

import dataclasses

import pytest

from axon.config import ConfigError, NodeConfig, check_node_id, flag_default, node_flags, split_values


def test_every_flag_is_declared_once_with_its_variable() -> None:
    flags = node_flags()
    options = [flag.option for _, flag in flags]
    assert len(set(options)) == len(options)
    for f, flag in flags:
        assert flag.envvar == "AXON_" + flag.option[2:].upper().replace("-", "_"), f.name
        assert flag.help.endswith("."), f.name
    assert {f.name for f, _ in flags} >= {   # the contract's flags stay; new ones join them
        "node_id", "data_dir", "http", "raft", "gossip", "bootstrap", "join", "seed", "cluster_key",
        "gossip_key", "reap_dead_after", "request_timeout", "max_value_bytes", "snapshot_rate_mb",
        "log_level", "log_json", "max_connections", "idle_timeout", "header_timeout", "body_timeout",
        "max_inflight_bytes"}


def test_defaults_are_the_fields_defaults() -> None:
    assert flag_default("node_id") is dataclasses.MISSING
    assert flag_default("request_timeout") == NodeConfig("n", "d").request_timeout == 5.0
    assert flag_default("http") == "127.0.0.1:7000" and flag_default("gossip") == "127.0.0.1:7002"
    assert flag_default("join") == [] and flag_default("join") is not flag_default("join")


def test_from_flags_splits_lists_and_validates(tmp_path) -> None:
    config = NodeConfig.from_flags(node_id="n1", data_dir=str(tmp_path), join=("a:1,b:2", "c:3"),
                                   seed=(), cluster_key=None, log_level="warning")
    assert config.join == ["a:1", "b:2", "c:3"] and config.seed == []
    assert config.log_level == "warning" and config.request_timeout == 5.0
    with pytest.raises(ConfigError, match="--join address"):
        NodeConfig.from_flags(node_id="n1", data_dir="d", join=("nohost",))
    with pytest.raises(ConfigError, match="request-timeout"):
        NodeConfig.from_flags(node_id="n1", data_dir="d", request_timeout=0.0)
    with pytest.raises(ConfigError, match="--http address"):
        NodeConfig.from_flags(node_id="n1", data_dir="d", http="127.0.0.1:\u00b2")
    with pytest.raises(TypeError, match="max_key_bytes"):
        NodeConfig.from_flags(node_id="n1", data_dir="d", max_key_bytes=5)


def test_split_values() -> None:
    assert split_values(("a, b", "c", " ", "")) == ["a", "b", "c"]


@pytest.mark.parametrize("node_id", ["n1", "node-1.a_b", "A" * 63])
def test_good_node_ids(node_id: str) -> None:
    assert check_node_id(node_id) == node_id


@pytest.mark.parametrize("node_id", ["", "-n", ".n", "a b", "n1\n", "A" * 64, "n\u00e9", None])
def test_bad_node_ids(node_id: str) -> None:
    with pytest.raises(ConfigError, match="invalid node id"):
        check_node_id(node_id)

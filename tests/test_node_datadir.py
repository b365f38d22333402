"""The data dir: claimed for one node id, owner-only, older dirs tightened."""
from __future__ import annotations

import os
import stat

import pytest

from axon.config import ConfigError
from axon.node.datadir import claim_data_dir


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_new_data_dir_is_owner_only(tmp_path):
    d = tmp_path / "n1"
    claim_data_dir(str(d), "n1")
    assert _mode(d) == 0o700
    assert (d / "node.json").exists()


def test_an_older_data_dir_is_tightened(tmp_path):
    d = tmp_path / "n1"
    claim_data_dir(str(d), "n1")
    (d / "raft").mkdir(mode=0o755)
    wal = d / "raft" / "wal-0001.log"
    wal.write_bytes(b"x")
    os.chmod(d, 0o755)
    os.chmod(d / "raft", 0o755)
    os.chmod(wal, 0o644)
    claim_data_dir(str(d), "n1")
    assert (_mode(d), _mode(d / "raft"), _mode(wal)) == (0o700, 0o700, 0o600)


def test_another_nodes_dir_or_a_foreign_dir_is_refused(tmp_path):
    d = tmp_path / "n1"
    claim_data_dir(str(d), "n1")
    with pytest.raises(ConfigError, match="belongs to node 'n1'"):
        claim_data_dir(str(d), "n2")
    foreign = tmp_path / "other"
    foreign.mkdir()
    (foreign / "something").write_text("x")
    with pytest.raises(ConfigError, match="not empty"):
        claim_data_dir(str(foreign), "n1")
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ConfigError, match="not a directory"):
        claim_data_dir(str(a_file), "n1")

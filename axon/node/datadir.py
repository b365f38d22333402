"""A node's data directory: claimed for one node id, created owner-only; node.json holds the
node id and, once known, the id of the cluster the node belongs to."""
from __future__ import annotations

import json
import os

from axon.api.validate import is_cluster_id
from axon.config import ConfigError

NODE_FILE = "node.json"
NODE_FILE_FORMAT = 1      # "cluster_id" was added without a new format: older versions ignore it


def claim_data_dir(data_dir: str, node_id: str) -> None:
    """Create the data dir or check that it belongs to this node id."""
    if os.path.exists(data_dir) and not os.path.isdir(data_dir):
        # makedirs would only say "File exists", which hides the actual mistake.
        raise ConfigError(f"data dir {data_dir} is not a directory")
    try:
        os.makedirs(data_dir, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create data dir {data_dir}: {exc.strerror}") from None
    if not os.path.isdir(data_dir):
        raise ConfigError(f"data dir {data_dir} is not a directory")
    path = os.path.join(data_dir, NODE_FILE)
    if os.path.exists(path):
        _check_owner(path, data_dir, node_id)
        tighten_modes(data_dir)
        return
    if any(name != NODE_FILE for name in os.listdir(data_dir)):
        raise ConfigError(f"data dir {data_dir} is not empty and has no {NODE_FILE}; refusing to use it")
    _write_node_file(path, {"node_id": node_id, "format": NODE_FILE_FORMAT})


def read_node_id(data_dir: str) -> str:
    """The node id node.json holds (ConfigError when ``data_dir`` is not an Axon data dir)."""
    path = os.path.join(data_dir, NODE_FILE)
    node_id = _read_node_file(path, data_dir).get("node_id")
    if not isinstance(node_id, str) or not node_id:
        raise ConfigError(f"{path} names no node id; is {data_dir} an Axon data dir?")
    return node_id


def read_cluster_id(data_dir: str) -> str | None:
    """The cluster id node.json holds (None before the node bootstrapped or joined a cluster)."""
    path = os.path.join(data_dir, NODE_FILE)
    cluster_id = _read_node_file(path, data_dir).get("cluster_id")
    if cluster_id is not None and not is_cluster_id(cluster_id):
        raise ConfigError(f"{path} holds an invalid cluster id {cluster_id!r}")
    return cluster_id


def write_cluster_id(data_dir: str, cluster_id: str) -> None:
    """Record the id of the cluster this node belongs to in node.json (replaced atomically)."""
    path = os.path.join(data_dir, NODE_FILE)
    record = _read_node_file(path, data_dir)
    record["cluster_id"] = cluster_id
    _write_node_file(path, record)


def _check_owner(path: str, data_dir: str, node_id: str) -> None:
    stored = _read_node_file(path, data_dir).get("node_id")
    if stored != node_id:
        raise ConfigError(f"data dir {data_dir} belongs to node {stored!r}, not {node_id!r}")


def _read_node_file(path: str, data_dir: str) -> dict:
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, ValueError):
        record = None
    if not isinstance(record, dict):
        raise ConfigError(f"{path} is unreadable or corrupt; is {data_dir} an Axon data dir?")
    return record


def _write_node_file(path: str, record: dict) -> None:
    tmp = path + ".tmp"
    try:
        # 0600 whatever the umask: node.json names the cluster this node may talk to
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(record, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _sync_dir(os.path.dirname(path))
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None


def _sync_dir(path: str) -> None:
    """fsync a directory, so a rename in it survives a crash."""
    fd = os.open(path or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def tighten_modes(data_dir: str) -> None:
    """Make a data dir written by an older version owner-only: directories 0700, files 0600.

    Values are in the WAL and LevelDB files in clear; the node's umask (0077) keeps new
    files private, this fixes the ones made before it.
    """
    for root, dirs, files in os.walk(data_dir):
        _chmod(root, 0o700)
        for name in files:
            _chmod(os.path.join(root, name), 0o600)


def _chmod(path: str, mode: int) -> None:
    try:
        if os.stat(path, follow_symlinks=False).st_mode & 0o7777 != mode:
            os.chmod(path, mode, follow_symlinks=False)
    except OSError as exc:
        raise ConfigError(f"cannot make {path} private (chmod {mode:o}): {exc.strerror}") from None

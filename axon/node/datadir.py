"""A node's data directory: claimed for one node id, created owner-only."""
from __future__ import annotations

import json
import os

from axon.config import ConfigError

NODE_FILE = "node.json"


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
    _write_node_file(path, node_id)


def _check_owner(path: str, data_dir: str, node_id: str) -> None:
    try:
        with open(path) as f:
            stored = json.load(f).get("node_id")
    except (OSError, ValueError, AttributeError):
        raise ConfigError(f"{path} is unreadable or corrupt; is {data_dir} an Axon data dir?") from None
    if stored != node_id:
        raise ConfigError(f"data dir {data_dir} belongs to node {stored!r}, not {node_id!r}")


def _write_node_file(path: str, node_id: str) -> None:
    tmp = path + ".tmp"
    try:
        with open(tmp, "w") as f:
            json.dump({"node_id": node_id, "format": 1}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None


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

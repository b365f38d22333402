"""NodeConfig: the one configuration object of a node, built from CLI flags / AXON_* variables."""
from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field

from axon.api.errors import ConfigError

_NODE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def parse_addr(text: str, what: str = "address") -> tuple[str, int]:
    """'host:port' -> (host, port); ConfigError on anything else."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"invalid {what} {text!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)


def check_node_id(node_id: str) -> str:
    if not _NODE_ID.match(node_id or ""):
        raise ConfigError(f"invalid node id {node_id!r}: use 1-63 letters, digits, '.', '_' or '-'")
    return node_id


def read_key_file(path: str | None, what: str) -> bytes | None:
    """Read a shared secret; ConfigError if missing, unreadable or too short."""
    if not path:
        return None
    try:
        with open(path, "rb") as f:
            key = f.read().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} file {path}: {exc.strerror}") from None
    if len(key) < 16:
        raise ConfigError(f"{what} in {path} is too short: use at least 16 bytes")
    return key


def read_gossip_key(path: str | None) -> bytes | None:
    """A gossip key file holds 16, 24 or 32 raw bytes, or that many bytes as hex or base64."""
    if not path:
        return None
    try:
        with open(path, "rb") as f:
            raw = f.read().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read gossip key file {path}: {exc.strerror}") from None
    for key in (_unhex(raw), _unbase64(raw), raw):
        if key is not None and len(key) in (16, 24, 32):
            return key
    raise ConfigError(f"gossip key in {path} must be 16, 24 or 32 bytes (raw, hex or base64)")


def _unhex(raw: bytes) -> bytes | None:
    try:
        return bytes.fromhex(raw.decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        return None


def _unbase64(raw: bytes) -> bytes | None:
    try:
        return base64.b64decode(raw, validate=True)
    except (ValueError, binascii.Error):
        return None


@dataclass
class NodeConfig:
    node_id: str
    data_dir: str
    http: str = "127.0.0.1:7000"
    raft: str = "127.0.0.1:7001"
    gossip: str = "127.0.0.1:7002"
    bootstrap: bool = False
    join: list[str] = field(default_factory=list)
    seed: list[str] = field(default_factory=list)
    cluster_key: bytes | None = None
    gossip_key: bytes | None = None
    request_timeout: float = 5.0          # bound on any client request that needs the leader
    max_value_bytes: int = 1 << 20
    max_key_bytes: int = 1024
    tick_interval: float = 0.05           # one Raft tick
    election_ticks: int = 10              # election timeout 0.5-1 s with the default tick
    heartbeat_ticks: int = 2
    snapshot_entries: int = 20000         # compact the log after this many applied entries
    snapshot_rate_mb: float = 5.0         # MB/s a leader streams a snapshot at (0: no limit)
    reap_dead_after: float | None = None
    log_level: str = "info"
    log_json: bool = False

    def validate(self) -> "NodeConfig":
        check_node_id(self.node_id)
        if not self.data_dir:
            raise ConfigError("--data-dir is required")
        for name in ("http", "raft", "gossip"):
            parse_addr(getattr(self, name), f"--{name} address")
        for addr in self.join:
            parse_addr(addr, "--join address")
        for addr in self.seed:
            parse_addr(addr, "--seed address")
        if self.request_timeout <= 0:
            raise ConfigError("--request-timeout must be positive")
        if self.reap_dead_after is not None and self.reap_dead_after <= 0:
            raise ConfigError("--reap-dead-after must be positive")
        if self.snapshot_rate_mb < 0:
            raise ConfigError("--snapshot-rate must be 0 (no limit) or positive")
        if self.max_value_bytes <= 0:
            raise ConfigError("--max-value-bytes must be positive")
        return self

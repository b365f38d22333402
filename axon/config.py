"""NodeConfig, the one configuration object of a node, and the table of its flags.

Every node flag is declared once, on its NodeConfig field: the field's default is the flag's
default, and the field's ``Flag`` (dataclass field metadata) names its command line option,
its AXON_* environment variable and its help.  `axon serve` and `axon` without a command
build their options from this table (axon/cli/node_options.py).
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from axon.address import AddressError, format_addr, is_loopback
from axon.address import parse_addr as _parse_addr
from axon.keys import KeyFileError, load_key

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7000       # a node's HTTP port; Raft uses PORT+1 and gossip PORT+2
LOG_LEVELS = ("debug", "info", "warning", "error")

_NODE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


class ConfigError(Exception):
    """Bad flags, environment or data directory: the CLI prints it on one line and exits non-zero."""


def parse_addr(text: str, what: str = "address") -> tuple[str, int]:
    """'host:port' or '[v6]:port' -> (host, port) (see axon.address); ConfigError on anything else."""
    try:
        return _parse_addr(text, what)
    except AddressError as exc:
        raise ConfigError(str(exc)) from None


def check_node_id(node_id: str) -> str:
    """node_id itself if it is 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit."""
    if not isinstance(node_id, str) or not _NODE_ID.fullmatch(node_id):
        raise ConfigError(f"invalid node id {node_id!r}: use 1-63 letters, digits, '.', '_' or '-'")
    return node_id


def read_cluster_key(path: str | None) -> bytes | None:
    """The cluster key in a key file (axon.keys decodes it), or None without a file."""
    return _read_key(path, "cluster key")


def read_gossip_key(path: str | None) -> bytes | None:
    """The gossip key in a key file (axon.keys decodes it): 16, 24 or 32 bytes, or None."""
    # imported here: cryptography takes ~80 ms to load, and only a node needs it
    from axon.gossip.crypto import KEY_SIZES
    key = _read_key(path, "gossip key")
    if key is not None and len(key) not in KEY_SIZES:
        raise ConfigError(f"gossip key in {path} is {len(key)} bytes; it must be 16, 24 or 32 "
                          f"(`axon keygen` writes a 32-byte key)")
    return key


def _read_key(path: str | None, what: str) -> bytes | None:
    if not path:
        return None
    try:
        return load_key(path, what)
    except KeyFileError as exc:
        raise ConfigError(str(exc)) from None


def split_values(values: tuple[str, ...] | list[str]) -> list[str]:
    """Flags may repeat, and an environment variable may hold several comma/space separated values."""
    return [v for value in values for v in value.replace(",", " ").split()]


@dataclass(frozen=True)
class Flag:
    """How one NodeConfig field is given on the command line and in the environment."""
    option: str                          # e.g. "--request-timeout"
    envvar: str                          # e.g. "AXON_REQUEST_TIMEOUT"
    help: str
    kind: type = str                     # str, int or float; bool is an on/off switch
    repeat: bool = False                 # repeatable; each value may list several (split_values)
    choices: tuple[str, ...] = ()
    load: Callable[[Any], Any] | None = None   # the given value -> the field's value (a file -> a key)


def _flag(option: str, envvar: str, help: str, **how: Any) -> dict:
    return {"flag": Flag(option, envvar, help, **how)}


@dataclass
class NodeConfig:
    """Everything a node runs with; the fields with a Flag are its command line (see node_flags)."""

    node_id: str = field(metadata=_flag("--node-id", "AXON_NODE_ID", "Unique id of this node."))
    data_dir: str = field(metadata=_flag("--data-dir", "AXON_DATA_DIR", "Where this node keeps its data."))
    http: str = field(default=format_addr(DEFAULT_HOST, DEFAULT_PORT),
                      metadata=_flag("--http", "AXON_HTTP", "HTTP API address HOST:PORT."))
    raft: str = field(default=format_addr(DEFAULT_HOST, DEFAULT_PORT + 1),
                      metadata=_flag("--raft", "AXON_RAFT", "Raft address HOST:PORT."))
    gossip: str = field(default=format_addr(DEFAULT_HOST, DEFAULT_PORT + 2),
                        metadata=_flag("--gossip", "AXON_GOSSIP", "Gossip address HOST:PORT."))
    bootstrap: bool = field(default=False, metadata=_flag(
        "--bootstrap", "AXON_BOOTSTRAP", "Form a new one-node cluster if the data dir is empty.", kind=bool))
    join: list[str] = field(default_factory=list, metadata=_flag(
        "--join", "AXON_JOIN", "HTTP address of a member to join through (repeatable).", repeat=True))
    seed: list[str] = field(default_factory=list, metadata=_flag(
        "--seed", "AXON_SEED", "Gossip address of a member to discover the cluster through (repeatable).",
        repeat=True))
    cluster_key: bytes | None = field(default=None, metadata=_flag(
        "--cluster-key-file", "AXON_CLUSTER_KEY_FILE",
        "Key file that authenticates and encrypts Raft frames and gossip packets and proves joins "
        "(mode 0600; `axon keygen` writes one).",
        load=read_cluster_key))
    gossip_key: bytes | None = field(default=None, metadata=_flag(
        "--gossip-key-file", "AXON_GOSSIP_KEY_FILE",
        "Deprecated: give the file as --cluster-key-file, which keys gossip too. Used for gossip only "
        "when there is no cluster key (16, 24 or 32 bytes, mode 0600); ignored, with a warning, beside one.",
        load=read_gossip_key))
    insecure: bool = field(default=False, metadata=_flag(
        "--insecure", "AXON_INSECURE",
        "Run without --cluster-key-file on addresses other than loopback: peer traffic is then "
        "neither authenticated nor encrypted, and anyone who reaches the node may join.", kind=bool))
    reap_dead_after: float | None = field(default=None, metadata=_flag(
        "--reap-dead-after", "AXON_REAP_DEAD_AFTER",
        "Remove a voter from Raft after gossip has reported it dead this long (s).", kind=float))
    request_timeout: float = field(default=5.0, metadata=_flag(
        "--request-timeout", "AXON_REQUEST_TIMEOUT", "Seconds before a request without quorum gets 503.",
        kind=float))
    max_value_bytes: int = field(default=1 << 20, metadata=_flag(
        "--max-value-bytes", "AXON_MAX_VALUE_BYTES", "Largest value accepted (413 above).", kind=int))
    snapshot_rate_mb: float = field(default=5.0, metadata=_flag(
        "--snapshot-rate", "AXON_SNAPSHOT_RATE",
        "MB/s at which a leader sends a snapshot to a lagging node (0: no limit).", kind=float))
    snapshot_bytes: int = field(default=64 << 20, metadata=_flag(
        "--snapshot-bytes", "AXON_SNAPSHOT_BYTES",
        "Compact the Raft log once the entries it holds in memory reach this many bytes "
        "(as it does after a number of entries).", kind=int))
    log_level: str = field(default="info", metadata=_flag(
        "--log-level", "AXON_LOG_LEVEL", "How much to log.", choices=LOG_LEVELS))
    log_json: bool = field(default=False, metadata=_flag(
        "--log-json", "AXON_LOG_JSON", "Log JSON lines.", kind=bool))
    # limits on what clients may hold of a node (every listener)
    max_connections: int = field(default=4096, metadata=_flag(
        "--max-connections", "AXON_MAX_CONNECTIONS",
        "HTTP connections open at once; past it new ones get 503 and are closed (RLIMIT_NOFILE is "
        "raised to fit).", kind=int))
    idle_timeout: float = field(default=60.0, metadata=_flag(
        "--idle-timeout", "AXON_IDLE_TIMEOUT", "Seconds a keep-alive connection may idle.", kind=float))
    header_timeout: float = field(default=10.0, metadata=_flag(
        "--header-timeout", "AXON_HEADER_TIMEOUT", "Seconds a request head may take to arrive (408).",
        kind=float))
    body_timeout: float = field(default=30.0, metadata=_flag(
        "--body-timeout", "AXON_BODY_TIMEOUT", "Seconds a request body may stall (408).", kind=float))
    max_inflight_bytes: int = field(default=256 << 20, metadata=_flag(
        "--max-inflight-bytes", "AXON_MAX_INFLIGHT_BYTES",
        "Request-body bytes held at once across connections; past it 503 with Retry-After.", kind=int))
    max_page_bytes: int = field(default=4 << 20, metadata=_flag(
        "--max-page-bytes", "AXON_MAX_PAGE_BYTES",
        "Bytes of keys and values in one listing page; past it the page ends early with `next` "
        "set (one bigger item still comes alone).", kind=int))
    write_queue_bytes: int = field(default=1 << 20, metadata=_flag(
        "--write-queue-bytes", "AXON_WRITE_QUEUE_BYTES",
        "Bytes of large writes (64 KiB or more) let into the Raft log at once; the others wait "
        "their turn (503 after the request timeout), so small writes never queue behind more. "
        "While other requests are about, a large write's turn returns after a pause as long as it held it.",
        kind=int))
    # disk space (axon/node/disk.py): past either limit writes get 507 and a "nospace" alarm is raised
    min_free_bytes: int = field(default=128 << 20, metadata=_flag(
        "--min-free-bytes", "AXON_MIN_FREE_BYTES",
        "Refuse writes (507, alarm \"nospace\") while the data dir's filesystem has less free space "
        "than this (0: no floor).", kind=int))
    quota_bytes: int = field(default=0, metadata=_flag(
        "--quota-bytes", "AXON_QUOTA_BYTES",
        "Refuse writes (507, alarm \"nospace\") while the data dir holds this many bytes or more "
        "(0: no quota).", kind=int))
    # watches (axon/api/watch.py): the change history kept for watchers to start or resume from
    watch_history: int = field(default=20_000, metadata=_flag(
        "--watch-history", "AXON_WATCH_HISTORY",
        "Changes kept for watches to start from or resume in; an older start gets 410.", kind=int))
    watch_history_bytes: int = field(default=16 << 20, metadata=_flag(
        "--watch-history-bytes", "AXON_WATCH_HISTORY_BYTES",
        "Bytes of keys and values kept for watches (the history is cut at either bound).", kind=int))
    watch_progress_interval: float = field(default=5.0, metadata=_flag(
        "--watch-progress-interval", "AXON_WATCH_PROGRESS_INTERVAL",
        "Seconds without a change after which a watch gets a progress event (at most 10).", kind=float))
    # HTTPS, browser safety and the audit log (a cluster is all-https or all-http: a node that
    # serves https forwards to its leader over https too)
    tls_cert_file: str | None = field(default=None, metadata=_flag(
        "--tls-cert-file", "AXON_TLS_CERT_FILE",
        "Serve the HTTP API over TLS with this certificate (PEM; with --tls-key-file)."))
    tls_key_file: str | None = field(default=None, metadata=_flag(
        "--tls-key-file", "AXON_TLS_KEY_FILE", "The private key of --tls-cert-file (PEM, mode 0600)."))
    tls_client_ca_file: str | None = field(default=None, metadata=_flag(
        "--tls-client-ca-file", "AXON_TLS_CLIENT_CA_FILE",
        "Require client certificates signed by this CA (PEM)."))
    tls_ca_file: str | None = field(default=None, metadata=_flag(
        "--tls-ca-file", "AXON_TLS_CA_FILE",
        "The CA that signed the nodes' certificates, trusted when forwarding to the leader and "
        "joining [default: --tls-client-ca-file]."))
    allowed_origin: list[str] = field(default_factory=list, metadata=_flag(
        "--allowed-origin", "AXON_ALLOWED_ORIGIN",
        "A web origin (scheme://host:port) whose pages may send state-changing requests "
        "(repeatable); others get 403.", repeat=True))
    # client auth: on from the first entry of a cluster bootstrapped with it (axon/api/auth.py)
    auth: bool = field(default=False, metadata=_flag(
        "--auth", "AXON_AUTH",
        "With --bootstrap: turn client auth on from the start and write a root token to "
        "<data-dir>/root.token (mode 0600).", kind=bool))
    audit_log: str | None = field(default=None, metadata=_flag(
        "--audit-log", "AXON_AUDIT_LOG",
        "Append membership and auth changes as JSON lines to this file (mode 0600)."))
    # peer mTLS on Raft connections (the three go together; checked where the transport is made)
    peer_cert_file: str | None = field(default=None, metadata=_flag(
        "--peer-cert-file", "AXON_PEER_CERT_FILE",
        "Wrap Raft connections in TLS with this certificate (PEM), whose common name must be the "
        "node id; with --peer-key-file and --peer-ca-file."))
    peer_key_file: str | None = field(default=None, metadata=_flag(
        "--peer-key-file", "AXON_PEER_KEY_FILE", "The private key of --peer-cert-file (PEM, mode 0600)."))
    peer_ca_file: str | None = field(default=None, metadata=_flag(
        "--peer-ca-file", "AXON_PEER_CA_FILE",
        "Accept and reach only Raft peers whose certificate this CA signed (PEM)."))
    # not flags: fixed for every node
    max_key_bytes: int = 1024
    tick_interval: float = 0.05           # one Raft tick
    election_ticks: int = 10              # election timeout 0.5-1 s with the default tick
    heartbeat_ticks: int = 2
    snapshot_entries: int = 20000         # compact the log after this many applied entries

    @classmethod
    def from_flags(cls, **given: Any) -> "NodeConfig":
        """Build and validate a config from flag values as the command line gives them."""
        unknown = set(given) - {f.name for f, _ in node_flags()}
        if unknown:
            raise TypeError(f"not node flags: {', '.join(sorted(unknown))}")
        values = {}
        for f, flag in node_flags():
            if f.name not in given:
                continue
            value = given[f.name]
            if flag.repeat:
                value = split_values(value)
            if flag.load is not None:
                value = flag.load(value)
            values[f.name] = value
        return cls(**values).validate()

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
        exposed = self.exposed_addresses()
        if exposed and self.cluster_key is None and not self.insecure:
            raise ConfigError(f"{', '.join(exposed)} is not a loopback address and there is no cluster key: "
                              f"give --cluster-key-file (make one with `axon keygen --out FILE`) or --insecure")
        if self.request_timeout <= 0:
            raise ConfigError("--request-timeout must be positive")
        for name in ("max_connections", "idle_timeout", "header_timeout", "body_timeout",
                     "max_inflight_bytes", "max_page_bytes", "write_queue_bytes"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be positive")
        if self.reap_dead_after is not None and self.reap_dead_after <= 0:
            raise ConfigError("--reap-dead-after must be positive")
        if self.snapshot_rate_mb < 0:
            raise ConfigError("--snapshot-rate must be 0 (no limit) or positive")
        if self.max_value_bytes <= 0:
            raise ConfigError("--max-value-bytes must be positive")
        if self.min_free_bytes < 0 or self.quota_bytes < 0:
            raise ConfigError("--min-free-bytes and --quota-bytes must be 0 (off) or positive")
        if self.snapshot_bytes <= 0:
            raise ConfigError("--snapshot-bytes must be positive")
        if self.watch_history <= 0 or self.watch_history_bytes <= 0:
            raise ConfigError("--watch-history and --watch-history-bytes must be positive")
        if not 0 < self.watch_progress_interval <= 10:
            raise ConfigError("--watch-progress-interval must be more than 0 and at most 10 seconds")
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ConfigError("--tls-cert-file and --tls-key-file go together")
        if self.tls_client_ca_file and not self.tls_cert_file:
            raise ConfigError("--tls-client-ca-file needs --tls-cert-file and --tls-key-file")
        for origin in self.allowed_origin:
            if not re.fullmatch(r"https?://[^/\s]+", origin):
                raise ConfigError(f"--allowed-origin {origin!r}: give scheme://host[:port], no path")
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(f"--log-level must be one of {', '.join(LOG_LEVELS)}")
        return self

    def exposed_addresses(self) -> list[str]:
        """The --http/--raft/--gossip addresses this node binds beyond loopback (0.0.0.0 included)."""
        return [addr for addr in (self.http, self.raft, self.gossip) if not is_loopback(parse_addr(addr)[0])]


def node_flags() -> list[tuple[dataclasses.Field, Flag]]:
    """Every NodeConfig field that is a node flag, with its Flag, in declaration order."""
    return [(f, f.metadata["flag"]) for f in dataclasses.fields(NodeConfig) if "flag" in f.metadata]


def flag_default(name: str) -> Any:
    """The default of NodeConfig's field name (dataclasses.MISSING for a required one)."""
    f = NodeConfig.__dataclass_fields__[name]
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default

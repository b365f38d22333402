"""Private network namespaces for real-process tests: one per node, on a bridge, partitioned by nft rules.

Layout of one ``NetnsNetwork`` (``<tag>`` is ``<pid>x<n>``, so stale copies can be
recognised after a crash):

* namespace ``axon-chaos-<tag>-br`` holds the bridge ``br0``;
* namespace ``axon-chaos-<tag>-<node>`` per node, with ``eth0`` (a veth into the
  bridge) at ``10.213.S.i/24`` and loopback up;
* the root namespace gets ``axc<tag>`` (a veth into the bridge) at
  ``10.213.S.254`` so the test driver reaches every node.  The subnet is picked
  so it overlaps nothing routed in the root namespace, and exists only here.

A partition is a set of node pairs that cannot talk: each node's namespace has
an nft table whose ``blocked`` set holds the peers it drops, in and out, so
packets vanish (timeouts, not resets) as on a real network.  The driver is
never blocked.  Everything is removed by ``close()`` (also at exit), and
``cleanup_stale()`` removes what a killed run left behind.
"""
from __future__ import annotations

import atexit
import ipaddress
import itertools
import os
import shutil
import subprocess
from typing import Iterable, Sequence

PREFIX = "axon-chaos-"
ROOT_LINK_PREFIX = "axc"
TABLE = "axon_chaos"
HTTP_PORT, RAFT_PORT, GOSSIP_PORT = 7000, 7001, 7002
DRIVER_HOST = 254
COMMAND_TIMEOUT = 20.0

_sequence = itertools.count(1)


class NetnsError(Exception):
    """A namespace, link or firewall command failed (the message has the command and its output)."""


def unavailable_reason() -> str | None:
    """Why namespaces cannot be used here (None when they can)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "network namespaces need root"
    for tool, package in (("ip", "iproute2"), ("nft", "nftables")):
        if shutil.which(tool) is None:
            return f"`{tool}` is missing (install {package})"
    probe = f"{PREFIX}{os.getpid()}x0-probe"
    try:
        _run(["ip", "netns", "add", probe])
        _run(["ip", "netns", "exec", probe, "nft", "list", "tables"])
    except NetnsError as exc:
        return f"cannot create a network namespace with nft: {exc}"
    finally:
        _run(["ip", "netns", "delete", probe], check=False)
    return None


def _run(args: Sequence[str], check: bool = True, stdin: str | None = None) -> str:
    try:
        proc = subprocess.run(list(args), input=stdin, capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NetnsError(f"{' '.join(args)}: {exc}") from None
    if check and proc.returncode != 0:
        raise NetnsError(f"{' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner_pid(name: str, prefix: str) -> int | None:
    digits = name[len(prefix):].split("x", 1)[0]
    return int(digits) if digits.isdigit() else None


def cleanup_stale() -> list[str]:
    """Delete namespaces and root links of runs whose process is gone; returns what was removed."""
    removed = []
    for name in list_namespaces():
        pid = _owner_pid(name, PREFIX)
        if pid is not None and not _pid_alive(pid):
            _run(["ip", "netns", "delete", name], check=False)
            removed.append(name)
    for link in _root_links():
        pid = _owner_pid(link, ROOT_LINK_PREFIX)
        if pid is not None and not _pid_alive(pid):
            _run(["ip", "link", "delete", link], check=False)
            removed.append(link)
    return removed


def list_namespaces() -> list[str]:
    """Names of this module's namespaces (any run)."""
    out = _run(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in out.splitlines() if line.startswith(PREFIX)]


def _root_links() -> list[str]:
    out = _run(["ip", "-o", "link", "show"], check=False)
    links = []
    for line in out.splitlines():
        parts = line.split(":", 2)
        if len(parts) >= 2:
            name = parts[1].strip().split("@", 1)[0]
            if name.startswith(ROOT_LINK_PREFIX) and name[len(ROOT_LINK_PREFIX):][:1].isdigit():
                links.append(name)
    return links


def _routed_networks() -> list[ipaddress.IPv4Network]:
    nets = []
    for line in _run(["ip", "-4", "route", "show", "table", "all"], check=False).splitlines():
        first = line.split()[0] if line.split() else ""
        if first in ("local", "broadcast", "unreachable", "blackhole", "prohibit"):
            first = line.split()[1]
        if first == "default":
            continue
        try:
            nets.append(ipaddress.ip_network(first, strict=False))
        except ValueError:
            continue
    return nets


def _pick_subnet() -> ipaddress.IPv4Network:
    used = _routed_networks()
    start = os.getpid() % 250
    for k in range(250):
        candidate = ipaddress.ip_network(f"10.213.{(start + k) % 250}.0/24")
        if not any(candidate.overlaps(net) for net in used):
            return candidate
    raise NetnsError("no free 10.213.x.0/24 subnet for the test network")


class NetnsNetwork:
    """A bridge and one namespace per node; ``partition`` / ``heal`` change who can talk to whom."""

    def __init__(self, node_ids: Iterable[str] = ()) -> None:
        self.tag = f"{os.getpid()}x{next(_sequence)}"
        self.bridge_ns = f"{PREFIX}{self.tag}-br"
        self.root_link = f"{ROOT_LINK_PREFIX}{self.tag}"
        self.addresses: dict[str, str] = {}
        self._blocked: dict[str, frozenset[str]] = {}
        self._closed = False
        atexit.register(self.close)
        try:
            self.subnet = _pick_subnet()
            self._create_bridge()
            for node_id in node_ids:
                self.add_node(node_id)
        except BaseException:
            self.close()
            raise

    def _host(self, index: int) -> str:
        return str(self.subnet.network_address + index)

    def _create_bridge(self) -> None:
        br = self.bridge_ns
        _run(["ip", "netns", "add", br])
        _run(["ip", "-n", br, "link", "add", "br0", "type", "bridge"])
        _run(["ip", "-n", br, "link", "set", "br0", "up"])
        _run(["ip", "link", "add", self.root_link, "type", "veth", "peer", "name", "driver", "netns", br])
        _run(["ip", "-n", br, "link", "set", "driver", "master", "br0", "up"])
        _run(["ip", "addr", "add", f"{self._host(DRIVER_HOST)}/{self.subnet.prefixlen}", "dev", self.root_link])
        _run(["ip", "link", "set", self.root_link, "up"])

    def namespace(self, node_id: str) -> str:
        return f"{PREFIX}{self.tag}-{node_id}"

    def add_node(self, node_id: str) -> str:
        """Create the node's namespace, wired to the bridge; returns its address."""
        if node_id in self.addresses:
            return self.addresses[node_id]
        index = len(self.addresses) + 1
        if index >= DRIVER_HOST:
            raise NetnsError("too many nodes for one test network")
        ns, port, address = self.namespace(node_id), f"v{index}", self._host(index)
        _run(["ip", "netns", "add", ns])
        _run(["ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port,
              "netns", self.bridge_ns])
        _run(["ip", "-n", self.bridge_ns, "link", "set", port, "master", "br0", "up"])
        _run(["ip", "-n", ns, "addr", "add", f"{address}/{self.subnet.prefixlen}", "dev", "eth0"])
        _run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        _run(["ip", "-n", ns, "link", "set", "lo", "up"])
        _run(["ip", "netns", "exec", ns, "nft", "-f", "-"], stdin=_firewall_table())
        self.addresses[node_id] = address
        self._blocked[node_id] = frozenset()
        return address

    def node_options(self, node_id: str) -> dict:
        """NodeHandle keyword arguments that run ``node_id`` inside its namespace (created if new)."""
        address = self.add_node(node_id)
        return {"host": address, "ports": (HTTP_PORT, RAFT_PORT, GOSSIP_PORT),
                "command_prefix": ["ip", "netns", "exec", self.namespace(node_id)]}

    # ------------------------------------------------------------------ partitions
    def partition(self, groups: Sequence[Iterable[str]]) -> None:
        """Only nodes sharing a group can talk (groups may overlap: a bridge); unlisted nodes talk to all."""
        sets = [set(group) for group in groups]
        listed = set().union(*sets) if sets else set()
        for node_id in self.addresses:
            if node_id not in listed:
                self._set_blocked(node_id, frozenset())
                continue
            peers = set().union(*(group for group in sets if node_id in group))
            self._set_blocked(node_id, frozenset(listed - peers))

    def heal(self) -> None:
        """Everyone talks to everyone again."""
        for node_id in self.addresses:
            self._set_blocked(node_id, frozenset())

    def blocked(self) -> dict[str, frozenset[str]]:
        return dict(self._blocked)

    def _set_blocked(self, node_id: str, peers: frozenset[str]) -> None:
        if self._blocked.get(node_id) == peers:
            return
        script = f"flush set inet {TABLE} blocked\n"
        if peers:
            script += f"add element inet {TABLE} blocked {{ {', '.join(self.addresses[p] for p in sorted(peers))} }}\n"
        _run(["ip", "netns", "exec", self.namespace(node_id), "nft", "-f", "-"], stdin=script)
        self._blocked[node_id] = peers

    # ------------------------------------------------------------------ teardown
    def close(self) -> None:
        """Remove every namespace and link of this network (idempotent, never raises)."""
        if self._closed:
            return
        self._closed = True
        for node_id in list(self.addresses):
            _run(["ip", "netns", "delete", self.namespace(node_id)], check=False)
        _run(["ip", "netns", "delete", self.bridge_ns], check=False)
        # The root end of a veth goes away with its peer's namespace, but asynchronously.
        _run(["ip", "link", "delete", self.root_link], check=False)
        atexit.unregister(self.close)

    def __enter__(self) -> "NetnsNetwork":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _firewall_table() -> str:
    return (f"table inet {TABLE} {{\n"
            f"  set blocked {{ type ipv4_addr; }}\n"
            f"  chain input {{ type filter hook input priority 0; ip saddr @blocked drop; }}\n"
            f"  chain output {{ type filter hook output priority 0; ip daddr @blocked drop; }}\n"
            f"}}\n")

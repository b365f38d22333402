"""The persisted layout of a launched local cluster: which nodes exist, their ports, and whether
the cluster was ever bootstrapped.  Kept as one JSON file, replaced atomically."""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Callable

from axon.address import format_addr
from axon.config import ConfigError, check_node_id, parse_addr

LAYOUT_FILE = "layout.json"
LAYOUT_FORMAT = 1
PORT_STEP = 10          # port blocks start at base, base+10, ...: http +0, raft +1, gossip +2
MAX_PORT = 65535


class LayoutError(Exception):
    """The layout file is unreadable, corrupt, or no ports are left."""


@dataclass
class NodeSpec:
    node_id: str
    http: str
    raft: str
    gossip: str

    def ports(self) -> list[int]:
        """The node's http, raft and gossip ports."""
        return [parse_addr(a)[1] for a in (self.http, self.raft, self.gossip)]


@dataclass
class Layout:
    host: str
    base_port: int
    nodes: list[NodeSpec] = field(default_factory=list)
    next_index: int = 1          # node ids are never reused, even after a decommission
    bootstrapped: bool = False   # set once the first node was started with --bootstrap

    def find(self, node_id: str) -> NodeSpec | None:
        return next((n for n in self.nodes if n.node_id == node_id), None)

    def used_ports(self) -> set[int]:
        return {p for n in self.nodes for p in n.ports()}

    def add_node(self, ports_free: Callable[[list[int]], bool]) -> NodeSpec:
        """Allocate the next node id and the first port block that is unused and free."""
        used = self.used_ports()
        start = self.base_port
        while start + 2 <= MAX_PORT:
            block = [start, start + 1, start + 2]
            if not used.intersection(block) and ports_free(block):
                spec = NodeSpec(f"node-{self.next_index}", *(format_addr(self.host, p) for p in block))
                self.nodes.append(spec)
                self.next_index += 1
                return spec
            start += PORT_STEP
        raise LayoutError(f"no free port block from {self.base_port} up on {self.host}")

    def remove_node(self, node_id: str) -> None:
        self.nodes = [n for n in self.nodes if n.node_id != node_id]

    def to_json(self) -> dict:
        return {"format": LAYOUT_FORMAT, **asdict(self)}

    @classmethod
    def from_json(cls, data: object) -> "Layout":
        try:
            if not isinstance(data, dict) or data.get("format") != LAYOUT_FORMAT:
                raise ValueError("unknown format")
            nodes = [NodeSpec(**n) for n in data["nodes"]]
            layout = cls(str(data["host"]), int(data["base_port"]), nodes,
                         int(data["next_index"]), bool(data["bootstrapped"]))
            for node in nodes:
                check_node_id(node.node_id)
                node.ports()
        except (KeyError, TypeError, ValueError, ConfigError) as exc:
            raise LayoutError(f"invalid layout: {exc}") from None
        if len({n.node_id for n in nodes}) != len(nodes):
            raise LayoutError("invalid layout: duplicate node ids")
        return layout


def layout_path(directory: str) -> str:
    return os.path.join(directory, LAYOUT_FILE)


def load_layout(directory: str) -> Layout | None:
    """The layout saved in directory, or None if there is none yet."""
    path = layout_path(directory)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise LayoutError(f"cannot read {path}: {exc}") from None
    try:
        return Layout.from_json(data)
    except LayoutError as exc:
        raise LayoutError(f"{path}: {exc}") from None


def save_layout(directory: str, layout: Layout) -> None:
    """Write the layout atomically: a crash leaves the old file or the new one, never half."""
    path = layout_path(directory)
    tmp = path + ".tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(layout.to_json(), f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise LayoutError(f"cannot write {path}: {exc.strerror or exc}") from None

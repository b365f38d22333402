"""The node's gossip glue: its metadata for others, the members view, whom to ask to join."""
from __future__ import annotations

from typing import Callable

import gevent

from axon.config import NodeConfig
from axon.gossip.agent import GossipAgent

ROLE_PUBLISH_INTERVAL = 0.25


class Membership:
    """What gossip says of the cluster, in the API's shape, and what this node tells it."""

    def __init__(self, config: NodeConfig, gossip: GossipAgent, role: Callable[[], str],
                 alarms: Callable[[], list[str]] = list) -> None:
        """``alarms()``: this node's raised alarms (axon/node/disk.py), told to the others."""
        self.config = config
        self.gossip = gossip
        self.role = role
        self.alarms = alarms
        self._joined = bool(config.seed)
        self._cluster_alarms: list[str] = []

    def meta(self) -> dict:
        """This node's gossip metadata: where to reach it, its Raft role and its alarms if any."""
        meta = {"http": self.config.http, "raft": self.config.raft, "role": self.role()}
        alarms = self.alarms()
        if alarms:
            meta["alarms"] = ",".join(alarms)   # gossip metadata holds scalars only
        return meta

    def cluster_alarms(self) -> list[str]:
        """The alarms raised on this node or on any live member (refreshed every publish interval).

        Every node holds the same data, so a member short of space makes the leader refuse
        writes for all, as etcd's NOSPACE alarm does; this is cheap enough for every write.
        """
        return self._cluster_alarms

    def _refresh_cluster_alarms(self) -> None:
        raised = set(self.alarms())
        for m in self.gossip.members():
            meta = m.get("meta") or {}
            theirs = meta.get("alarms")
            if m["status"] == "alive" and isinstance(theirs, str):
                raised.update(a for a in theirs.split(",") if a)
        self._cluster_alarms = sorted(raised)

    def members_view(self) -> list[dict]:
        """The gossip view in the API's shape."""
        out = []
        for m in self.gossip.members():
            meta = m.get("meta") or {}
            out.append({"node_id": m["node_id"], "status": m["status"], "gossip": m["gossip"],
                        "http": meta.get("http", ""), "raft": meta.get("raft", ""),
                        "role": meta.get("role", "")})
        return sorted(out, key=lambda m: m["node_id"])

    def join_targets(self) -> list[str]:
        """--join addresses, then what gossip says: the leader first, then any other member."""
        targets = list(self.config.join)
        others = [m for m in self.members_view()
                  if m["node_id"] != self.config.node_id and m["status"] == "alive" and m["http"]]
        others.sort(key=lambda m: m["role"] != "leader")
        targets += [m["http"] for m in others if m["http"] not in targets]
        return targets

    def gossip_with(self, members: dict) -> None:
        """Join gossip through members a join answer named (nodes joined with --join, not --seed)."""
        if self._joined:
            return
        seeds = [m.get("gossip") for nid, m in members.items()
                 if nid != self.config.node_id and isinstance(m, dict) and isinstance(m.get("gossip"), str)
                 and m.get("gossip")]
        if seeds:
            self._joined = True
            self.gossip.join_in_background(seeds)

    def publish_role(self) -> None:
        """Run in a greenlet: keep our metadata's role and alarms current, and see the others' alarms."""
        published = None
        while True:
            meta = self.meta()
            if meta != published:
                self.gossip.update_meta(meta)
                published = meta
            self._refresh_cluster_alarms()
            gevent.sleep(ROLE_PUBLISH_INTERVAL)

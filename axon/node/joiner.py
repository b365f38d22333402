"""Background joining: ask any member to add us (a follower forwards to the leader), retry until a voter."""
from __future__ import annotations

import logging
from typing import Callable

import gevent

from axon.client.http import AxonClient, ClientError, HttpPool
from axon.raft.node import RaftNode

log = logging.getLogger("axon.join")


def join_until_voter(node: RaftNode, targets: Callable[[], list[str]], pool: HttpPool, *,
                     raft: str, http: str, gossip: str = "", max_backoff: float = 5.0,
                     on_members: Callable[[dict], None] | None = None) -> None:
    """Run in a greenlet; returns once this node is a voter (or was already).

    ``on_members`` gets the member map of every join answer (the node uses it to join gossip).
    """
    backoff = 0.2
    attempt = 0
    while not node.stopped:
        if node.id in node.config.voters:
            log.info("this node is a voter")
            return
        for addr in targets():
            try:
                answer = AxonClient(addr, timeout=10, pool=pool).join(node.id, raft, http, gossip)
            except ClientError as exc:
                attempt += 1
                log.info("join via %s failed (attempt %d): %s; retrying", addr, attempt, exc)
                continue
            members = answer.get("members") or {}
            node.add_peer_hints({nid: m["raft"] for nid, m in members.items()
                                 if isinstance(m, dict) and isinstance(m.get("raft"), str)})
            if on_members is not None and isinstance(members, dict):
                on_members(members)
            if answer.get("status") == "voter":
                log.info("joined the cluster as a voter via %s", addr)
                return
            log.info("added as a learner via %s; catching up", addr)
            backoff = 0.2
            break
        gevent.sleep(backoff)
        backoff = min(backoff * 2, max_backoff)

"""Background joining: ask any member to add us (a follower forwards to the leader), retry until a voter.

Each request names the cluster this node belongs to, if it knows, and with a cluster key carries
a fresh proof of the key (axon/api/admission.py).  The first answer that admits the node gives it
its cluster id; an answer from another cluster is refused.  A refusal is logged once a minute
per member asked, as the joiner keeps asking (the member may be of another cluster, and others
of the right one).
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable

import gevent

from axon.api.admission import join_key, make_proof
from axon.api.validate import JoinRequest, is_cluster_id
from axon.client import Client
from axon.client.http import ClientError, HttpPool
from axon.config import ConfigError
from axon.gossip.ratelimit import LogLimiter
from axon.node.cluster_id import ClusterId
from axon.raft.node import RaftNode

log = logging.getLogger("axon.join")

REFUSED = (403, 409)        # no proof of the key / another cluster: asking again will not help soon
REFUSAL_LOG_INTERVAL = 60.0


class Joiner:
    """Asks the cluster to add this node until it votes."""

    def __init__(self, node: RaftNode, targets: Callable[[], list[str]], pool: HttpPool,
                 cluster_id: ClusterId, *, raft: str, http: str, gossip: str = "",
                 cluster_key: bytes | None = None, on_members: Callable[[dict], None] | None = None,
                 ask_as_voter: bool = False, max_backoff: float = 5.0) -> None:
        """``on_members`` gets the member map of every join answer (the node uses it to join gossip);
        ``ask_as_voter``: ask even though the local configuration has this node voting (the only
        voter of its own cluster, given --join: a leader of another cluster will refuse it)."""
        self.node = node
        self.targets = targets
        self.pool = pool
        self.cluster_id = cluster_id
        self.addresses = (raft, http, gossip)
        self.key = join_key(cluster_key) if cluster_key is not None else None
        self.on_members = on_members
        self.ask_as_voter = ask_as_voter
        self.max_backoff = max_backoff
        self.attempts = 0
        self._refusal_lines = LogLimiter(REFUSAL_LOG_INTERVAL)

    def run(self) -> None:
        """Run in a greenlet; returns once this node is a voter."""
        backoff = 0.2
        while not self.node.stopped:
            if self.node.id in self.node.config.voters and not self.ask_as_voter:
                log.info("this node is a voter")
                return
            for addr in self.targets():
                answer = self.ask(addr)
                if answer is None or not self.same_cluster(addr, answer):
                    continue
                self.learn_members(answer)
                if answer.get("status") == "voter":
                    log.info("joined the cluster as a voter via %s", addr)
                    return
                log.info("added as a learner via %s; catching up", addr)
                self.ask_as_voter = False   # admitted: from now on our own configuration says when we vote
                backoff = 0.2
                break
            gevent.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff)

    def request(self) -> JoinRequest:
        raft, http, gossip = self.addresses
        return JoinRequest(self.node.id, raft, http, gossip, self.cluster_id())

    def ask(self, addr: str) -> dict | None:
        """The answer of ``addr`` to one join request, or None (logged) when it failed or refused."""
        req = self.request()
        proof = make_proof(self.key, req) if self.key is not None else None
        try:
            return Client(addr, timeout=10, retry_for=0, pool=self.pool).join(
                req.node_id, req.raft, req.http, req.gossip, cluster_id=req.cluster_id, proof=proof)
        except ClientError as exc:
            if exc.status in REFUSED:
                self.refused(addr, str(exc).removeprefix("join refused: ") + self.hint(exc.status))
            else:
                self.attempts += 1
                log.info("join via %s failed (attempt %d): %s; retrying", addr, self.attempts, exc)
            return None

    def hint(self, status: int | None) -> str:
        if status != 403:
            return ""
        if self.key is None:
            return " (this node has no cluster key: give it --cluster-key-file)"
        return " (different cluster key?)"

    def same_cluster(self, addr: str, answer: dict) -> bool:
        """Adopt the cluster id of the first answer that admits us; refuse an answer of another cluster."""
        theirs = answer.get("cluster_id")
        ours = self.cluster_id()
        if not is_cluster_id(theirs):
            # a cluster from before cluster ids; one we belong to has none either
            if ours is None:
                return True
            self.refused(addr, f"this node belongs to cluster {ours}, which the answer does not name; refusing")
            return False
        try:
            if self.cluster_id.adopt(theirs):
                return True
        except ConfigError as exc:
            log.error("cannot record cluster id %s: %s", theirs, exc)
            return False
        self.refused(addr, f"this node belongs to cluster {ours}, not {theirs}; refusing")
        return False

    def learn_members(self, answer: dict) -> None:
        """Where the members are, as the answer names them: for Raft and for gossip."""
        members = answer.get("members")
        if not isinstance(members, dict):
            return
        self.node.add_peer_hints({nid: m["raft"] for nid, m in members.items()
                                  if isinstance(m, dict) and isinstance(m.get("raft"), str)})
        if self.on_members is not None:
            self.on_members(members)

    def refused(self, addr: str, reason: str) -> None:
        if self._refusal_lines.allow(addr, time.monotonic()):
            log.warning("join via %s refused: %s", addr, reason)


def join_until_voter(node: RaftNode, targets: Callable[[], list[str]], pool: HttpPool,
                     cluster_id: ClusterId, **options: Any) -> None:
    """Run in a greenlet: ``Joiner(...).run()`` (see Joiner for the options)."""
    Joiner(node, targets, pool, cluster_id, **options).run()

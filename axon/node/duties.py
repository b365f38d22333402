"""What only the leader does on its own: remove voters gossip has long reported dead, expire leases."""
from __future__ import annotations

import logging
import time
from typing import Callable

import gevent

from axon.api.leases import LeaseService
from axon.kv.commands import LeaseRevoke
from axon.node.reaper import pick_reap
from axon.raft.core import ConfChange
from axon.raft.errors import RaftError
from axon.raft.node import RaftNode

log = logging.getLogger("axon.node.duties")


class DeadVoterReaper:
    """Removes a voter that gossip has reported dead for longer than ``after`` seconds."""

    def __init__(self, node: RaftNode, members: Callable[[], list[dict]], after: float,
                 timeout: float) -> None:
        self.node = node
        self.members = members
        self.after = after
        self.timeout = timeout
        self._dead_since: dict[str, float] = {}

    def run(self) -> None:
        """Run in a greenlet."""
        while True:
            gevent.sleep(min(1.0, self.after / 4))
            self.step(time.monotonic())

    def step(self, now: float) -> None:
        self._note_dead(now)
        if not self.node.is_leader:
            return
        victim = pick_reap(sorted(self.node.config.voters), self._dead_since, now, self.after, self.node.id)
        if victim is None:
            return
        log.warning("removing %s: gossip has reported it dead for over %gs", victim, self.after)
        try:
            self.node.change_membership(ConfChange("remove", victim), self.timeout)
        except RaftError as exc:
            log.warning("could not remove %s: %s", victim, exc)

    def _note_dead(self, now: float) -> None:
        status = {m["node_id"]: m["status"] for m in self.members()}
        for nid in list(self._dead_since):
            if status.get(nid) != "dead":
                del self._dead_since[nid]
        for nid, st in status.items():
            if st == "dead":
                self._dead_since.setdefault(nid, now)


class LeaseExpirer:
    """Revokes, through the log, the leases past their deadline on this node while it leads.

    Followers keep no deadlines; a node that becomes leader (a new term) restarts every TTL.
    """

    def __init__(self, node: RaftNode, leases: LeaseService, timeout: float, interval: float = 0.1) -> None:
        self.node = node
        self.leases = leases
        self.timeout = timeout
        self.interval = interval

    def run(self) -> None:
        """Run in a greenlet."""
        while True:
            gevent.sleep(self.interval)
            self.step(time.monotonic())

    def step(self, now: float) -> None:
        deadlines = self.leases.deadlines
        term = self.node.status()["term"] if self.node.is_leader else None
        deadlines.sync(term, now, self.leases.table())
        due = deadlines.due(now)
        if not due:
            return
        try:
            self.node.propose([LeaseRevoke(lease_id, expired=True) for lease_id in due], self.timeout)
            log.info("lease(s) expired: %s", ", ".join(map(str, due)))
        except RaftError as exc:   # no longer leader, or no quorum: due again next time if still leading
            log.warning("could not revoke expired lease(s) %s: %s", ", ".join(map(str, due)), exc)
        finally:
            deadlines.release(due)

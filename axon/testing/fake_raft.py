"""A fake Raft node for tests of the layers above Raft: one process, no sockets, no log.

It offers what axon.api.service needs of a RaftNode, and keeps the data in a
``MemoryStore`` with the read side of axon.kv.store.Store.  A proposal is applied at
once, as the next entry, by the same pure rules the real store applies
(``axon.kv.commands.evaluate``); a membership change edits the configuration directly.
Tests steer it: ``lead``/``follow`` set who leads, ``lose_quorum`` makes every operation
that needs a majority time out, ``lag`` makes the applied index trail the commit index.
"""
from __future__ import annotations

import bisect
from typing import Mapping

from axon.kv.authstate import AuthState, apply_auth
from axon.kv.commands import (Command, Delete, LeaseGrant, Put, Result, Txn, TxnResult, evaluate, evaluate_txn,
                              is_auth, is_lease)
from axon.kv.leases import LeaseTable, put_leases
from axon.kv.store import page_item_bytes
from axon.raft.core import ConfChange
from axon.raft.errors import ConfChangeError, NotLeader, Timeout
from axon.raft.types import ClusterConfig, Member


class MemoryStore:
    """Keys in a dict, and their sorted list for scans; Store's get/scan answers."""

    def __init__(self) -> None:
        self.data: dict[str, tuple[str, int]] = {}
        self._keys: list[str] = []
        self.applied_index = 0
        self.auth = AuthState()
        self.leases = LeaseTable()

    def apply(self, commands: list[Command]) -> list[Result]:
        """Apply one entry's commands as the next index."""
        self.applied_index += 1
        return [self._apply(cmd) for cmd in commands]

    def _apply(self, cmd: Command) -> Result | TxnResult:
        if is_auth(cmd):
            self.auth, result = apply_auth(self.auth, cmd)
            return result
        if isinstance(cmd, LeaseGrant):
            return self.leases.grant(cmd, self.applied_index)
        if is_lease(cmd):
            result, keys = self.leases.revoke(cmd, self.applied_index)
            for key in keys:
                self._write(key, None)
            return result
        if isinstance(cmd, Txn):
            refusal = self.leases.txn_refusal(cmd)
            if refusal is not None:
                return TxnResult(False, self.applied_index, (), ok=False, error=refusal)
            txn_result, writes = evaluate_txn(cmd, self.data.get, self.applied_index)
            leases = put_leases(cmd, txn_result.succeeded)
            for key, value in writes:
                self._write(key, value, leases.get(key, 0))
            return txn_result
        refusal = self.leases.put_refusal(cmd) if isinstance(cmd, Put) else None
        if refusal is not None:
            return Result(ok=False, key=cmd.key, error=refusal)
        result = evaluate(cmd, self.data.get(cmd.key), self.applied_index)
        if result.ok:
            self._write(cmd.key, None if isinstance(cmd, Delete) else cmd.value, getattr(cmd, "lease", 0))
        return result

    def _write(self, key: str, value: str | None, lease: int = 0) -> None:
        self.leases.attach(key, lease if value is not None else 0)
        if value is None:
            del self.data[key]
            self._keys.remove(key)
            return
        if key not in self.data:
            bisect.insort(self._keys, key)
        self.data[key] = (value, self.applied_index)

    def get(self, key: str) -> tuple[str, int] | None:
        return self.data.get(key)

    def scan(self, prefix: str = "", after: str | None = None, limit: int = 100,
             max_bytes: int | None = None) -> tuple[list[tuple[str, str, int]], str | None]:
        start = bisect.bisect_right(self._keys, after) if after is not None and after >= prefix \
            else bisect.bisect_left(self._keys, prefix)
        items: list[tuple[str, str, int]] = []
        budget = max_bytes if max_bytes is not None else float("inf")
        for key in self._keys[start:]:
            if not key.startswith(prefix):
                return items, None
            value, revision = self.data[key]
            size = page_item_bytes(len(key.encode()), len(value.encode()))
            if len(items) == limit or (items and size > budget):
                return items, items[-1][0]
            budget -= size
            items.append((key, value, revision))
        return items, None


class FakeRaftNode:
    def __init__(self, node_id: str, members: Mapping[str, Member], leader: str | None = None,
                 term: int = 1) -> None:
        self.id = node_id
        self.store = MemoryStore()
        self._config = ClusterConfig(voters=dict(members))
        self._leader = leader
        self.term = term
        self.quorum = True
        self.behind = 0               # entries committed but not applied here
        self.changes: list[ConfChange] = []

    # ---------------------------------------------------------------- steering
    def lead(self) -> None:
        self._leader = self.id

    def follow(self, leader: str | None) -> None:
        """Make ``leader`` (None: nobody) the leader this node knows of."""
        self._leader = leader

    def lose_quorum(self) -> None:
        self.quorum = False

    def lag(self, entries: int) -> None:
        self.behind = entries

    # ---------------------------------------------------------------- RaftNode's interface
    @property
    def leader_id(self) -> str | None:
        return self._leader

    @property
    def is_leader(self) -> bool:
        return self._leader == self.id

    @property
    def config(self) -> ClusterConfig:
        return self._config

    @property
    def applied_index(self) -> int:
        return self.store.applied_index

    def leader_http(self) -> str | None:
        member = self._config.members().get(self._leader) if self._leader else None
        return member.http if member else None

    def status(self) -> dict:
        applied = self.store.applied_index
        return {"node_id": self.id, "state": "leader" if self.is_leader else "follower",
                "leader": self._leader, "term": self.term, "commit_index": applied + self.behind,
                "applied_index": applied, "last_index": applied + self.behind, "snapshot_index": 0,
                "voters": sorted(self._config.voters), "learners": sorted(self._config.learners),
                "members": {nid: {"raft": m.raft, "http": m.http}
                            for nid, m in self._config.members().items()}}

    def propose(self, items: list, timeout: float) -> list:
        self._require_majority("write")
        return self.store.apply(items)

    def read_barrier(self, timeout: float) -> None:
        self._require_majority("read")

    def read_index(self, timeout: float) -> int:
        self._require_majority("read")
        return self.store.applied_index

    def wait_applied(self, index: int, timeout: float) -> None:
        """Everything proposed is applied at once here."""

    def change_membership(self, change: ConfChange, timeout: float) -> None:
        self._require_majority("membership change")
        voters, learners = dict(self._config.voters), dict(self._config.learners)
        if change.op == "add_learner":
            if change.member is None:
                raise ConfChangeError("add_learner needs the member's addresses")
            learners[change.node_id] = change.member
        elif change.op == "promote":
            voters[change.node_id] = learners.pop(change.node_id)
        elif change.op == "remove":
            if voters.pop(change.node_id, None) is None and learners.pop(change.node_id, None) is None:
                raise ConfChangeError(f"{change.node_id} is not a member")
        else:
            raise ConfChangeError(f"unknown change {change.op!r}")
        self._config = ClusterConfig(voters=voters, learners=learners)
        self.changes.append(change)
        if change.op == "remove" and change.node_id == self.id:
            self._leader = None   # a leader that removed itself steps down

    def _require_majority(self, what: str) -> None:
        if not self.is_leader:
            raise NotLeader(self._leader, self.leader_http())
        if not self.quorum:
            raise Timeout(f"{what} timed out (no quorum?); outcome unknown", self._leader)


class NullTransport:
    """A Raft transport that sends nothing: a one-member RaftNode needs no peers."""

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def set_peers(self, peers: dict) -> None: ...
    def backlog(self, peer_id: str) -> int: return 0
    def send(self, msg) -> None: ...

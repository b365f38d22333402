"""Leases as applied: each lease's TTL and attached keys, and each key's lease.

Pure and in memory: the store (axon/kv/store.py) persists what changes and carries the
table in snapshots; the fake store of the tests uses it as it is.  A key belongs to at most
one lease; a put names the key's lease (0: none, which detaches it), a delete detaches it,
and a revocation detaches every key of the lease, which the caller then deletes, all at one
revision.  Time is not here: only the leader's api layer knows deadlines (axon/api/leases.py).

The limits are constants, not flags: every member must apply an entry alike.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Iterable

from axon.kv.commands import LeaseGrant, LeaseRevoke, Put, Result, Txn

MAX_LEASES = 10_000          # leases alive at once; a grant past it is refused
MAX_LEASE_KEYS = 1_000       # keys attached to one lease; a put past it is refused
MAX_LEASE_ID = (1 << 53) - 1  # ids stay exact as JSON numbers in every client (JavaScript's too)
MAX_LEASE_TTL = 86_400       # seconds

# Result errors the api turns into answers (axon/api/leases.py lease_refusal).
LEASE_NOT_FOUND = "lease_not_found"
LEASE_FULL = "lease_full"
TOO_MANY_LEASES = "too_many_leases"
LEASE_KEYS_OUTSIDE = "lease_keys_outside"   # a revocation's ``within`` no longer holds
# Versions are unique across tables: a table read again from disk (a reopened store) never
# looks unchanged to whoever remembered the version of the one it replaced.
_VERSIONS = itertools.count(1)


@dataclass(slots=True)
class Lease:
    ttl: int
    keys: set[str] = field(default_factory=set)


class LeaseTable:
    """Mutable; the store applies entries to it in its applier greenlet (and reads it again from
    LevelDB after a failed write)."""

    def __init__(self) -> None:
        self.leases: dict[int, Lease] = {}
        self.owner: dict[str, int] = {}   # key -> its lease id
        self.version = next(_VERSIONS)    # changes with every grant and revocation (a cheap change test)

    def __len__(self) -> int:
        return len(self.leases)

    def get(self, lease_id: int) -> Lease | None:
        return self.leases.get(lease_id)

    def lease_of(self, key: str) -> int:
        """The key's lease id, 0 for none."""
        return self.owner.get(key, 0)

    # ---- applying -------------------------------------------------------

    def grant(self, cmd: LeaseGrant, index: int) -> Result:
        if cmd.lease_id in self.leases:
            return Result(ok=False, key="", revision=index, error="conflict")
        if len(self.leases) >= MAX_LEASES:
            return Result(ok=False, key="", revision=index, error=TOO_MANY_LEASES)
        self.leases[cmd.lease_id] = Lease(cmd.ttl)
        self.version = next(_VERSIONS)
        return Result(ok=True, key="", revision=index)

    def revoke(self, cmd: LeaseRevoke, index: int) -> tuple[Result, list[str]]:
        """The revocation's result and the keys it detached, in key order: the caller deletes them."""
        lease = self.leases.get(cmd.lease_id)
        if lease is None:
            return Result(ok=False, key="", revision=index, error=LEASE_NOT_FOUND), []
        if cmd.within is not None and not all(key.startswith(cmd.within) for key in lease.keys):
            return Result(ok=False, key="", revision=index, error=LEASE_KEYS_OUTSIDE), []
        del self.leases[cmd.lease_id]
        self.version = next(_VERSIONS)
        keys = sorted(lease.keys)
        for key in keys:
            del self.owner[key]
        return Result(ok=True, key="", revision=index), keys

    def put_refusal(self, cmd: Put) -> str | None:
        """Why a put cannot attach its key to its lease (None: it can, or it names none)."""
        if not cmd.lease:
            return None
        return self._attach_refusal({cmd.lease: [cmd.key]})

    def txn_refusal(self, txn: Txn) -> str | None:
        """Why a transaction's puts cannot take their leases; both branches are checked, so
        that a refusal does not depend on the compares."""
        for branch in (txn.success, txn.failure):
            wanted: dict[int, list[str]] = {}
            for op in branch:
                if isinstance(op, Put) and op.lease:
                    wanted.setdefault(op.lease, []).append(op.key)
            refusal = self._attach_refusal(wanted)
            if refusal is not None:
                return refusal
        return None

    def _attach_refusal(self, wanted: dict[int, list[str]]) -> str | None:
        for lease_id, keys in wanted.items():
            lease = self.leases.get(lease_id)
            if lease is None:
                return LEASE_NOT_FOUND
            if len(lease.keys) + sum(1 for k in keys if k not in lease.keys) > MAX_LEASE_KEYS:
                return LEASE_FULL
        return None

    def attach(self, key: str, lease_id: int) -> int:
        """Make ``lease_id`` (0: none) the key's lease; returns its lease before (0: none).

        The caller checked the lease exists (put_refusal/txn_refusal).
        """
        before = self.owner.get(key, 0)
        if before == lease_id:
            return before
        if before:
            self.leases[before].keys.discard(key)
            del self.owner[key]
        if lease_id:
            self.leases[lease_id].keys.add(key)
            self.owner[key] = lease_id
        return before

    # ---- snapshots ------------------------------------------------------

    def to_obj(self) -> list:
        """[[id, ttl, [key, ...]], ...] in id order (key order within each)."""
        return [[lease_id, lease.ttl, sorted(lease.keys)] for lease_id, lease in sorted(self.leases.items())]

    @classmethod
    def from_obj(cls, obj: Any) -> LeaseTable:
        """Inverse of to_obj; ValueError on anything malformed (None: no leases)."""
        table = cls()
        if obj is not None:
            table.add_rows(obj)
        return table

    def add_rows(self, rows: Any) -> None:
        """Add to_obj rows (of leases not in the table yet); ValueError on anything malformed."""
        if not isinstance(rows, list) or len(self.leases) + len(rows) > MAX_LEASES:
            raise ValueError("leases are not a list within the limit")
        for row in rows:
            if not isinstance(row, (list, tuple)) or len(row) != 3 or not isinstance(row[2], (list, tuple)):
                raise ValueError(f"malformed lease row {row!r:.80}")
            lease_id, ttl, keys = row
            check_lease_id(lease_id)
            if type(ttl) is not int or not 0 < ttl <= MAX_LEASE_TTL or lease_id in self.leases:
                raise ValueError(f"malformed lease {lease_id!r}")
            self.load(lease_id, ttl, keys)

    def load(self, lease_id: int, ttl: int, keys: Iterable[str]) -> None:
        """Add a lease as stored (ValueError on a key that is not a string or has a lease already)."""
        lease = self.leases.setdefault(lease_id, Lease(ttl))
        for key in keys:
            if not isinstance(key, str) or key in self.owner or len(lease.keys) >= MAX_LEASE_KEYS:
                raise ValueError(f"lease {lease_id}: bad or doubly attached key {key!r:.80}")
            lease.keys.add(key)
            self.owner[key] = lease_id
        self.version = next(_VERSIONS)


def put_leases(txn: Txn, succeeded: bool) -> dict[str, int]:
    """key -> lease (0: none) of each put of the transaction's branch that ran."""
    return {op.key: op.lease for op in (txn.success if succeeded else txn.failure) if isinstance(op, Put)}


def check_lease_id(value: Any) -> None:
    """ValueError unless ``value`` is a lease id (an int in 1..MAX_LEASE_ID)."""
    if type(value) is not int or not 0 < value <= MAX_LEASE_ID:
        raise ValueError(f"not a lease id: {value!r}")

"""Leases in the API's terms: grant, keepalive, show, revoke, and the leader's deadlines.

The lease table (ids, TTLs, attached keys) is replicated (axon/kv/leases.py); time is not.
Only the leader keeps a deadline per lease, here, in ``Deadlines``: a keepalive moves it to
now + TTL, and the leader's expiry duty (axon/node/duties.py) revokes a lease past it through
the log.  A leader that has just taken over (a new term) gives every lease a full TTL from
that moment, so a failover never makes a lease expire early.

A keepalive first confirms the leadership (a ReadIndex barrier): a deposed leader cannot
acknowledge one, and the new leader has applied any revocation its predecessor committed
before it answers.  A lease whose revocation is on its way through the log answers 404.
"""
from __future__ import annotations

import math
import secrets
import time
from typing import TYPE_CHECKING, Callable

from axon.api import validate
from axon.api.errors import ApiError, Conflict, InvalidInput, NotFound, NotLeader, TooLarge, from_raft
from axon.config import NodeConfig
from axon.kv.commands import LeaseGrant, LeaseRevoke, Result
from axon.kv.leases import (LEASE_FULL, LEASE_KEYS_OUTSIDE, LEASE_NOT_FOUND, MAX_LEASE_ID, MAX_LEASE_KEYS,
                            MAX_LEASE_TTL, MAX_LEASES, TOO_MANY_LEASES, LeaseTable)
from axon.raft.errors import RaftError

if TYPE_CHECKING:   # the service module builds a LeaseService: no import at run time
    from axon.api.service import Consensus

LEASE_BODY_LIMIT = 1024
_GRANT_ATTEMPTS = 3   # a random id taken already is refused by the log; another is tried


class Deadlines:
    """The leader's deadline for each lease (monotonic seconds); pure: the caller gives ``now``."""

    def __init__(self) -> None:
        self.term: int | None = None          # the term these deadlines were set in; None: not leading
        self._due: dict[int, float] = {}
        self._revoking: set[int] = set()      # proposed for revocation, not yet out of the table
        self._version = -1                    # the table version last synced

    def sync(self, term: int | None, now: float, table: LeaseTable) -> None:
        """Follow leadership (``term`` while leading, else None) and the table's leases.

        A new term restarts every lease's full TTL from ``now``; a lease new to the table
        gets its TTL from ``now``; a lease gone from it is dropped.
        """
        if term is None:
            self.term, self._due, self._revoking, self._version = None, {}, set(), -1
            return
        if term != self.term:
            self.term, self._revoking = term, set()
            self._due = {lease_id: now + lease.ttl for lease_id, lease in table.leases.items()}
            self._version = table.version
            return
        if table.version == self._version:
            return
        self._version = table.version
        self._due = {lease_id: self._due.get(lease_id, now + lease.ttl)
                     for lease_id, lease in table.leases.items()}
        self._revoking &= self._due.keys()

    def due(self, now: float) -> list[int]:
        """Leases past their deadline and not yet being revoked; they are marked as being revoked."""
        if self.term is None:
            return []
        expired = sorted(lease_id for lease_id, deadline in self._due.items()
                         if deadline <= now and lease_id not in self._revoking)
        self._revoking.update(expired)
        return expired

    def release(self, lease_ids: list[int]) -> None:
        """The revocation of ``lease_ids`` is over (done, or failed: then they are due again)."""
        self._revoking.difference_update(lease_ids)

    def start(self, lease_id: int, ttl: int, now: float) -> bool:
        """Deadline now + ttl (a grant, a keepalive); False for a lease being revoked."""
        if lease_id in self._revoking:
            return False
        self._due[lease_id] = now + ttl
        return True

    def remaining(self, lease_id: int, now: float) -> float | None:
        """Seconds left (None when this node keeps no deadline for it)."""
        deadline = self._due.get(lease_id)
        return None if deadline is None else max(0.0, deadline - now)


class LeaseService:
    """Lease operations on the leader (NotLeader elsewhere: the web layer passes them on)."""

    def __init__(self, config: NodeConfig, node: "Consensus", table: Callable[[], LeaseTable],
                 clock: Callable[[], float] = time.monotonic,
                 check_space: Callable[[], None] = lambda: None) -> None:
        """``node``: the Raft node; ``table()``: the applied lease table; ``check_space()``
        raises NoSpace while a disk alarm is raised (a grant adds data; a revoke frees it)."""
        self.config = config
        self.check_space = check_space
        self.node = node
        self.table = table
        self.clock = clock
        self.deadlines = Deadlines()
        self.min_ttl = min_ttl(config)

    def grant(self, body: bytes) -> dict:
        """``{"ttl": S}`` -> ``{"id", "ttl"}`` once the grant is applied."""
        ttl = self.parse_ttl(body)
        self.check_space()
        for _ in range(_GRANT_ATTEMPTS):
            lease_id = secrets.randbelow(MAX_LEASE_ID) + 1
            result = self._propose(LeaseGrant(lease_id, ttl))
            if result.ok:
                self.deadlines.start(lease_id, ttl, self.clock())
                return {"id": lease_id, "ttl": ttl}
            if result.error == TOO_MANY_LEASES:
                raise lease_refusal(result.error, lease_id)
        raise Conflict("could not find a free lease id; retry")

    def keepalive(self, raw_id: str) -> dict:
        """Restart the lease's TTL from now: ``{"id", "ttl"}``; NotFound once it is gone or expiring."""
        lease_id = parse_lease_id(raw_id)
        self._confirm_leader()
        lease = self.table().get(lease_id)
        if lease is None or not self.deadlines.start(lease_id, lease.ttl, self.clock()):
            raise _not_found(lease_id)
        return {"id": lease_id, "ttl": lease.ttl}

    def show(self, raw_id: str) -> dict:
        """``{"id", "ttl", "remaining", "keys"}`` as the leader sees it."""
        lease_id = parse_lease_id(raw_id)
        self._confirm_leader()
        lease = self.table().get(lease_id)
        if lease is None:
            raise _not_found(lease_id)
        remaining = self.deadlines.remaining(lease_id, self.clock())
        return {"id": lease_id, "ttl": lease.ttl,
                "remaining": round(lease.ttl if remaining is None else remaining, 3),
                "keys": sorted(lease.keys)}

    def keys(self, raw_id: str) -> list[str]:
        """The keys attached to a lease here (for the auth decision of a revocation; [] when unknown)."""
        lease = self.table().get(parse_lease_id(raw_id))
        return sorted(lease.keys) if lease is not None else []

    def revoke(self, raw_id: str, within: str | None = None) -> dict:
        """End the lease and delete its keys in one entry: ``{"id", "revision", "deleted"}``.

        ``within``: a prefix every attached key must still start with when the entry applies
        (the caller's write scope; Conflict when a key outside it was attached meanwhile).
        """
        lease_id = parse_lease_id(raw_id)
        keys = self.keys(raw_id)
        result = self._propose(LeaseRevoke(lease_id, within=within))
        if not result.ok:
            raise lease_refusal(result.error, lease_id)
        return {"id": lease_id, "revision": result.revision, "deleted": len(keys)}

    def parse_ttl(self, body: bytes) -> int:
        data = validate.json_object(body, LEASE_BODY_LIMIT)
        if set(data) - {"ttl"}:
            raise InvalidInput(f"unknown field(s) in a lease: {', '.join(sorted(set(data) - {'ttl'}))}")
        ttl = data.get("ttl")
        # A fraction of a second is rounded up: a lease never lasts less than asked.
        if type(ttl) not in (int, float) or not self.min_ttl <= ttl <= MAX_LEASE_TTL:
            raise InvalidInput(f'"ttl" must be a number of seconds from {self.min_ttl} to {MAX_LEASE_TTL}')
        return math.ceil(ttl)

    def _confirm_leader(self) -> None:
        if not self.node.is_leader:
            raise NotLeader(self.node.leader_id, self.node.leader_http())
        try:
            self.node.read_barrier(self.config.request_timeout)
        except RaftError as exc:
            raise from_raft(exc, self.node.leader_id) from None

    def _propose(self, cmd: LeaseGrant | LeaseRevoke) -> Result:
        try:
            [result] = self.node.propose([cmd], self.config.request_timeout)
        except RaftError as exc:
            raise from_raft(exc, self.node.leader_id) from None
        return result


def min_ttl(config: NodeConfig) -> int:
    """The shortest TTL granted: one and a half of the longest election timeout (as etcd), so that
    a lease outlives the election that follows a leader's crash."""
    longest_election = 2 * config.election_ticks * config.tick_interval
    return max(1, math.ceil(1.5 * longest_election))


def parse_lease_id(raw: str | None) -> int:
    """A lease id from a path or query parameter (decimal); InvalidInput otherwise."""
    if raw is None or not validate.ascii_digits(raw) or len(raw) > 16 or not 0 < int(raw) <= MAX_LEASE_ID:
        raise InvalidInput(f"a lease id is a number from 1 to {MAX_LEASE_ID}")
    return int(raw)


def lease_refusal(error: str | None, lease_id: int = 0) -> ApiError:
    """The domain error for a lease refusal a write's result carries."""
    if error == LEASE_NOT_FOUND:
        return _not_found(lease_id)
    if error == LEASE_KEYS_OUTSIDE:
        return Conflict("a key outside this token's prefix was attached to the lease meanwhile; "
                        "it may not revoke it now")
    if error == LEASE_FULL:
        return TooLarge(f"a lease holds at most {MAX_LEASE_KEYS} keys")
    if error == TOO_MANY_LEASES:
        return TooLarge(f"at most {MAX_LEASES} leases may be alive at once")
    return InvalidInput(f"lease command rejected: {error}")


def _not_found(lease_id: int) -> NotFound:
    details = {"lease": lease_id} if lease_id else {}
    return NotFound("requested lease not found", **details)

"""The raft package's own errors: refusals of the core and of the driver.

Callers above raft (the api layer) turn these into domain errors; nothing here knows
how a client will be told.
"""
from __future__ import annotations


class RaftError(Exception):
    """Base class for every refusal or failure raft reports to its callers."""


class NotLeader(RaftError):
    """The operation needs the leader; ``leader`` (and its member record, when known) say who is."""

    def __init__(self, leader: str | None, leader_http: str | None = None) -> None:
        super().__init__("not the leader" + (f"; the leader is {leader}" if leader else "; no leader known"))
        self.leader = leader
        self.leader_http = leader_http


class ConfChangeError(RaftError):
    """A membership change that can't be made now (another in flight, unknown node, ...)."""


class Stopped(RaftError):
    """The node is shutting down."""


class Timeout(RaftError):
    """No answer within the caller's timeout (no quorum?); the outcome of a write is unknown."""

    def __init__(self, message: str, leader: str | None) -> None:
        super().__init__(message)
        self.leader = leader


class Dropped(RaftError):
    """Leadership changed before the proposal committed: it was not applied."""

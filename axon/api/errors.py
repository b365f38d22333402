"""The API's domain errors: what went wrong, in the API's terms, with the details a client needs.

Nothing here knows how a client will be told; axon/web/replies.py maps each class to its
HTTP answer.  ``details`` travel to the client beside the message (e.g. the current
revision of a key whose condition failed).
"""
from __future__ import annotations

from axon.raft.errors import NotLeader as RaftNotLeader, RaftError


class ApiError(Exception):
    """Base class: a refusal or failure the client should see, as ``message`` plus ``details``."""

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidInput(ApiError):
    """The request is malformed: a bad key, body, condition or parameter."""


class NotFound(ApiError):
    """The key, member or thing asked for does not exist."""


class Conflict(ApiError):
    """The request contradicts the current state (e.g. a member re-joining with other addresses)."""


class Unauthenticated(ApiError):
    """The caller did not prove what the operation requires (e.g. a join without proof of the cluster key)."""


class TokenRequired(ApiError):
    """Auth is on and the request carries no token, or one no node issued (or one revoked)."""


class Forbidden(ApiError):
    """The request's token is known, but its role or prefix does not allow the operation."""


class RevisionMismatch(ApiError):
    """A write's condition (expected revision, or "must not exist") does not hold."""


class TooLarge(ApiError):
    """A value or request body is over its limit."""


class NoSpace(ApiError):
    """The disk alarm is raised (free-space floor or data quota): writes are refused, deletes are not."""


class Compacted(ApiError):
    """What was asked for is older than the history kept (details: ``compacted_revision``)."""


class Unavailable(ApiError):
    """No leader, no quorum, or the outcome could not be learned in time: retry later."""

    def __init__(self, message: str, *, leader: str | None = None, retry_after: int = 1,
                 **details: object) -> None:
        super().__init__(message, leader=leader, **details)
        self.leader = leader
        self.retry_after = retry_after


class NotLeader(Unavailable):
    """The operation needs the leader; the caller may pass it on to ``leader_http``."""

    def __init__(self, leader: str | None, leader_http: str | None) -> None:
        super().__init__("this node is not the leader", leader=leader)
        self.leader_http = leader_http


def from_raft(exc: RaftError, leader: str | None) -> ApiError:
    """A Raft refusal in the API's terms: NotLeader, or Unavailable (no quorum, timeout, stopping)."""
    if isinstance(exc, RaftNotLeader):
        return NotLeader(exc.leader, exc.leader_http)
    return Unavailable(str(exc), leader=leader)

"""The one place for Axon's errors and the HTTP status each maps to."""
from __future__ import annotations


class AxonError(Exception):
    """Base class: an error a client should see as ``{"error": message, ...}``."""
    status = 500

    def __init__(self, message: str, **extra: object) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra

    def body(self) -> dict:
        return {"error": self.message, **self.extra}


class BadRequest(AxonError):
    status = 400


class NotFound(AxonError):
    status = 404


class MethodNotAllowed(AxonError):
    status = 405


class Conflict(AxonError):
    status = 409


class PreconditionFailed(AxonError):
    status = 412


class PayloadTooLarge(AxonError):
    status = 413


class Unavailable(AxonError):
    """No leader, no quorum, or the outcome could not be learned in time (retry later)."""
    status = 503

    def __init__(self, message: str, *, leader: str | None = None, retry_after: int = 1,
                 **extra: object) -> None:
        super().__init__(message, leader=leader, **extra)
        self.retry_after = retry_after


class NotLeaderError(AxonError):
    """Raised inside a node when an operation needs the leader; the service forwards or answers 503."""
    status = 503

    def __init__(self, leader_id: str | None, leader_http: str | None) -> None:
        super().__init__("this node is not the leader", leader=leader_id)
        self.leader_id = leader_id
        self.leader_http = leader_http


class ConfigError(Exception):
    """Bad flags, environment or data directory: the CLI prints it on one line and exits non-zero."""

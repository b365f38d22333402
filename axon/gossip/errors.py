"""Exceptions raised by the gossip package."""
from __future__ import annotations


class GossipError(Exception):
    """Base class for every gossip error (bad configuration, bad arguments, bad input)."""


class CodecError(GossipError):
    """A packet or stream frame could not be decoded; ``reason`` names the drop counter."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class TransportError(GossipError):
    """A socket-level exchange failed (timeout, oversize frame, closed early)."""


class StreamClosedError(TransportError):
    """The peer closed the stream before a whole frame arrived (e.g. it would not answer)."""

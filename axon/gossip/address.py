"""Gossip's "host:port" addresses: the shared parser (axon.address), failing with GossipError."""
from __future__ import annotations

from axon.address import AddressError, format_addr
from axon.address import parse_addr as _parse_addr
from axon.gossip.errors import GossipError

__all__ = ["format_addr", "parse_addr"]


def parse_addr(addr: str) -> tuple[str, int]:
    """"host:port" or "[v6]:port" -> (host, port); raises GossipError."""
    try:
        return _parse_addr(addr)
    except AddressError as exc:
        raise GossipError(str(exc)) from None

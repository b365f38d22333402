"""Parsing and formatting of "host:port" gossip addresses."""
from __future__ import annotations

from axon.gossip.errors import GossipError

MAX_ADDR_LEN = 255


def parse_addr(addr: str) -> tuple[str, int]:
    """"host:port" or "[v6]:port" -> (host, port); raises GossipError."""
    if not isinstance(addr, str) or not addr or len(addr) > MAX_ADDR_LEN:
        raise GossipError(f"bad address {addr!r}")
    host, sep, port_text = addr.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise GossipError(f"bad address {addr!r}: want host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise GossipError(f"bad port in {addr!r}")
    return host, port


def format_addr(host: str, port: int) -> str:
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"

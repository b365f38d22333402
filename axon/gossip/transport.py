"""Gevent sockets for gossip: a UDP+TCP port pair and length-prefixed push-pull frames."""
from __future__ import annotations

import socket as _stdsocket
import struct

from gevent import socket

from axon.gossip.address import parse_addr
from axon.gossip.errors import StreamClosedError, TransportError

_LENGTH = struct.Struct(">I")


def family_of(host: str) -> int:
    return _stdsocket.AF_INET6 if ":" in host else _stdsocket.AF_INET


def bind_pair(host: str, port: int, attempts: int = 20) -> tuple[socket.socket, socket.socket, int]:
    """Bind a TCP listener and a UDP socket to the same port (a free one when ``port`` is 0)."""
    for _ in range(attempts):
        tcp = socket.socket(family_of(host), _stdsocket.SOCK_STREAM)
        udp = socket.socket(family_of(host), _stdsocket.SOCK_DGRAM)
        try:
            # lets a restarted agent reclaim its address while old connections sit in TIME_WAIT
            tcp.setsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_REUSEADDR, 1)
            tcp.bind((host, port))
            tcp.listen(128)
            actual = tcp.getsockname()[1]
            udp.bind((host, actual))
            return tcp, udp, actual
        except OSError:
            tcp.close()
            udp.close()
            if port != 0:
                raise
    raise TransportError(f"no port free for both UDP and TCP on {host}")


def read_exact(sock: socket.socket, size: int) -> bytes:
    chunks, remaining = [], size
    while remaining:
        chunk = sock.recv(min(remaining, 65536))
        if not chunk:
            raise StreamClosedError("connection closed mid-frame")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_frame(sock: socket.socket, max_size: int) -> bytes:
    (size,) = _LENGTH.unpack(read_exact(sock, _LENGTH.size))
    if size > max_size:
        raise TransportError(f"frame of {size} bytes exceeds {max_size}")
    return read_exact(sock, size)


def write_frame(sock: socket.socket, data: bytes) -> None:
    sock.sendall(_LENGTH.pack(len(data)) + data)


def exchange(addr: str, data: bytes, timeout: float, max_size: int) -> bytes:
    """Connect to ``addr``, send one frame, return the one frame it answers."""
    host, port = parse_addr(addr)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        write_frame(sock, data)
        return read_frame(sock, max_size)

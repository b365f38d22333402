"""A raw HTTP connection for the server tests: bytes out, bytes in, on a gevent socket.

For what a real client would hide (framing, pipelining, EOF, a half-sent request).  gevent is
not monkey-patched in the test process, so its own sockets are used: a blocking read yields
to the hub, which runs the server's greenlets in the same thread, and every read has a
deadline (the socket timeout), so a server that fails to answer fails the test instead of
hanging it.
"""
from __future__ import annotations

import socket
from typing import Any, Callable, Iterator, TypeVar

import gevent
from gevent import socket as gsocket

TIMEOUT = 5.0     # seconds any single read may wait: a deadline, not a sleep

Address = tuple[str, int]


class RawConnection:
    """One connection; ``rcvbuf`` (set before connecting) bounds the window the server may fill."""

    def __init__(self, addr: Address, rcvbuf: int | None = None) -> None:
        self.sock = gsocket.socket()
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect(addr)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        data = self.sock.recv(64 * 1024)
        self.buf += data
        return bool(data)

    def read_until(self, marker: bytes) -> bytes:
        while marker not in self.buf:
            if not self._fill():
                raise EOFError(f"connection closed before {marker!r}; unread: {self.buf[:200]!r}")
        out, _, self.buf = self.buf.partition(marker)
        return out + marker

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise EOFError(f"connection closed; unread: {self.buf[:200]!r}")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_to_eof(self) -> bytes:
        while self._fill():
            pass
        out, self.buf = self.buf, b""
        return out

    def closed_by_server(self) -> bool:
        """True once the server has closed (EOF, or a reset after it), with nothing left unread."""
        try:
            data = self.sock.recv(1)
        except ConnectionResetError:
            return not self.buf
        return data == b"" and not self.buf

    def close(self) -> None:
        self.sock.close()


C = TypeVar("C")


def opened(make: Callable[..., C]) -> Iterator[Callable[..., C]]:
    """A connect fixture's body: connections made with ``make(addr, ...)`` (anything with a
    ``close()``), closed after the test so that no server greenlet waits on them."""
    conns: list[Any] = []

    def open_conn(addr: Address, *args: Any, **kwargs: Any) -> C:
        conns.append(make(addr, *args, **kwargs))
        return conns[-1]

    yield open_conn
    for conn in conns:
        conn.close()
    gevent.sleep(0)   # let the server greenlets see the EOFs and finish

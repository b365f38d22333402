"""A real node under connection pressure: the cap, the idle timeout, and writes that go on."""
from __future__ import annotations

import socket
import time

import pytest

from axon.testing.cluster import Cluster, wait_for

pytestmark = pytest.mark.slow


def _connect(addr: str) -> socket.socket:
    host, port = addr.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=5)


def _get(sock: socket.socket, path: str = "/health") -> bytes:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_connection_cap_and_idle_timeout_keep_the_node_serving(tmp_path):
    cluster = Cluster(tmp_path, n=1, extra_args=["--max-connections", "16", "--idle-timeout", "1"])
    held: list[socket.socket] = []
    try:
        node = cluster.nodes[0]
        cluster.leader()
        keeper = _connect(node.http)
        assert _get(keeper).startswith(b"HTTP/1.1 200")
        held.append(keeper)
        for _ in range(40):   # far past the cap
            held.append(_connect(node.http))
        refused = _connect(node.http)
        refused.settimeout(5)
        answer = refused.recv(4096)
        assert answer.startswith(b"HTTP/1.1 503") and b"Retry-After" in answer, answer
        # the idle timeout frees the slots: idle connections are closed by the node
        def closed(sock: socket.socket) -> bool:
            sock.settimeout(0.05)
            try:
                return sock.recv(1) == b""
            except socket.timeout:
                return False
            except OSError:
                return True
        wait_for(lambda: closed(keeper), timeout=10, message="the idle connection to be closed")
        for sock in held:
            sock.close()
        held.clear()
        # the node still writes (the WAL never saw EMFILE) and serves new connections
        wait_for(lambda: node.client.put("k", "v")["value"] == "v", timeout=10, message="a write")
        assert node.running
    finally:
        for sock in held:
            sock.close()
        cluster.close()

"""The client's connection pool keeps reusing a keep-alive connection whatever its descriptor number."""
from __future__ import annotations

import os
import resource
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from axon.client.http import HttpPool


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_a_connection_past_descriptor_1023_is_reused_not_dropped() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 1200:
        pytest.skip(f"the hard descriptor limit ({hard}) is too low for this test")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    filler = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]   # push new descriptors past 1023
    accepted = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.get_request = lambda get=server.get_request: accepted.append(1) or get()   # count connections
    threading.Thread(target=server.serve_forever, daemon=True).start()
    pool = HttpPool(timeout=5)
    try:
        addr = f"127.0.0.1:{server.server_address[1]}"
        for _ in range(3):
            assert pool.request("GET", addr, "/").status == 200
        [conn] = pool._idle[addr]
        assert conn.sock.fileno() > 1023
        assert len(accepted) == 1    # one connection served all three requests
    finally:
        pool.close()
        server.shutdown()
        server.server_close()
        for fd in filler:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

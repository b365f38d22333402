"""What clients may hold of an HttpServer, over real loopback sockets: connections, time, body bytes.

As in test_httpserver.py, gevent is not monkey-patched: clients use gevent's sockets, so
their blocking reads yield to the hub, which runs the server in the same thread.  Every
read has a deadline; timeouts under test are short (tenths of a second), and the few
waits meant to outlast one are there to show that something did *not* happen.
Checks that need their own file descriptor limit run in a child process.
"""
from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
import textwrap
import time
from typing import Any, Callable, Iterator

import gevent
import pytest
from gevent.event import Event

from axon.testing.polling import wait_until
from axon.web.app import bind
from axon.web.limits import ByteBudget, ConnectionCount, connection_cap
from axon.web import server as server_module
from axon.web.replies import json_reply
from axon.web.server import HttpServer, raise_nofile_limit
from axon.web.wire import LAST_CHUNK, Request, Response
from rawhttp import TIMEOUT, Address, RawConnection, opened

SHORT = 0.3       # the timeout under test
LONG = 30.0       # the timeouts not under test
MAX_BODY = 1 << 20
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------- server side

class Handlers:
    """Echo, plus a request held until ``release`` is set and a streamed body gated the same way."""

    def __init__(self) -> None:
        self.release = Event()
        self.held = 0   # requests waiting for ``release`` now

    def __call__(self, req: Request) -> Response:
        if req.path == "/hold":
            self.held += 1
            try:
                self.release.wait(TIMEOUT)
            finally:
                self.held -= 1
        if req.path == "/stream":
            return Response(200, [("Content-Type", "text/plain")], stream=self._gated())
        if req.path == "/large":   # far more than the socket buffers hold
            return Response(200, [("Content-Type", "application/octet-stream")], b"L" * (16 << 20))
        return json_reply(200, {"path": req.path, "length": len(req.body)})

    def _gated(self) -> Iterator[bytes]:
        yield b"before"
        self.release.wait(TIMEOUT)
        yield b"after"


@pytest.fixture
def handlers() -> Handlers:
    return Handlers()


@pytest.fixture
def serve(handlers: Handlers) -> Iterator[Callable[..., tuple[HttpServer, Address]]]:
    """Start an HttpServer on 127.0.0.1 (an ephemeral port) with long timeouts unless given; stopped after."""
    servers: list[HttpServer] = []

    def start(**limits: Any) -> tuple[HttpServer, Address]:
        limits = {"idle_timeout": LONG, "header_timeout": LONG, "body_timeout": LONG, **limits}
        listener = bind("127.0.0.1:0")
        server = HttpServer(listener, handlers, MAX_BODY, **limits)
        server.start()
        servers.append(server)
        return server, listener.getsockname()[:2]

    yield start
    handlers.release.set()
    for server in servers:
        server.stop(timeout=1)


# ---------------------------------------------------------------- client side

class Client(RawConnection):
    """Bytes out, whole responses in."""

    def response(self) -> tuple[int, dict[str, str], bytes]:
        """Status, headers (lower-case names) and body of the next response with a Content-Length."""
        status_line, *lines = self.read_until(b"\r\n\r\n")[:-4].decode("latin-1").split("\r\n")
        headers = {name.lower(): value for name, _, value in (line.partition(": ") for line in lines)}
        return int(status_line.split(" ")[1]), headers, self.read_exact(int(headers.get("content-length", 0)))

    def request(self, path: str, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
        self.send(b"PUT %s HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s" % (path.encode(), len(body), body))
        return self.response()


@pytest.fixture
def connect() -> Iterator[Callable[[Address], Client]]:
    yield from opened(Client)


def assert_refused(reply: tuple[int, dict[str, str], bytes], status: int) -> None:
    """An error answer as the server sends them: JSON, and the connection closes after it."""
    code, headers, body = reply
    assert code == status, (code, body)
    assert headers["connection"] == "close" and json.loads(body)["error"]


def child(script: str, **popen: Any) -> subprocess.Popen:
    """``script`` in a fresh interpreter (its own file descriptor limit), with the project importable."""
    env = dict(os.environ, PYTHONPATH=REPO)
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], env=env, text=True, **popen)


# ---------------------------------------------------------------- accounting (no I/O)

def test_connection_count_refuses_at_the_cap_and_counts_nothing_then() -> None:
    count = ConnectionCount(2)
    assert count.try_open() and count.try_open()
    assert not count.try_open() and count.open == 2
    count.close()
    assert count.try_open() and count.open == 2


def test_byte_budget_takes_all_or_nothing() -> None:
    budget = ByteBudget(10)
    assert budget.take(6) and not budget.take(5)
    assert (budget.used, budget.available) == (6, 4)
    assert budget.take(4) and budget.available == 0
    budget.give(10)
    assert budget.used == 0


@pytest.mark.parametrize("wanted, nofile, reserve, claimed, cap", [
    (4096, 20000, 1024, 0, 4096),     # room for all
    (4096, 5120, 1024, 0, 4096),      # exactly
    (4096, 4096, 1024, 0, 3072),      # the reserve comes first
    (4096, 1024, 1024, 0, 512),       # a low limit: the reserve shrinks to half of it
    (4096, 9216, 1024, 4096, 4096),   # another listener's cap counted
    (4096, 6144, 1024, 4096, 1024),
    (10, 100, 1000, 100, 1),          # never none at all
])
def test_connection_cap_keeps_the_reserve_for_the_rest_of_the_process(wanted: int, nofile: int, reserve: int,
                                                                     claimed: int, cap: int) -> None:
    assert connection_cap(wanted, nofile, reserve, claimed) == cap


# ---------------------------------------------------------------- connections

def test_past_the_cap_new_connections_get_503_and_close_while_open_ones_keep_working(serve, connect) -> None:
    server, addr = serve(max_connections=3)
    clients = [connect(addr) for _ in range(3)]
    for client in clients:   # an answer: the server has accepted and counted it
        assert client.request("/in")[0] == 200
    late = connect(addr)
    code, headers, body = late.response()   # unasked: the server speaks first, then closes
    assert_refused((code, headers, body), 503)
    assert headers["retry-after"] == "1"
    assert late.closed_by_server()
    assert server.turned_away == 1
    for client in clients:   # untouched, still keep-alive
        assert client.request("/still")[0] == 200
    clients[0].close()
    wait_until(lambda: server.connections.open == 2, TIMEOUT, "the closed connection to be uncounted")
    assert connect(addr).request("/room")[0] == 200


def test_the_cap_is_fitted_to_a_low_hard_file_limit_with_one_warning() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 400:
        pytest.skip(f"the hard file limit ({hard}) is below the one this test sets")
    proc = child("""
        import logging, resource
        from axon.web.app import bind
        from axon.web.server import HttpServer
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 400))
        server = HttpServer(bind("127.0.0.1:0"), lambda req: None, 1024, max_connections=4096, fd_reserve=100)
        server.start()
        print(server.connections.limit, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    """, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out.split() == ["300", "400"]   # soft raised to the hard limit, 100 kept back
    assert err.count("WARNING") == 1 and "at most 300 connections" in err


def test_raise_nofile_limit_raises_the_soft_limit_up_to_the_hard_one_and_never_lowers_it() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 600:
        pytest.skip(f"the hard file limit ({hard}) is too low to raise anything")
    proc = child("""
        import resource
        from axon.web.server import raise_nofile_limit
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        soft = lambda: resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        print(raise_nofile_limit(500), soft())     # raised
        print(raise_nofile_limit(300), soft())     # not lowered
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 600))
        print(raise_nofile_limit(10 ** 6), soft())  # as far as the hard limit
    """, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out.splitlines() == ["500 500", "500 500", "600 600"]
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (soft, hard)   # this process untouched


def child_cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="reads CPU time from /proc")
def test_accept_out_of_file_descriptors_pauses_instead_of_spinning_and_recovers() -> None:
    # The cap is left above what the fd limit allows (set after start), so accept() meets EMFILE.
    proc = child("""
        import logging, os, resource
        from axon.web.app import bind
        from axon.web.replies import json_reply
        from axon.web.server import HttpServer
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
        server = HttpServer(bind("127.0.0.1:0"), lambda req: json_reply(200, {}), 1024, max_connections=100)
        server.start()
        room = len(os.listdir("/proc/self/fd")) + 2   # a few connections' worth, far fewer than the cap
        resource.setrlimit(resource.RLIMIT_NOFILE, (room, room))
        print(server.address[1], flush=True)
        server.serve_forever()
    """, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        port = int(proc.stdout.readline())
        clients = [socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) for _ in range(6)]
        for client in clients:
            client.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        answered, waiting = [], []
        for client in clients:   # the first answers come at once; the others wait in the backlog
            client.settimeout(0.2 if answered else TIMEOUT)
            try:
                assert client.recv(1024).startswith(b"HTTP/1.1 200 ")
                answered.append(client)
            except TimeoutError:
                waiting.append(client)
        assert answered and waiting, (len(answered), len(waiting))
        cpu = child_cpu_seconds(proc.pid)
        time.sleep(1.0)   # a window to measure: spinning on accept would burn all of it
        assert child_cpu_seconds(proc.pid) - cpu < 0.3
        for client in answered:   # descriptors free up: the waiting connections get in
            client.close()
        for client in waiting:
            client.settimeout(TIMEOUT)
            assert client.recv(1024).startswith(b"HTTP/1.1 200 ")
            client.close()
    finally:
        proc.kill()
        _, err = proc.communicate(timeout=10)
    assert err.count("pausing accepts") == 1, err   # one warning for the episode, not one a retry
    assert "Traceback" not in err, err


# ---------------------------------------------------------------- time

def test_idle_keep_alive_connection_is_closed_after_the_idle_timeout(serve, connect) -> None:
    server, addr = serve(idle_timeout=SHORT)
    client = connect(addr)
    assert client.request("/once")[0] == 200
    answered = time.monotonic()
    assert client.closed_by_server()   # EOF, and no answer before it
    assert SHORT * 0.9 <= time.monotonic() - answered < SHORT + 2.0
    wait_until(lambda: server.connections.open == 0, TIMEOUT, "the connection to be uncounted")


def test_connection_that_never_sends_is_closed_after_the_idle_timeout(serve, connect) -> None:
    _, addr = serve(idle_timeout=SHORT)
    opened = time.monotonic()
    assert connect(addr).closed_by_server()
    assert SHORT * 0.9 <= time.monotonic() - opened < SHORT + 2.0


def test_requests_keep_an_idle_timeout_from_firing(serve, connect) -> None:
    idle_timeout = 1.0
    _, addr = serve(idle_timeout=idle_timeout)
    client = connect(addr)
    deadline = time.monotonic() + idle_timeout * 1.5
    while time.monotonic() < deadline:   # each gap far shorter than the timeout; all of them longer
        assert client.request("/busy")[0] == 200
        gevent.sleep(0.1)


def test_half_sent_head_gets_408_after_the_header_timeout(serve, connect) -> None:
    _, addr = serve(header_timeout=SHORT)
    client = connect(addr)
    client.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n")
    sent = time.monotonic()
    assert_refused(client.response(), 408)
    assert SHORT * 0.9 <= time.monotonic() - sent < SHORT + 2.0
    assert client.closed_by_server()


def test_many_heads_timing_out_at_once_are_cut_a_batch_per_turn_of_the_loop(serve, connect, monkeypatch) -> None:
    """A thousand slowloris heads expiring together must not hold the loop: the sweep takes
    SWEEP_BATCH of them, lets the loop poll, and comes back for the rest."""
    monkeypatch.setattr(server_module, "SWEEP_BATCH", 3)
    batches: list[int] = []
    sweep = HttpServer._sweep

    def counted(self: HttpServer) -> None:
        before = sum(1 for w in self._waits if 0.0 < w.deadline <= time.monotonic())
        sweep(self)
        batches.append(before - sum(1 for w in self._waits if 0.0 < w.deadline <= time.monotonic()))
    monkeypatch.setattr(HttpServer, "_sweep", counted)
    _, addr = serve(header_timeout=SHORT)
    clients = [connect(addr) for _ in range(10)]
    for client in clients:
        client.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n")
    for client in clients:
        assert_refused(client.response(), 408)
    assert max(batches) <= 3 and sum(batches) >= 10


def test_head_trickling_in_is_cut_at_the_header_timeout_however_steadily_it_comes(serve, connect) -> None:
    header_timeout = 0.5
    _, addr = serve(header_timeout=header_timeout)
    client = connect(addr)
    client.send(b"GET /slow HTTP/1.1\r\n")
    started = time.monotonic()

    def trickle() -> None:   # a header byte every 50 ms, far within any per-read timeout
        try:
            while True:
                client.send(b"X")
                gevent.sleep(0.05)
        except OSError:
            pass   # closed by the server

    trickler = gevent.spawn(trickle)
    try:
        assert_refused(client.response(), 408)
        assert header_timeout * 0.9 <= time.monotonic() - started < header_timeout + 2.0
    finally:
        trickler.kill()


def test_stalled_body_gets_408_after_the_body_timeout_and_gives_its_bytes_back(serve, connect) -> None:
    server, addr = serve(body_timeout=SHORT, unbudgeted_body=0)
    client = connect(addr)
    client.send(b"PUT /slow HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
    sent = time.monotonic()
    wait_until(lambda: server.inflight_bytes == 100, TIMEOUT, "the body to be accounted")
    assert_refused(client.response(), 408)
    assert SHORT * 0.9 <= time.monotonic() - sent < SHORT + 2.0
    assert client.closed_by_server()
    wait_until(lambda: server.inflight_bytes == 0, TIMEOUT, "the body's bytes to be given back")


def test_body_trickling_in_is_not_cut_while_bytes_keep_coming(serve, connect) -> None:
    body_timeout = 1.0
    _, addr = serve(body_timeout=body_timeout)
    client = connect(addr)
    client.send(b"PUT /slow HTTP/1.1\r\nHost: t\r\nContent-Length: 8\r\n\r\n")
    for _ in range(8):   # 8 x 0.15 s: the whole body takes longer than the timeout, each gap far less
        gevent.sleep(0.15)
        client.send(b"x")
    code, _, body = client.response()
    assert code == 200 and json.loads(body)["length"] == 8


def test_slow_handler_is_not_cut_by_the_idle_timeout(serve, connect, handlers) -> None:
    _, addr = serve(idle_timeout=SHORT)
    client = connect(addr)
    client.send(b"GET /hold HTTP/1.1\r\nHost: t\r\n\r\n")
    wait_until(lambda: handlers.held == 1, TIMEOUT, "the handler to start")
    gevent.sleep(SHORT * 3)   # no client byte meanwhile: the wait is the server's, not the client's
    handlers.release.set()
    assert client.response()[0] == 200


def test_streamed_answer_is_not_cut_by_the_idle_timeout_while_it_streams(serve, connect, handlers) -> None:
    _, addr = serve(idle_timeout=SHORT)
    client = connect(addr)
    client.send(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n")
    head = client.read_until(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"Transfer-Encoding: chunked" in head
    assert client.read_until(b"before\r\n") == b"6\r\nbefore\r\n"
    gevent.sleep(SHORT * 3)   # a watch with nothing to say for a while, and no client byte
    handlers.release.set()
    assert client.read_until(LAST_CHUNK) == b"5\r\nafter\r\n" + LAST_CHUNK
    assert client.request("/after-stream")[0] == 200   # the connection lived through it
    assert client.closed_by_server()   # and the idle timeout applies again once it ended


def test_plain_answer_the_client_stops_taking_is_cut_after_the_send_timeout(serve, connect) -> None:
    send_timeout = 0.5
    server, addr = serve(send_timeout=send_timeout)
    client = connect(addr)
    client.send(b"GET /large HTTP/1.1\r\nHost: t\r\n\r\n")
    assert client.read_until(b"\r\n\r\n").startswith(b"HTTP/1.1 200 ")
    stalled = time.monotonic()   # and reads nothing more
    wait_until(lambda: server.connections.open == 0, TIMEOUT + send_timeout, "the stalled answer to be cut")
    assert time.monotonic() - stalled >= send_timeout * 0.9


# ---------------------------------------------------------------- request body bytes in flight

def hold_body(client: Client, declared: int, sent: int) -> None:
    """Send a head declaring ``declared`` body bytes, and only ``sent`` of them."""
    client.send(b"PUT /held HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s" % (declared, b"h" * sent))


def test_bodies_past_the_in_flight_budget_get_503_while_small_ones_pass_until_it_frees(serve, connect) -> None:
    server, addr = serve(max_inflight_bytes=100_000, unbudgeted_body=0)
    holders = [connect(addr) for _ in range(3)]
    for holder in holders:
        hold_body(holder, 30_000, 1000)
    wait_until(lambda: server.inflight_bytes == 90_000, TIMEOUT, "the held bodies to be accounted")

    big = connect(addr)
    reply = big.request("/big", b"b" * 20_000)
    assert_refused(reply, 503)
    assert reply[1]["retry-after"] == "1"
    assert big.closed_by_server()

    chunked = connect(addr)   # counted as its chunks come: refused at the one that does not fit
    chunked.send(b"POST /chunked HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"1000\r\n" + b"c" * 0x1000 + b"\r\n4e20\r\n")
    assert_refused(chunked.response(), 503)

    continuing = connect(addr)   # refused before it is asked for the body
    continuing.send(b"PUT /big HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 20000\r\n\r\n")
    assert_refused(continuing.response(), 503)

    small = connect(addr)
    assert small.request("/small", b"s" * 5_000)[0] == 200
    assert small.request("/bodiless")[0] == 200
    assert server.inflight_bytes == 90_000

    holders[0].send(b"h" * 29_000)   # one body completes and is handled; another is abandoned
    assert holders[0].response()[0] == 200
    holders[1].close()
    wait_until(lambda: server.inflight_bytes == 30_000, TIMEOUT, "the budget to be given back")
    assert connect(addr).request("/big", b"b" * 20_000)[0] == 200


def test_a_body_counts_until_its_handler_returns(serve, connect, handlers) -> None:
    server, addr = serve(max_inflight_bytes=100_000, unbudgeted_body=0)
    client = connect(addr)
    client.send(b"PUT /hold HTTP/1.1\r\nHost: t\r\nContent-Length: 60000\r\n\r\n" + b"x" * 60_000)
    wait_until(lambda: handlers.held == 1, TIMEOUT, "the handler to start")
    assert server.inflight_bytes == 60_000   # received whole, and still held by the handler
    assert_refused(connect(addr).request("/big", b"b" * 50_000), 503)
    handlers.release.set()
    assert client.response()[0] == 200
    assert server.inflight_bytes == 0
    assert connect(addr).request("/big", b"b" * 50_000)[0] == 200


def test_bodies_held_back_cannot_make_small_writes_wait(serve, connect) -> None:
    """The start of every body is outside the budget: big stalled bodies fill the budget, a
    small write still passes, a big one is refused."""
    server, addr = serve(max_inflight_bytes=300_000, unbudgeted_body=20_000)
    holders = [connect(addr) for _ in range(3)]
    for holder in holders:
        hold_body(holder, 120_000, 1000)   # 100,000 each counted
    wait_until(lambda: server.inflight_bytes == 300_000, TIMEOUT, "the held bodies to be accounted")
    small = connect(addr)
    assert small.request("/small", b"s" * 20_000)[0] == 200
    assert_refused(connect(addr).request("/big", b"b" * 20_001), 503)
    assert server.inflight_bytes == 300_000

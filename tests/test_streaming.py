"""Streamed answers (``Response.stream``) over real loopback sockets: chunked framing,
Server-Sent Events, HTTP/1.0, HEAD, failures midway, clients that leave, and backpressure.

As in test_httpserver.py, gevent is not monkey-patched: clients use gevent's sockets (and
http.client is handed gevent's ``create_connection``), so their blocking reads yield to
the hub, which runs the server in the same thread.  Every wait has a deadline.
"""
from __future__ import annotations

import http.client
import inspect
import json
import logging
import socket
import time
from typing import Callable, Iterator

import gevent
import pytest
from gevent import socket as gsocket
from gevent.event import Event

from axon.client.sse import Event as SseEvent, EventParser
from axon.testing.polling import wait_until
from axon.web.replies import json_reply
from axon.web.server import Handler, HttpServer
from axon.web.sse import format_comment, format_event, sse_response
from axon.web.wire import LAST_CHUNK, Request, Response
from rawhttp import TIMEOUT, Address, RawConnection, opened

PIECES = [b"one", b"", b"two", b"three"]   # the empty piece must not end the chunked body


# ---------------------------------------------------------------- server side

class Producers:
    """Handlers whose streamed bodies record what happened to them."""

    def __init__(self) -> None:
        self.generators: list[Iterator[bytes]] = []
        self.produced = 0               # pieces handed to the server, by every generator
        self.finished = Event()         # set by a generator's finally (closed, failed or done)
        self.gate = Event()             # what /gated waits for between its two pieces

    def _track(self, gen: Iterator[bytes]) -> Iterator[bytes]:
        self.generators.append(gen)
        return gen

    def _counted(self, pieces: Iterator[bytes]) -> Iterator[bytes]:
        try:
            for piece in pieces:
                self.produced += 1
                yield piece
        finally:
            self.finished.set()

    def _endless(self) -> Iterator[bytes]:
        piece = b"x" * (64 * 1024)
        while True:
            yield piece

    def _quiet(self) -> Iterator[bytes]:
        yield b"first"
        Event().wait()   # a watch on a key nobody writes: no next piece, ever

    def _gated(self) -> Iterator[bytes]:
        yield b"before"
        self.gate.wait(TIMEOUT)
        yield b"after"

    def _failing(self) -> Iterator[bytes]:
        yield b"partial"
        raise RuntimeError("producer bug")

    def _not_bytes(self) -> Iterator[bytes]:
        yield b"partial"
        yield "a str"   # type: ignore[misc]

    def _events(self) -> Iterator[bytes]:
        yield format_event("hello")
        yield format_comment("keep-alive")
        yield format_event("line one\nline two\n", event="update", event_id="7")
        yield format_event("", event="empty")
        yield format_event("after\r\nCRLF", event_id="8")

    def handle(self, req: Request) -> Response:
        streams: dict[str, Callable[[], Iterator[bytes]]] = {
            "/pieces": lambda: iter(PIECES), "/endless": self._endless, "/quiet": self._quiet,
            "/gated": self._gated, "/failing": self._failing, "/not-bytes": self._not_bytes,
        }
        if req.path in streams:
            return Response(200, [("Content-Type", "application/octet-stream")],
                            stream=self._track(self._counted(streams[req.path]())))
        if req.path == "/events":
            return sse_response(self._track(self._counted(self._events())), [("X-Stream", "sse")])
        if req.path == "/with-length":   # a streamed body cannot have a length: 500 before any byte
            return Response(200, [("Content-Length", "5")], stream=self._track(self._counted(iter(PIECES))))
        return json_reply(200, {"path": req.path})


@pytest.fixture
def producers() -> Producers:
    return Producers()


@pytest.fixture
def serve(producers: Producers) -> Iterator[Callable[..., Address]]:
    """Start an HttpServer on 127.0.0.1 (an ephemeral port) in this thread's hub; stopped after."""
    servers: list[HttpServer] = []

    def start(handler: Handler | None = None, send_timeout: float = 60.0) -> Address:
        listener = gsocket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        server = HttpServer(listener, handler or producers.handle, 1 << 20, send_timeout=send_timeout)
        server.start()
        servers.append(server)
        return listener.getsockname()[:2]

    yield start
    for server in servers:
        server.stop(timeout=1)


# ---------------------------------------------------------------- client side

class GeventHTTPConnection(http.client.HTTPConnection):
    """http.client over gevent's sockets, so that its reads let the server run."""

    def __init__(self, addr: Address) -> None:
        super().__init__(*addr, timeout=TIMEOUT)
        self._create_connection = gsocket.create_connection


@pytest.fixture
def http_connect() -> Iterator[Callable[[Address], GeventHTTPConnection]]:
    yield from opened(GeventHTTPConnection)


class RawClient(RawConnection):
    """Bytes out, bytes in: for what http.client hides (framing, EOF)."""

    def head(self) -> tuple[str, dict[str, str]]:
        """Status line and headers (lower-case names) of the next response."""
        status, *lines = self.read_until(b"\r\n\r\n")[:-4].decode("latin-1").split("\r\n")
        return status, {name.lower(): value for name, _, value in (line.partition(": ") for line in lines)}

    def chunk(self) -> bytes | None:
        """The next chunk's data; None after the last chunk (and its empty trailer section)."""
        size = int(self.read_until(b"\r\n")[:-2], 16)
        if size == 0:
            assert self.read_until(b"\r\n") == b"\r\n"
            return None
        data = self.read_exact(size + 2)
        assert data[-2:] == b"\r\n"
        return data[:-2]

    def chunked_body(self) -> list[bytes]:
        return list(iter(self.chunk, None))


@pytest.fixture
def raw_connect() -> Iterator[Callable[..., RawClient]]:
    yield from opened(RawClient)


def wait_until_steady(read: Callable[[], int], quiet: float, timeout: float, what: str) -> int:
    """The value of ``read()`` once it has not changed for ``quiet`` seconds."""
    last, since = read(), time.monotonic()

    def steady() -> bool:
        nonlocal last, since
        now = read()
        if now != last:
            last, since = now, time.monotonic()
        return time.monotonic() - since >= quiet

    wait_until(steady, timeout, what)
    return last


# ---------------------------------------------------------------- chunked round trips

def test_streamed_body_round_trips_through_http_client_and_the_connection_stays(serve, http_connect,
                                                                               producers) -> None:
    conn = http_connect(serve())
    conn.request("GET", "/pieces")
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.getheader("Transfer-Encoding") == "chunked" and resp.getheader("Content-Length") is None
    assert resp.getheader("Content-Type") == "application/octet-stream"
    assert resp.read() == b"".join(PIECES)
    sock = conn.sock
    conn.request("GET", "/plain")   # keep-alive: the same connection, framing intact after the stream
    resp = conn.getresponse()
    assert json.loads(resp.read()) == {"path": "/plain"}
    conn.request("GET", "/pieces")
    assert conn.getresponse().read() == b"".join(PIECES)
    assert conn.sock is sock
    assert all(inspect.getgeneratorstate(g) == inspect.GEN_CLOSED for g in producers.generators)


def test_each_piece_is_sent_as_it_is_produced_as_one_chunk(serve, raw_connect, producers) -> None:
    client = raw_connect(serve())
    client.send(b"GET /gated HTTP/1.1\r\nHost: t\r\n\r\n")
    status, headers = client.head()
    assert status == "HTTP/1.1 200 OK" and headers["transfer-encoding"] == "chunked"
    assert client.chunk() == b"before"   # arrives while the producer still waits for the gate
    producers.gate.set()
    assert client.chunk() == b"after"
    assert client.chunk() is None


def test_wire_framing_of_a_streamed_body(serve, raw_connect) -> None:
    client = raw_connect(serve())
    client.send(b"GET /pieces HTTP/1.1\r\nHost: t\r\n\r\n")
    client.head()
    body = client.read_until(LAST_CHUNK)
    assert body == b"3\r\none\r\n3\r\ntwo\r\n5\r\nthree\r\n0\r\n\r\n"   # no empty chunk mid-body


def test_request_pipelined_behind_a_stream_is_answered_after_it(serve, raw_connect, producers) -> None:
    client = raw_connect(serve())
    client.send(b"GET /gated HTTP/1.1\r\nHost: t\r\n\r\n")
    client.head()
    assert client.chunk() == b"before"
    client.send(b"GET /next HTTP/1.1\r\nHost: t\r\n\r\n")   # while the stream is still open
    gevent.sleep(0.05)   # let the server see those bytes mid-stream (the stream must go on)
    producers.gate.set()
    assert client.chunk() == b"after" and client.chunk() is None
    status, headers = client.head()
    assert status == "HTTP/1.1 200 OK"
    assert json.loads(client.read_exact(int(headers["content-length"]))) == {"path": "/next"}


# ---------------------------------------------------------------- Server-Sent Events

def test_server_sent_events_parse_on_the_client(serve, http_connect) -> None:
    conn = http_connect(serve())
    conn.request("GET", "/events", headers={"Accept": "text/event-stream"})
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.getheader("Content-Type") == "text/event-stream"
    assert resp.getheader("Cache-Control") == "no-cache"
    assert resp.getheader("X-Stream") == "sse"
    assert EventParser().feed(resp.read()) == [   # the project's client reads them
        SseEvent("message", "hello", None),
        SseEvent("update", "line one\nline two\n", "7"),
        SseEvent("empty", "", "7"),
        SseEvent("message", "after\nCRLF", "8"),
    ]


# ---------------------------------------------------------------- HTTP/1.0 and HEAD

@pytest.mark.parametrize("connection", ["", "Connection: keep-alive\r\n"])
def test_http10_client_gets_the_body_unchunked_and_then_the_close(serve, raw_connect,
                                                                  connection: str) -> None:
    client = raw_connect(serve())
    client.send(f"GET /pieces HTTP/1.0\r\n{connection}\r\n".encode())
    status, headers = client.head()
    assert status == "HTTP/1.1 200 OK"
    assert headers["connection"] == "close"
    assert "transfer-encoding" not in headers and "content-length" not in headers
    assert client.read_to_eof() == b"".join(PIECES)


@pytest.mark.parametrize("version, framing", [("HTTP/1.1", "chunked"), ("HTTP/1.0", None)])
def test_head_gets_the_head_only_and_the_producer_never_runs(serve, raw_connect, producers,
                                                             version: str, framing: str | None) -> None:
    client = raw_connect(serve())
    client.send(f"HEAD /pieces {version}\r\nConnection: keep-alive\r\n\r\n".encode())
    status, headers = client.head()
    assert status == "HTTP/1.1 200 OK" and headers.get("transfer-encoding") == framing
    assert producers.produced == 0
    assert inspect.getgeneratorstate(producers.generators[0]) == inspect.GEN_CLOSED
    # Had a body been sent, it would be read here as the next response's status line.
    client.send(f"GET /next {version}\r\nConnection: keep-alive\r\n\r\n".encode())
    status, headers = client.head()
    assert json.loads(client.read_exact(int(headers["content-length"]))) == {"path": "/next"}


# ---------------------------------------------------------------- failures

@pytest.mark.parametrize("path", ["/failing", "/not-bytes"])
def test_producer_failing_midway_closes_the_connection_and_the_server_serves_on(
        serve, http_connect, producers, caplog, path: str) -> None:
    addr = serve()
    other = http_connect(addr)
    other.request("GET", "/before")
    assert other.getresponse().read()
    conn = http_connect(addr)
    with caplog.at_level(logging.ERROR, logger="axon.web.app"):
        conn.request("GET", path)
        resp = conn.getresponse()
        assert resp.status == 200
        with pytest.raises(http.client.IncompleteRead) as info:   # no last chunk: the client knows
            resp.read()
    assert info.value.partial == b"partial"
    assert any("failed midway" in r.getMessage() for r in caplog.records)
    assert producers.finished.is_set()
    other.request("GET", "/after")   # another connection, opened before, is still served
    assert json.loads(other.getresponse().read()) == {"path": "/after"}


def test_streamed_answer_that_cannot_be_sent_gets_500_before_any_byte(serve, raw_connect, producers) -> None:
    client = raw_connect(serve())
    client.send(b"GET /with-length HTTP/1.1\r\nHost: t\r\n\r\n")
    status, headers = client.head()
    assert status == "HTTP/1.1 500 Internal Server Error"
    assert json.loads(client.read_exact(int(headers["content-length"]))) == {"error": "internal error"}
    assert producers.produced == 0
    assert inspect.getgeneratorstate(producers.generators[0]) == inspect.GEN_CLOSED
    client.send(b"GET /next HTTP/1.1\r\nHost: t\r\n\r\n")
    assert client.head()[0] == "HTTP/1.1 200 OK"


# ---------------------------------------------------------------- clients that leave

def test_client_leaving_while_the_producer_waits_runs_its_finally(serve, http_connect, producers) -> None:
    conn = http_connect(serve())
    conn.request("GET", "/quiet")
    resp = conn.getresponse()
    assert resp.read1() == b"first"   # the producer now waits for a next piece that never comes
    conn.close()
    assert producers.finished.wait(TIMEOUT), "the producer's finally did not run"


def test_client_leaving_mid_stream_runs_the_producers_finally(serve, raw_connect, producers) -> None:
    client = raw_connect(serve())
    client.send(b"GET /endless HTTP/1.1\r\nHost: t\r\n\r\n")
    client.head()
    client.read_exact(256 * 1024)
    client.close()   # with unread data: a reset
    assert producers.finished.wait(TIMEOUT), "the producer's finally did not run"
    produced = producers.produced
    gevent.sleep(0.05)
    assert producers.produced == produced


# ---------------------------------------------------------------- backpressure

def test_stalled_reader_stops_the_producer_and_the_send_timeout_ends_the_stream(
        serve, raw_connect, producers) -> None:
    send_timeout = 1.0
    # A small receive window (set before connecting); without backpressure the generator,
    # which only hands out one shared 64 KiB object, would make ~10^5 pieces a second.
    client = raw_connect(serve(send_timeout=send_timeout), rcvbuf=64 * 1024)
    client.send(b"GET /endless HTTP/1.1\r\nHost: t\r\n\r\n")
    client.head()
    client.read_exact(256 * 1024)   # reads a little, then stops reading
    stalled = time.monotonic()

    produced = wait_until_steady(lambda: producers.produced, quiet=0.3, timeout=TIMEOUT,
                                 what="the producer to stop")
    # bounded by the socket buffers (client's window + server's send buffer) / 64 KiB
    assert produced < 200, produced
    assert not producers.finished.is_set() or time.monotonic() - stalled >= send_timeout, \
        "the stream ended before the send timeout"

    assert producers.finished.wait(send_timeout + TIMEOUT), "the send timeout did not end the stream"
    assert time.monotonic() - stalled >= send_timeout * 0.9
    assert producers.produced == produced
    rest = client.read_to_eof()   # what was still buffered, then the close: no last chunk
    assert rest and not rest.endswith(LAST_CHUNK)

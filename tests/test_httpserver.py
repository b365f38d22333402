"""The gevent HTTP server over real loopback sockets.

gevent is not monkey-patched in the test process, so the client uses gevent's own
sockets: the test's blocking reads and writes then yield to the hub, which runs the
server's connection greenlets in the same thread.  Every read has a deadline (the
socket timeout), so a server that fails to answer fails the test instead of hanging it.
"""
from __future__ import annotations

import io
import json
import wsgiref.util
from dataclasses import dataclass
from typing import Any, Callable, Iterator
from urllib.parse import unquote

import bottle
import gevent
import pytest

from axon.web.app import bind
from axon.web.replies import json_reply
from axon.web.server import ACCEPTS_PER_TURN, Handler, HttpServer, wsgi_handler
from axon.web.wire import CONTINUE, Request, Response
from rawhttp import Address, RawConnection, opened

MAX_BODY = 64 * 1024


# ---------------------------------------------------------------- client side

@dataclass
class Reply:
    status: int
    headers: dict[str, str]   # lower-case names
    body: bytes

    def json(self) -> Any:
        assert self.headers.get("content-type") == "application/json", self.headers
        return json.loads(self.body)


class Client(RawConnection):
    """Requests as bytes, whole responses read back and checked as they come."""

    def response(self, head_only: bool = False) -> Reply:
        """The next response; a HEAD answer (``head_only``) has no body whatever its length says."""
        status_line, *lines = self.read_until(b"\r\n\r\n")[:-4].decode("latin-1").split("\r\n")
        version, status, _ = status_line.split(" ", 2)
        assert version == "HTTP/1.1"
        headers: dict[str, str] = {}
        for line in lines:
            name, _, value = line.partition(": ")
            assert name.lower() not in headers, f"repeated header {name}"
            headers[name.lower()] = value
        length = 0 if head_only else int(headers.get("content-length", "0"))
        return Reply(int(status), headers, self.read_exact(length))

    def request(self, method: str, path: str, body: bytes = b"", headers: str = "") -> Reply:
        self.send(f"{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n{headers}\r\n"
                  .encode() + body)
        return self.response(head_only=method == "HEAD")


# ---------------------------------------------------------------- server side

def echo(req: Request) -> Response:
    """What the server handed the handler, as JSON."""
    return json_reply(200, {
        "method": req.method, "path": req.path, "query": req.query, "version": req.version,
        "body": req.body.decode("latin-1"), "keep_alive": req.keep_alive, "remote": req.remote,
        "headers": req.headers})


@pytest.fixture
def serve() -> Iterator[Callable[..., Address]]:
    """Start an HttpServer on 127.0.0.1 (an ephemeral port) in this thread's hub; stopped after."""
    servers: list[HttpServer] = []

    def start(handler: Handler = echo, max_body: int = MAX_BODY) -> Address:
        listener = bind("127.0.0.1:0")
        server = HttpServer(listener, handler, max_body)
        server.start()
        servers.append(server)
        return listener.getsockname()[:2]

    yield start
    for server in servers:
        server.stop(timeout=1)


@pytest.fixture
def connect() -> Iterator[Callable[[Address], Client]]:
    yield from opened(Client)


# ---------------------------------------------------------------- connections

def test_keep_alive_serves_several_requests_on_one_connection(serve, connect) -> None:
    client = connect(serve())
    for i in range(3):
        reply = client.request("PUT", f"/kv/k{i}?stale=1", body=b"v%d" % i)
        assert reply.status == 200
        got = reply.json()
        assert (got["method"], got["path"], got["query"], got["body"]) == ("PUT", f"/kv/k{i}", "stale=1", f"v{i}")
        assert got["keep_alive"] and got["remote"] == "127.0.0.1"
        assert "connection" not in reply.headers and "date" in reply.headers


def test_pipelined_requests_are_answered_in_order(serve, connect) -> None:
    client = connect(serve())
    client.send(b"GET /first HTTP/1.1\r\n\r\nPUT /second HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi"
                b"GET /third HTTP/1.1\r\n\r\n")
    answers = [client.response().json() for _ in range(3)]
    assert [(a["path"], a["body"]) for a in answers] == [("/first", ""), ("/second", "hi"), ("/third", "")]


def test_request_split_across_sends_is_answered_once_complete(serve, connect) -> None:
    client = connect(serve())
    raw = b"PUT /kv/a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
    for i in range(0, len(raw), 4):
        client.send(raw[i:i + 4])
        gevent.sleep(0.001)   # separate segments, so the server sees separate recvs
    assert client.response().json()["body"] == "hello"


def test_many_connections_are_served_concurrently(serve, connect) -> None:
    addr = serve()
    clients = [connect(addr) for _ in range(20)]
    for i, client in enumerate(clients):   # every connection has a request half sent ...
        client.send(b"GET /c%d HTTP/1.1\r\n" % i)
    for i, client in enumerate(reversed(clients)):   # ... and they complete in reverse order
        client.send(b"\r\n")
        assert client.response().json()["path"] == f"/c{len(clients) - 1 - i}"


def test_a_burst_of_connections_is_accepted_a_few_per_turn_and_all_are_served() -> None:
    """A storm of connections must not flood the hub's callback queue (which also wakes the
    Raft driver and waiting requests): at most ACCEPTS_PER_TURN are accepted per loop turn."""
    accepted_this_turn, most_in_a_turn = [0], [0]

    class Counting(HttpServer):
        def do_handle(self, sock, address) -> None:
            accepted_this_turn[0] += 1
            most_in_a_turn[0] = max(most_in_a_turn[0], accepted_this_turn[0])
            super().do_handle(sock, address)

    listener = bind("127.0.0.1:0")
    server = Counting(listener, echo, MAX_BODY)
    turn = gevent.get_hub().loop.prepare(ref=False)
    turn.start(lambda: accepted_this_turn.__setitem__(0, 0))
    burst = 30 * ACCEPTS_PER_TURN
    clients = [Client(listener.getsockname()[:2]) for _ in range(burst)]   # all wait in the backlog
    server.start()
    try:
        for i, client in enumerate(clients):
            client.send(b"GET /b%d HTTP/1.1\r\nHost: t\r\n\r\n" % i)
        assert [client.response().json()["path"] for client in clients] == [f"/b{i}" for i in range(burst)]
        assert 0 < most_in_a_turn[0] <= ACCEPTS_PER_TURN
    finally:
        turn.stop()
        for client in clients:
            client.sock.close()
        server.stop(timeout=1)


def test_http10_request_closes_after_the_answer(serve, connect) -> None:
    client = connect(serve())
    client.send(b"GET /old HTTP/1.0\r\n\r\n")
    reply = client.response()
    assert reply.json()["version"] == "HTTP/1.0"
    assert reply.headers["connection"] == "close"
    assert client.closed_by_server()


def test_http10_keep_alive_request_is_told_the_connection_stays_open(serve, connect) -> None:
    client = connect(serve())
    for _ in range(2):
        client.send(b"GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        reply = client.response()
        assert reply.status == 200
        assert reply.headers["connection"] == "keep-alive"


def test_connection_close_request_closes_after_the_answer(serve, connect) -> None:
    client = connect(serve())
    reply = client.request("GET", "/bye", headers="Connection: close\r\n")
    assert reply.status == 200 and reply.headers["connection"] == "close"
    assert client.closed_by_server()


def test_client_that_closes_mid_request_leaves_the_server_serving(serve, connect) -> None:
    addr = serve()
    quitter = connect(addr)
    quitter.send(b"PUT /kv/a HTTP/1.1\r\nContent-Length: 100\r\n\r\nonly part")
    quitter.close()
    assert connect(addr).request("GET", "/still-here").status == 200


# ---------------------------------------------------------------- request bodies

def test_expect_100_continue_gets_continue_before_the_body_is_sent(serve, connect) -> None:
    client = connect(serve())
    client.send(b"PUT /kv/a HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
    assert client.read_until(b"\r\n\r\n") == CONTINUE   # before any body byte left the client
    client.send(b"hello")
    reply = client.response()
    assert reply.status == 200 and reply.json()["body"] == "hello"


def test_expect_100_continue_with_the_body_already_sent_gets_just_the_answer(serve, connect) -> None:
    client = connect(serve())
    reply = client.request("PUT", "/kv/a", body=b"hello", headers="Expect: 100-continue\r\n")
    assert reply.status == 200 and reply.json()["body"] == "hello"


def test_chunked_request_body_reaches_the_handler(serve, connect) -> None:
    client = connect(serve())
    client.send(b"POST /chunks HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n")
    gevent.sleep(0.001)
    client.send(b"6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n")
    reply = client.response()
    assert reply.json()["body"] == "hello world"
    assert client.request("GET", "/after").json()["path"] == "/after"   # framing intact after it


def test_head_gets_headers_with_content_length_but_no_body(serve, connect) -> None:
    client = connect(serve())
    reply = client.request("HEAD", "/thing")
    assert reply.status == 200
    assert int(reply.headers["content-length"]) > 0 and reply.body == b""
    # Had the body been sent, it would be read here as the next response's status line.
    assert client.request("GET", "/next").json()["path"] == "/next"


# ---------------------------------------------------------------- requests refused

def test_malformed_request_gets_400_json_and_the_connection_closes(serve, connect) -> None:
    client = connect(serve())
    client.send(b"NONSENSE\r\n\r\n")
    reply = client.response()
    assert reply.status == 400
    assert "error" in reply.json()
    assert reply.headers["connection"] == "close"
    assert client.closed_by_server()


@pytest.mark.parametrize("raw, status", [
    (b"GET / HTTP/2.0\r\n\r\n", 505),
    (b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    (b"GET / HTTP/1.1\r\nX: " + b"a" * (70 * 1024), 431),
])
def test_unreadable_requests_get_their_status_as_json(serve, connect, raw: bytes, status: int) -> None:
    client = connect(serve())
    client.send(raw)
    reply = client.response()
    assert reply.status == status and reply.json()["error"]
    assert client.closed_by_server()


def test_error_after_good_pipelined_requests_answers_them_first(serve, connect) -> None:
    client = connect(serve())
    client.send(b"GET /ok HTTP/1.1\r\n\r\nGET / HTTP/9.9\r\n\r\n")
    assert client.response().status == 200
    assert client.response().status == 505
    assert client.closed_by_server()


def test_content_length_over_max_body_gets_413_after_the_whole_body_is_sent(serve, connect) -> None:
    client = connect(serve(max_body=1000))
    body = b"x" * (4 << 20)   # past any socket buffer: the server must drain it
    client.send(b"PUT /kv/big HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(body))
    client.send(body)
    reply = client.response()
    assert reply.status == 413 and "error" in reply.json()
    assert reply.headers["connection"] == "close"
    assert client.closed_by_server()


def test_chunked_body_over_max_body_gets_413(serve, connect) -> None:
    client = connect(serve(max_body=1000))
    chunk = b"y" * (4 << 20)   # past any socket buffer: the client is still sending when refused
    client.send(b"POST /big HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n" % len(chunk))
    client.send(chunk + b"\r\n0\r\n\r\n")
    reply = client.response()
    assert reply.status == 413 and "error" in reply.json()
    assert client.closed_by_server()


def test_expect_100_continue_over_max_body_gets_413_instead_of_continue(serve, connect) -> None:
    client = connect(serve(max_body=1000))
    client.send(b"PUT /kv/big HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n")
    assert client.response().status == 413   # the client need not send the body at all


# ---------------------------------------------------------------- handlers that fail

def failing(req: Request) -> Response:
    if req.path == "/boom":
        raise RuntimeError("handler bug")
    if req.path == "/bad-header":
        return Response(200, [("X-Injected", "a\r\nSet-Cookie: x=1")], b"")
    if req.path == "/not-latin1":
        return Response(200, [("X-Name", "\u2603")], b"")
    if req.path == "/close":
        return Response(200, [("Connection", "close")], b"bye")
    return echo(req)


@pytest.mark.parametrize("path", ["/boom", "/bad-header", "/not-latin1"])
def test_handler_failure_gets_500_json_and_the_connection_serves_on(serve, connect, path: str) -> None:
    client = connect(serve(failing))
    reply = client.request("GET", path)
    assert reply.status == 500 and reply.json() == {"error": "internal error"}
    assert "set-cookie" not in reply.headers
    assert client.request("GET", "/next").json()["path"] == "/next"


def test_handler_saying_connection_close_closes(serve, connect) -> None:
    client = connect(serve(failing))
    reply = client.request("GET", "/close")
    assert (reply.status, reply.body, reply.headers["connection"]) == (200, b"bye", "close")
    assert client.closed_by_server()


# ---------------------------------------------------------------- WSGI (bottle)

def tiny_app() -> bottle.Bottle:
    app = bottle.Bottle()

    @app.route("/item/<name>", method=["GET", "HEAD"])
    def item(name: str) -> str:
        bottle.response.content_type = "application/json"
        return json.dumps({"name": name, "q": bottle.request.query.getunicode("q"),
                           "forwarded": bottle.request.get_header("X-Axon-Forwarded")})

    @app.route("/echo", method="POST")
    def echo_body() -> str:
        bottle.response.content_type = "application/json"
        bottle.response.status = 201
        return json.dumps({"body": bottle.request.body.read().decode(),
                           "type": bottle.request.content_type})

    return app


def bottle_reference(app: bottle.Bottle, method: str, target: str, body: bytes = b"",
                     content_type: str = "") -> tuple[int, bytes]:
    """Status and body bottle gives for this request through the stdlib's WSGI environ."""
    path, _, query = target.partition("?")
    environ = {"REQUEST_METHOD": method, "PATH_INFO": unquote(path, encoding="latin-1"),
               "QUERY_STRING": query, "CONTENT_LENGTH": str(len(body)),
               "CONTENT_TYPE": content_type, "wsgi.input": io.BytesIO(body),
               "HTTP_HOST": "t"}   # as Client.request sends
    wsgiref.util.setup_testing_defaults(environ)
    started: list[str] = []
    chunks = app(environ, lambda status, headers, exc_info=None: started.append(status))
    return int(started[0].split(" ")[0]), b"".join(chunks)


@pytest.fixture
def bottle_server(serve) -> tuple[bottle.Bottle, Address]:
    app = tiny_app()
    return app, serve(wsgi_handler(app))


def test_wsgi_path_parameter_with_escapes_and_utf8_and_query(bottle_server, connect) -> None:
    app, addr = bottle_server
    target = "/item/%C3%A9t%C3%A9%20%2B%25?q=caf%C3%A9+au+lait&x=1"
    reply = connect(addr).request("GET", target)
    assert (reply.status, reply.body) == bottle_reference(app, "GET", target)
    assert reply.json() == {"name": "été +%", "q": "café au lait", "forwarded": None}


def test_wsgi_post_body(bottle_server, connect) -> None:
    app, addr = bottle_server
    body = json.dumps({"k": "v"}).encode()
    reply = connect(addr).request("POST", "/echo", body=body, headers="Content-Type: application/json\r\n")
    assert (reply.status, reply.body) == bottle_reference(app, "POST", "/echo", body, "application/json")
    assert reply.json() == {"body": '{"k": "v"}', "type": "application/json"}


def test_wsgi_chunked_post_body(bottle_server, connect) -> None:
    _, addr = bottle_server
    client = connect(addr)
    client.send(b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    assert client.response().json()["body"] == "abc"


@pytest.mark.parametrize("method, target", [("GET", "/nope"), ("DELETE", "/item/x"), ("GET", "/item/a/b")])
def test_wsgi_bottle_errors_are_passed_through(bottle_server, connect, method: str, target: str) -> None:
    app, addr = bottle_server
    reply = connect(addr).request(method, target)
    assert (reply.status, reply.body) == bottle_reference(app, method, target)
    assert reply.status in (404, 405)


def test_wsgi_head_gets_the_get_length_without_body(bottle_server, connect) -> None:
    app, addr = bottle_server
    client = connect(addr)
    reply = client.request("HEAD", "/item/x")
    _, get_body = bottle_reference(app, "GET", "/item/x")
    assert reply.status == 200 and reply.body == b""
    assert int(reply.headers["content-length"]) == len(get_body)
    assert client.request("GET", "/item/y").json()["name"] == "y"


def test_wsgi_header_with_underscore_cannot_pose_as_a_dashed_one(bottle_server, connect) -> None:
    # X_Axon_Forwarded and X-Axon-Forwarded would both become HTTP_X_AXON_FORWARDED; a proxy
    # that strips the dashed one must not be bypassed with the other (pywsgi drops them too).
    _, addr = bottle_server
    client = connect(addr)
    assert client.request("GET", "/item/x", headers="X_Axon_Forwarded: 1\r\n").json()["forwarded"] is None
    assert client.request("GET", "/item/x", headers="X-Axon-Forwarded: 2\r\n").json()["forwarded"] == "2"

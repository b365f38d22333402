"""The HTTP server edge: gevent connections speaking ``httpwire``, one handler call per request.

pywsgi parsed every request through ``email``'s header machinery and the WSGI environ;
that was over a third of a busy leader's CPU.  Here a connection's greenlet feeds the
pure parser and hands each ``Request`` to a handler returning a ``Response``; WSGI
applications (bottle) plug in through ``wsgi_handler``.

A Response with a ``stream`` takes a path of its own (``_stream``): its pieces are sent as
they are produced, each only once the previous one is in the socket's buffer, so a client
that stops reading stops the producer instead of growing the node's memory.
"""
from __future__ import annotations

import io
import json
import logging
import socket
import sys
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import unquote

import gevent
from gevent.server import StreamServer

from axon.web.wire import (CONTINUE, LAST_CHUNK, Framing, HttpError, Request, RequestParser, Response,
                           StreamHead, format_response, frame_chunk, stream_head)

log = logging.getLogger("axon.web.app")

Handler = Callable[[Request], Response]
RECV_SIZE = 64 * 1024
MAX_DISCARD = 64 << 20        # an oversized body is read and dropped up to this, then we close
SEND_TIMEOUT = 60.0           # seconds a streamed answer may wait for room in the socket's buffer


def json_response(status: int, body: Any, headers: Iterable[tuple[str, str]] = ()) -> Response:
    return Response(status, [("Content-Type", "application/json"), *headers], json.dumps(body).encode())


class HttpServer(StreamServer):
    """Serves ``handler`` on a bound listener; TCP_NODELAY, keep-alive, pipelining, streamed answers.

    ``send_timeout``: a streamed answer whose client takes no byte for that many seconds
    is ended (connection closed, stream closed), so a stalled reader cannot hold it forever.
    """

    def __init__(self, listener: socket.socket, handler: Handler, max_body: int,
                 send_timeout: float = SEND_TIMEOUT) -> None:
        super().__init__(listener, self._connection)
        self.handler = handler
        self.max_body = max_body
        self.send_timeout = send_timeout

    def _connection(self, sock: socket.socket, address: Any) -> None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass   # not TCP (tests may hand us a unix socket)
        parser = RequestParser(self.max_body)
        remote = address[0] if isinstance(address, tuple) else str(address)
        answered = False
        try:
            while True:
                try:
                    req = parser.next_request()
                except HttpError as exc:
                    self._refuse(sock, exc)
                    return
                if req is None:
                    if parser.expects_continue:
                        parser.continue_sent = True
                        sock.sendall(CONTINUE)
                    if answered:
                        _wait_readable(sock)
                        answered = False
                    data = sock.recv(RECV_SIZE)
                    if not data:
                        return
                    parser.feed(data)
                    continue
                req.remote = remote
                answer = self._answer(req)
                if type(answer) is tuple:
                    data, keep_alive = answer
                    _send(sock, data)
                else:   # a streamed body: a path of its own, off this hot one
                    keep_alive = self._stream(sock, req, answer)
                if not keep_alive:
                    return
                answered = True
        except OSError:
            return   # the client went away or idled out: nothing to answer

    def _answer(self, req: Request) -> tuple[bytes, bool] | Response:
        """The handler's response to ``req`` as bytes, and whether the connection stays open;
        or the Response itself when its body is streamed."""
        try:
            resp = self.handler(req)
            if resp.stream is not None:
                return resp
            keep_alive = req.keep_alive and not _says_close(resp)
            return format_response(resp.status, resp.headers, resp.body, keep_alive,
                                   req.method == "HEAD", req.version), keep_alive
        except Exception:   # a bug, raised or in an answer we cannot send: log it, answer JSON, keep serving
            log.exception("unhandled error in %s %s", req.method, req.path)
            return _internal_error(req)

    def _stream(self, sock: socket.socket, req: Request, resp: Response) -> bool:
        """Send ``resp`` with its streamed body; whether the connection stays open.  Closes the stream."""
        stream = resp.stream
        try:
            try:
                pieces = iter(stream)
                head = stream_head(resp.status, resp.headers, req.keep_alive and not _says_close(resp),
                                   req.method == "HEAD", req.version)
            except Exception:   # nothing is sent yet: a 500, as for any handler bug
                log.exception("unhandled error in %s %s", req.method, req.path)
                data, keep_alive = _internal_error(req)
                _send(sock, data)
                return keep_alive
            if head.framing is Framing.NONE:   # HEAD, or a status without content
                _send(sock, head.data)
                return head.keep_alive
            return self._pump(sock, req, head, pieces)
        finally:
            _close(stream)

    def _pump(self, sock: socket.socket, req: Request, head: StreamHead, pieces: Iterator[bytes]) -> bool:
        """Head, then each piece as the producer yields it and the socket takes it, then the end.

        The next piece is pulled only once the previous one is in the socket's buffer: when
        that is full, the send waits (and with it the producer) instead of a queue growing.
        Once the head is out, a failure can only close the connection (False).
        """
        timeout = sock.gettimeout()
        sock.settimeout(self.send_timeout)   # bounds each wait for room, see _send_progressing
        try:
            with _hangup_interrupts(sock):
                _send_progressing(sock, head.data)
                chunked = head.framing is Framing.CHUNKED
                while (piece := _next_piece(pieces, chunked)) is not None:
                    if piece:
                        _send_progressing(sock, piece)
                if chunked:
                    _send_progressing(sock, LAST_CHUNK)
            return head.keep_alive
        except _ProducerFailed as exc:
            log.error("streamed answer to %s %s failed midway; closing the connection",
                      req.method, req.path, exc_info=exc.__cause__)
        except _ClientGone:
            log.debug("%s left during the streamed answer to %s %s", req.remote, req.method, req.path)
        except TimeoutError:
            log.info("%s took nothing of the streamed answer to %s %s for %s s; closing the connection",
                     req.remote, req.method, req.path, self.send_timeout)
        except OSError:
            pass   # the client went away
        finally:
            sock.settimeout(timeout)
        return False

    def _refuse(self, sock: socket.socket, exc: HttpError) -> None:
        """Answer a request we cannot read, drop what the client still sends of it, close."""
        sock.sendall(format_response(exc.status, [("Content-Type", "application/json")],
                                     json.dumps({"error": exc.message}).encode(), keep_alive=False))
        left = exc.discard if exc.discard <= MAX_DISCARD else 0
        sock.settimeout(5.0)
        while left > 0:   # so the client reads our answer instead of a reset
            data = sock.recv(min(left, RECV_SIZE))
            if not data:
                break
            left -= len(data)


def _internal_error(req: Request) -> tuple[bytes, bool]:
    """A 500 JSON answer to ``req`` as bytes, and whether the connection stays open."""
    resp = json_response(500, {"error": "internal error"})
    return format_response(resp.status, resp.headers, resp.body, req.keep_alive, req.method == "HEAD",
                           req.version), req.keep_alive


def _send(sock: socket.socket, data: bytes) -> None:
    """sendall, minus gevent's per-call getsockopt and chunking for the usual small answer."""
    sent = sock.send(data)
    if sent < len(data):
        sock.sendall(memoryview(data)[sent:])


def _wait_readable(sock: socket.socket) -> None:
    """Park until the client sends again, instead of a recv that fails with EAGAIN first.

    After an answer the next request is not there yet; a plain recv would cost a syscall
    and an exception before gevent waits.  The socket's own read watcher is gevent's
    internal API, so fall back to a plain recv when it is missing.
    """
    wait = getattr(sock, "_wait", None)
    event = getattr(sock, "_read_event", None)
    if wait is not None and event is not None:
        wait(event)


# ---------------------------------------------------------------- streamed answers

_END = object()


class _ProducerFailed(Exception):
    """The streamed body's iterable raised (its exception is the ``__cause__``)."""


class _ClientGone(BaseException):
    """Thrown into a greenlet sending a streamed answer when its client closes the connection.

    A BaseException, like gevent's Timeout: a producer's ``except Exception`` around its
    wait for the next piece must not swallow it.
    """


def _next_piece(pieces: Iterator[bytes], chunked: bool) -> bytes | memoryview | None:
    """The producer's next piece ready to send (framed when ``chunked``); None at its end."""
    try:
        item = next(pieces, _END)
        if item is _END:
            return None
        return frame_chunk(item) if chunked else memoryview(item)   # not bytes: TypeError here
    except Exception as exc:
        raise _ProducerFailed from exc


def _send_progressing(sock: socket.socket, data: bytes | memoryview) -> None:
    """sendall whose timeout (the socket's) bounds each wait for room, not the whole call.

    gevent's sendall gives the whole call the timeout; a big piece over a slow link may
    take longer than that, which is fine while bytes keep leaving.
    """
    view = memoryview(data)
    while view:
        view = view[sock.send(view):]


@contextmanager
def _hangup_interrupts(sock: socket.socket) -> Iterator[None]:
    """While inside, the client closing the connection raises _ClientGone wherever this greenlet waits.

    A producer may wait long for its next piece (a watch on a quiet key); without this, a
    client gone meanwhile would only be noticed at the next send, and its subscription
    would live on until then.  (Go's server watches with a background read the same way.)
    Bytes from the client (its next request, pipelined) end the watch: they stay unread
    for the parser, and a close after them shows when a send fails.  A client that shuts
    down only its sending side counts as gone.
    """
    raw = getattr(sock, "_sock", None)   # gevent's non-blocking socket under the cooperative one
    if raw is None:
        yield
        return
    streamer = gevent.getcurrent()
    watcher = gevent.get_hub().loop.io(sock.fileno(), 1)

    def readable() -> None:   # runs in the hub, as gevent's Timeout does when it fires
        try:
            peeked = raw.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return   # woken for nothing
        except OSError:
            peeked = b""   # reset: gone too
        watcher.stop()
        if not peeked:
            streamer.throw(_ClientGone())

    watcher.start(readable)
    try:
        yield
    finally:
        watcher.stop()
        watcher.close()


def _close(stream: Iterable[bytes]) -> None:
    """Close a streamed body's iterable, if it can be: a generator's ``finally`` runs (unsubscribes)."""
    close = getattr(stream, "close", None)
    if close is None:
        return
    try:
        close()
    except Exception:
        log.exception("closing a streamed answer's iterable failed")


def _says_close(resp: Response) -> bool:
    return any(k.lower() == "connection" and v.lower() == "close" for k, v in resp.headers)


def wsgi_handler(app: Callable, server_name: str = "axon") -> Handler:
    """A WSGI application (bottle) as a Handler; answers are collected, not streamed."""
    def handle(req: Request) -> Response:
        started: list = []

        def start_response(status: str, headers: list, exc_info: Any = None) -> Callable:
            started[:] = [status, headers]
            return chunks.append

        chunks: list[bytes] = []
        result = app(_environ(req, server_name), start_response)
        try:
            chunks.extend(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        status, headers = started
        return Response(int(status.split(" ", 1)[0]), list(headers), b"".join(chunks))
    return handle


_NOT_IN_ENVIRON = frozenset(("content-type", "content-length", "transfer-encoding"))


def _environ(req: Request, server_name: str) -> dict:
    environ = {
        "REQUEST_METHOD": req.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote(req.path, encoding="latin-1"),   # PEP 3333: decoded, as latin-1
        "QUERY_STRING": req.query,
        "SERVER_NAME": server_name,
        "SERVER_PORT": "0",
        "SERVER_PROTOCOL": req.version,
        "REMOTE_ADDR": req.remote,
        "CONTENT_LENGTH": str(len(req.body)),
        "CONTENT_TYPE": req.headers.get("content-type", ""),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(req.body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for name, value in req.headers.items():
        # Transfer-Encoding is done with: the body is decoded and CONTENT_LENGTH is its length
        # (bottle would try to de-chunk it again).  A name with '_' would pose as the dashed
        # one (X_Forwarded vs X-Forwarded both become HTTP_X_FORWARDED): dropped, as pywsgi does.
        if name not in _NOT_IN_ENVIRON and "_" not in name:
            environ["HTTP_" + name.upper().replace("-", "_")] = value
    return environ

"""The HTTP server edge: gevent connections speaking ``httpwire``, one handler call per request.

pywsgi parsed every request through ``email``'s header machinery and the WSGI environ;
that was over a third of a busy leader's CPU.  Here a connection's greenlet feeds the
pure parser and hands each ``Request`` to a handler returning a ``Response``; WSGI
applications (bottle) plug in through ``wsgi_handler``.

A Response with a ``stream`` takes a path of its own (``_stream``): its pieces are sent as
they are produced, each only once the previous one is in the socket's buffer, so a client
that stops reading stops the producer instead of growing the node's memory.

What clients may hold is bounded (see HttpServer): connections, the time they take to
send a request, and the request body bytes in memory at once.

With an SSL context the listener speaks TLS: each accepted socket is wrapped in its
connection's greenlet and the handshake is bounded by the header timeout, so the accept
loop never waits on a client and a stalled handshake cannot hold a connection.
"""
from __future__ import annotations

import errno
import io
import json
import logging
import resource
import socket
import ssl
import sys
import weakref
from contextlib import contextmanager
from time import monotonic
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import unquote

import gevent
import gevent.ssl
from gevent.server import StreamServer

from axon import bulk
from axon.web.limits import ByteBudget, ConnectionCount, connection_cap
from axon.web.wire import (CONTINUE, JSON, LAST_CHUNK, UNBUDGETED_BODY, Framing, HttpError, Request, RequestParser,
                           Response, StreamHead, chunk_parts, format_response, stream_head)

log = logging.getLogger("axon.web.app")

Handler = Callable[[Request], Response]
RECV_SIZE = 64 * 1024
MAX_DISCARD = 64 << 20        # an oversized body is read and dropped up to this, then we close
SEND_TIMEOUT = 60.0           # seconds a streamed answer may wait for room in the socket's buffer
MAX_CONNECTIONS = 4096
IDLE_TIMEOUT = 60.0           # seconds a keep-alive connection may wait for its next request
HEADER_TIMEOUT = 10.0         # seconds a request head may take from its first byte to its last
BODY_TIMEOUT = 30.0           # seconds a request body may go without a byte
MAX_INFLIGHT_BYTES = 256 << 20
FD_RESERVE = 1024             # file descriptors kept for the rest of the process (WAL, LevelDB, peers)
REFUSAL_TIMEOUT = 5.0         # seconds an error answer (and the drain of what follows it) may take
ACCEPT_PAUSE = (0.05, 1.0)    # first and longest pause of accepts while out of file descriptors
SWEEP_EVERY = (0.01, 1.0)     # shortest and longest interval between checks of input deadlines
# Connections a sweep interrupts before the loop polls again: each may send a 408 and close,
# and a thousand timing out at once (slowloris) would otherwise hold the loop ~100 ms.
SWEEP_BATCH = 64
# New connections accepted per turn of the loop (gevent's default is 100).  Each one's greenlet
# starts through the hub's one queue of ready callbacks, the queue that also wakes the Raft
# driver, the WAL syncer, the applier and every request waiting for its answer: in a storm of
# connections 100 a turn kept ~1,800 starts queued ahead of those wake-ups, and a small write
# took 200-300 ms.  Ten keep it under ~60 while still accepting thousands a second (nginx
# accepts one per wake-up unless told otherwise).
ACCEPTS_PER_TURN = 10
WARN_EVERY = 60.0             # seconds between warnings of one kind (clients can trigger them at will)
_OUT_OF_RESOURCES = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))
_LIVE: weakref.WeakSet[HttpServer] = weakref.WeakSet()   # started servers, whose caps share the fd limit


class HttpServer(StreamServer):
    """Serves ``handler`` on a bound listener; TCP_NODELAY, keep-alive, pipelining, streamed answers.

    ``send_timeout``: a streamed answer whose client takes no byte for that many seconds
    is ended (connection closed, stream closed), so a stalled reader cannot hold it forever.

    Limits on what clients hold (each waits only for client input: a handler or a streamed
    answer may take as long as it takes):

    - ``max_connections``: past it a new connection gets a 503 (``Retry-After: 1``) if its
      socket takes it at once, and is closed; open connections are not touched.  At
      ``start`` the soft RLIMIT_NOFILE is raised to fit the cap plus ``fd_reserve``
      descriptors for the rest of the process; where the hard limit is too low the cap is
      lowered instead (one warning), so that the WAL and LevelDB never meet EMFILE.
      Should accept() meet EMFILE/ENFILE anyway, accepting pauses (50 ms doubling to 1 s).
    - ``idle_timeout``: a connection with no request begun for that long is closed, no answer.
    - ``header_timeout``: a request head not complete that long after its first byte
      (however it trickles) gets 408 and the close.
    - ``body_timeout``: a request body with no byte for that long gets 408 and the close.
    - ``max_inflight_bytes``: request body bytes held at once, by every connection (being
      received, or received and being handled).  A request whose Content-Length does not
      fit in what is left gets 503 with ``Retry-After: 1`` before its body is read, and
      the close; a chunked body is refused the same way at the chunk that does not fit.
      The first ``unbudgeted_body`` bytes of each body are not counted (at most that much a
      connection, so at most the connection cap times it in all): clients that hold big
      bodies back then cannot make small writes wait until their bodies time out.

    Input deadlines are checked by one timer per server (every quarter of the shortest
    timeout, at most every second), so a deadline fires up to that late.  A plain answer
    too big for the socket's buffer waits for room at most ``send_timeout`` each time.

    Fairness on the one event loop: a big body is read one full buffer per turn of the loop,
    a sweep interrupts at most SWEEP_BATCH connections per turn, and at most ACCEPTS_PER_TURN
    connections are accepted per turn; so timing-out, uploading or newly arriving
    connections cannot crowd out the requests of the others.
    """

    def __init__(self, listener: socket.socket, handler: Handler, max_body: int,
                 send_timeout: float = SEND_TIMEOUT, *, max_connections: int = MAX_CONNECTIONS,
                 idle_timeout: float = IDLE_TIMEOUT, header_timeout: float = HEADER_TIMEOUT,
                 body_timeout: float = BODY_TIMEOUT, max_inflight_bytes: int = MAX_INFLIGHT_BYTES,
                 fd_reserve: int = FD_RESERVE, ssl_context: ssl.SSLContext | None = None,
                 unbudgeted_body: int = UNBUDGETED_BODY) -> None:
        for name, seconds in [("send_timeout", send_timeout), ("idle_timeout", idle_timeout),
                              ("header_timeout", header_timeout), ("body_timeout", body_timeout)]:
            if not seconds > 0:
                raise ValueError(f"{name} must be a positive number of seconds, not {seconds!r}")
        super().__init__(listener, self._connection)
        self.max_accept = ACCEPTS_PER_TURN
        self.handler = handler
        self.max_body = max_body
        self.send_timeout = send_timeout
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.fd_reserve = fd_reserve
        self.ssl_context = ssl_context   # our own wrapping (_handshake), not StreamServer's
        self.connections = ConnectionCount(max_connections)   # its limit may shrink at start()
        self.inflight = ByteBudget(max_inflight_bytes)
        self.unbudgeted_body = unbudgeted_body
        self.turned_away = 0          # connections refused at the cap, ever
        self._cap_warning = _Every(WARN_EVERY)
        self._fd_warning = _Every(WARN_EVERY)
        self._accept_pause = 0.0      # seconds of the current pause of accepts; 0 when accepting
        self._resume_timer: Any = None
        self._waits: set[_InputWait] = set()   # one per open connection
        self._sweeper: Any = None
        self._catch_up: Any = None   # a zero timer: the rest of a sweep past SWEEP_BATCH

    # ------------------------------------------------------------ accepting

    def start(self) -> None:
        """Fit the connection cap to the file descriptor limit, start the deadline checks, accept."""
        if not self.started:
            self._fit_connection_cap()
            self._start_sweeping()
        super().start()

    def _fit_connection_cap(self) -> None:
        """Raise the soft fd limit for the cap (and other servers' caps) plus the reserve; else lower the cap."""
        claimed = sum(s.connections.limit for s in _LIVE if s is not self and s.started)
        nofile = raise_nofile_limit(claimed + self.max_connections + self.fd_reserve)
        cap = connection_cap(self.max_connections, nofile, self.fd_reserve, claimed)
        if cap < self.max_connections:
            log.warning("the open file limit is %d: serving at most %d connections on %s instead of %d "
                        "(raise the hard RLIMIT_NOFILE to %d for all of them)", nofile, cap, self.address,
                        self.max_connections, claimed + self.max_connections + self.fd_reserve)
        self.connections.limit = cap
        _LIVE.add(self)

    def do_read(self) -> tuple[socket.socket, Any] | None:
        """The next connection from accept(); None, with accepts paused, when out of file descriptors."""
        try:
            accepted = super().do_read()
        except OSError as exc:
            if exc.errno not in _OUT_OF_RESOURCES:
                raise
            self._pause_accepting(exc)
            return None
        self._accept_pause = 0.0
        return accepted

    def _pause_accepting(self, exc: OSError) -> None:
        """Stop accepting for a while: the pending connection keeps the listener readable,
        so retrying at once would spin on EMFILE at full CPU."""
        if self._fd_warning.due():
            log.warning("cannot accept connections on %s (%s): pausing accepts until descriptors "
                        "free up", self.address, exc)
        first, longest = ACCEPT_PAUSE
        self._accept_pause = min(longest, self._accept_pause * 2 or first)
        self.stop_accepting()
        self._resume_timer = self.loop.timer(self._accept_pause)
        self._resume_timer.start(self._resume_accepting)

    def _resume_accepting(self) -> None:
        if self.started:
            self.start_accepting()

    def stop_accepting(self) -> None:
        super().stop_accepting()
        if self._resume_timer is not None:
            self._resume_timer.stop()
            self._resume_timer.close()
            self._resume_timer = None

    def do_handle(self, sock: socket.socket, address: Any) -> None:
        """Serve a new connection in its own greenlet, or turn it away at once past the cap."""
        if not self.connections.try_open():
            self._turn_away(sock)
            return
        super().do_handle(sock, address)   # when the greenlet is done, do_close

    def do_close(self, sock: socket.socket, *args: Any) -> None:
        self.connections.close()
        sock.close()

    def _turn_away(self, sock: socket.socket) -> None:
        """A 503 if the fresh socket's buffer takes it without waiting, then the close.

        Over TLS just the close: an answer needs a handshake, which would make the accept
        loop wait on the very client it turns away.
        """
        self.turned_away += 1
        if self._cap_warning.due():
            log.warning("%d connections open on %s, the most allowed: turning new ones away "
                        "(%d so far)", self.connections.open, self.address, self.turned_away)
        if self.ssl_context is not None:
            sock.close()
            return
        try:
            sock.settimeout(0.0)
            sock.send(_busy_answer("too many connections; retry"))
        except OSError:
            pass
        finally:
            sock.close()

    @property
    def inflight_bytes(self) -> int:
        """Request body bytes held now (received or being received, not yet handled)."""
        return self.inflight.used

    # ------------------------------------------------------------ input deadlines

    def _start_sweeping(self) -> None:
        if self._sweeper is not None:
            return
        first, longest = SWEEP_EVERY
        every = max(first, min(longest, min(self.idle_timeout, self.header_timeout, self.body_timeout) / 4))
        # ref=False: the timer alone does not keep the hub running
        self._sweeper = self.loop.timer(every, every, ref=False)
        self._sweeper.start(self._sweep)
        self._catch_up = self.loop.timer(0.0, ref=False)

    def _sweep(self) -> None:
        """(In the hub.)  Interrupt every connection whose wait for client input is past its deadline.

        Only a greenlet parked in that wait has a deadline, so the interrupt never lands
        in a handler or a streamed answer.  The sweep ends with the server and its last connection.
        """
        now = monotonic()
        overdue = [w for w in self._waits if 0.0 < w.deadline <= now]
        for wait in overdue[:SWEEP_BATCH]:
            if 0.0 < wait.deadline <= now:   # an interrupt before this one may have run other code
                wait.deadline = 0.0
                wait.greenlet.throw(_InputTimeout())
        if len(overdue) > SWEEP_BATCH:
            # the rest on the loop's next turn, once it has polled for input (a zero timer)
            if not self._catch_up.active:
                self._catch_up.start(self._sweep)
            return
        if not self._waits and not self.started and self._sweeper is not None:
            for timer in (self._sweeper, self._catch_up):
                timer.stop()
                timer.close()
            self._sweeper = self._catch_up = None

    # ------------------------------------------------------------ connections

    def _connection(self, sock: socket.socket, address: Any) -> None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass   # not TCP (tests may hand us a unix socket)
        parser = RequestParser(self.max_body, self.inflight, self.unbudgeted_body)
        wait = _InputWait(gevent.getcurrent())
        self._waits.add(wait)
        remote = address[0] if isinstance(address, tuple) else str(address)
        try:
            if self.ssl_context is not None:
                sock = self._handshake(sock, wait, remote)
                if sock is None:
                    return
            self._serve(sock, parser, wait, remote)
        except OSError:
            return   # the client went away: nothing more to say (ssl.SSLError is one too)
        finally:
            self._waits.discard(wait)
            parser.release()   # a body cut short gives its bytes back too
            if sock is not None:
                sock.close()   # the TLS wrapper owns the descriptor once wrapped (do_close closes the rest)

    def _handshake(self, sock: socket.socket, wait: _InputWait, remote: str) -> socket.socket | None:
        """``sock`` wrapped in TLS once the handshake is done; None when it failed or took too long."""
        assert self.ssl_context is not None
        # gevent's SSLSocket with any context: a cooperative handshake even if ssl is not patched
        tls = gevent.ssl.SSLSocket(sock=sock, server_side=True, do_handshake_on_connect=False,
                                   _context=self.ssl_context)
        wait.deadline = monotonic() + self.header_timeout
        try:
            tls.do_handshake()
        except _InputTimeout:
            log.debug("TLS handshake from %s took too long; closing", remote)
            tls.close()
            return None
        except OSError as exc:   # ssl.SSLError: no or a bad client certificate, not TLS at all, ...
            log.debug("TLS handshake from %s failed: %s", remote, exc)
            tls.close()
            return None
        finally:
            wait.deadline = 0.0
        return tls

    def _serve(self, sock: socket.socket, parser: RequestParser, wait: _InputWait, remote: str) -> None:
        """Requests in, answers out, until either side closes or the client runs out of time.

        Each wait for client input sets ``wait.deadline`` for the sweep (a store, where a
        socket timeout would cost a gevent Timeout, ~4 us, per request).
        """
        head_deadline = 0.0   # by when the head being received must be complete (0: none begun)
        answered = False
        tls = self.ssl_context is not None
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
                if parser.receiving_body:
                    wait.deadline = monotonic() + self.body_timeout
                elif parser.buffered:
                    head_deadline = head_deadline or monotonic() + self.header_timeout
                    wait.deadline = head_deadline
                else:
                    wait.deadline = monotonic() + self.idle_timeout
                try:
                    if answered and not tls:   # TLS may hold decrypted bytes the socket no longer shows
                        _wait_readable(sock)
                        answered = False
                    data = sock.recv(RECV_SIZE)
                except _InputTimeout:
                    self._timed_out(sock, parser, remote)
                    return
                wait.deadline = 0.0
                if not data:
                    return
                parser.feed(data)
                if len(data) == RECV_SIZE:
                    # More is waiting: a big body would otherwise be read to its end (many
                    # MB at a time over hundreds of connections) before anyone else runs;
                    # each full read is one step of bulk work (axon/bulk.py).
                    bulk.pause()
                continue
            head_deadline = 0.0
            req.remote = remote
            answer = self._answer(req)
            if parser.reserved:
                parser.release()   # the handler is done with the body
            if type(answer) is tuple:
                data, keep_alive = answer
                _send(sock, data, self.send_timeout)
            else:   # a streamed body: a path of its own, off this hot one
                keep_alive = self._stream(sock, req, answer)
            if not keep_alive:
                return
            answered = True

    def _timed_out(self, sock: socket.socket, parser: RequestParser, remote: str) -> None:
        """The client sent nothing in time: between requests just close; mid-request answer 408 first."""
        if parser.idle:
            log.debug("closing the idle connection from %s", remote)
            return
        part = "body" if parser.receiving_body else "head"
        log.debug("%s stalled sending a request %s; closing", remote, part)
        self._refuse(sock, HttpError(408, f"the request {part} took too long"))

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
                _send(sock, data, self.send_timeout)
                return keep_alive
            if head.framing is Framing.NONE:   # HEAD, or a status without content
                _send(sock, head.data, self.send_timeout)
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
                while (parts := _next_piece(pieces, chunked)) is not None:
                    for part in parts:
                        _send_progressing(sock, part)
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
        headers = [JSON]
        if exc.retry_after is not None:
            headers.append(("Retry-After", str(exc.retry_after)))
        sock.settimeout(REFUSAL_TIMEOUT)
        sock.sendall(format_response(exc.status, headers, json.dumps({"error": exc.message}).encode(),
                                     keep_alive=False))
        left = exc.discard if exc.discard <= MAX_DISCARD else 0
        while left > 0:   # so the client reads our answer instead of a reset
            data = sock.recv(min(left, RECV_SIZE))
            if not data:
                break
            left -= len(data)


def raise_nofile_limit(needed: int) -> int:
    """Raise the soft RLIMIT_NOFILE to min(needed, hard) unless it is that high already;
    the soft limit then in force (sys.maxsize when unlimited).  Never lowers it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return sys.maxsize
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if target <= soft:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):   # macOS refuses more than OPEN_MAX whatever the hard limit says
        return soft
    return target


def _busy_answer(message: str) -> bytes:
    """A 503 telling the client to come back in a second; the connection closes after it."""
    return format_response(503, [JSON, ("Retry-After", "1")],
                           json.dumps({"error": message}).encode(), keep_alive=False)


_INTERNAL_ERROR = json.dumps({"error": "internal error"}).encode()


def _internal_error(req: Request) -> tuple[bytes, bool]:
    """A 500 JSON answer to ``req`` as bytes, and whether the connection stays open."""
    return format_response(500, [JSON], _INTERNAL_ERROR, req.keep_alive,
                           req.method == "HEAD", req.version), req.keep_alive


def _send(sock: socket.socket, data: bytes, timeout: float) -> None:
    """sendall, minus gevent's per-call getsockopt and chunking for the usual small answer.

    What the socket's buffer does not take at once is sent with ``timeout`` bounding each
    wait for room (a client that takes none of it for that long is gone: TimeoutError).
    """
    sent = sock.send(data)
    if sent < len(data):
        before = sock.gettimeout()
        sock.settimeout(timeout)
        try:
            _send_progressing(sock, memoryview(data)[sent:])
        finally:
            sock.settimeout(before)


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


class _Every:
    """Says yes at most once every ``seconds`` (for warnings a client could repeat at will)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.last = -seconds

    def due(self) -> bool:
        now = monotonic()
        if now - self.last < self.seconds:
            return False
        self.last = now
        return True


class _InputWait:
    """A connection's greenlet and when its current wait for client input runs out (0: not waiting)."""
    __slots__ = ("greenlet", "deadline")

    def __init__(self, greenlet: Any) -> None:
        self.greenlet = greenlet
        self.deadline = 0.0


class _InputTimeout(Exception):
    """Thrown by the sweep into a connection's greenlet whose wait for client input ran out."""


# ---------------------------------------------------------------- streamed answers

_END = object()


class _ProducerFailed(Exception):
    """The streamed body's iterable raised (its exception is the ``__cause__``)."""


class _ClientGone(BaseException):
    """Thrown into a greenlet sending a streamed answer when its client closes the connection.

    A BaseException, like gevent's Timeout: a producer's ``except Exception`` around its
    wait for the next piece must not swallow it.
    """


def _next_piece(pieces: Iterator[bytes], chunked: bool) -> tuple[bytes | memoryview, ...] | None:
    """The producer's next piece as parts ready to send (framed when ``chunked``); None at its end."""
    try:
        item = next(pieces, _END)
        if item is _END:
            return None
        return chunk_parts(item) if chunked else (memoryview(item),)   # not bytes: TypeError here
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

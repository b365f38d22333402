"""HTTP/1.1 requests in, responses out, as bytes: the server's wire format, with no I/O.

Like h11, the parser is a state machine fed whatever the socket gave; unlike h11 it does
only what a JSON API server needs (Content-Length and chunked bodies, keep-alive,
``Expect: 100-continue``, pipelining) and so costs a few microseconds a request.
Malformed input raises ``HttpError`` with the status to answer; the connection then closes.
Given a ``ByteBudget``, the parser takes each body's bytes from it before buffering them
(a Content-Length whole, a chunked body chunk by chunk) and refuses with 503 when it is spent.

Responses come out as bytes too: ``format_response`` for a body in hand, and for a body
streamed as it is produced, ``stream_head`` (which also says how the body is framed),
``chunk_parts`` per piece (``frame_chunk`` when one buffer is wanted) and ``LAST_CHUNK`` to end it.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from email.utils import formatdate
from enum import Enum
from http import HTTPStatus
from typing import Callable, Iterable

from axon.web.limits import ByteBudget

MAX_HEAD_BYTES = 64 * 1024
UNBUDGETED_BODY = 64 * 1024   # a server's default: the start of each body is outside the budget
MAX_HEADERS = 100
_HEX = frozenset("0123456789abcdefABCDEF")
_REQUEST_LINE = re.compile(r"([-!#$%&'*+.^_`|~0-9A-Za-z]+) ([^\x00-\x20\x7f]+) (HTTP/1\.[01])")
_OTHER_VERSION = re.compile(rb"HTTP/[0-9]\.[0-9]")
# RFC 9110 5.5: no CR, LF or NUL inside a field value (a bare one could end a line for a
# proxy or log reader that we did not see end).
_HEADER_BLOCK = re.compile(rb"(?:[-!#$%&'*+.^_`|~0-9A-Za-z]+:[^\r\n\x00]*\r\n)*")
_HEADER_FIELD = re.compile(r"([^:]+):[ \t]*(.*?)[ \t]*\r\n")
_AUTHORITY_END = re.compile(r"[/?]")
MAX_CHUNK_LINE = 1024         # a chunk size line, extensions included


class HttpError(Exception):
    """The request cannot be read; answer ``status`` with ``message`` and close the connection."""

    def __init__(self, status: int, message: str, discard: int = 0, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.discard = discard   # body bytes still on the wire that the client will send anyway
        self.retry_after = retry_after   # seconds, for a Retry-After header: the refusal is temporary


@dataclass(slots=True)
class Request:
    method: str
    path: str                 # as sent: still percent-encoded
    query: str                # after '?', without it; '' when absent
    version: str              # "HTTP/1.1" or "HTTP/1.0"
    headers: dict[str, str]   # lower-case names; repeated headers joined with ", "
    body: bytes
    keep_alive: bool
    remote: str = ""          # the client's address, filled in by the server
    principal: str = ""       # the token's name once auth has accepted it (for the audit log)
    route: str = ""           # the pattern of the route the router chose ("": none, the fallback's)


@dataclass(slots=True)
class Response:
    """A handler's answer: ``body`` in one piece, or, when ``stream`` is set, its items as they come.

    A streamed body's length is unknown, so its headers carry no Content-Length or
    Transfer-Encoding (the server frames it); ``body`` is then ignored.  The server closes
    ``stream`` (calls its ``close()`` when it has one) however the response ends.
    """
    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""
    stream: Iterable[bytes] | None = None


@dataclass(slots=True)
class _Head:
    method: str
    target: str
    version: str
    headers: dict[str, str]
    length: int | None        # Content-Length; None with a chunked body
    keep_alive: bool


class RequestParser:
    """Bytes from one connection in (``feed``), complete requests out (``next_request``).

    With a ``budget``, the bytes of the body being received are taken from it (``reserved``)
    and stay taken after ``next_request`` returns its request, until ``release``: the
    body is still in memory while the request is handled.
    """

    def __init__(self, max_body: int, budget: ByteBudget | None = None, unbudgeted: int = 0) -> None:
        self.max_body = max_body
        self.budget = budget
        self.unbudgeted = unbudgeted   # the first bytes of each body held outside the budget
        self.reserved = 0     # bytes taken from the budget and not yet released
        self._unbudgeted = 0  # bytes of the current body held outside the budget
        self._buf = bytearray()
        self._head: _Head | None = None
        # A Content-Length body that did not come whole with its head is kept in the pieces
        # it arrives in and joined once: grown in a bytearray, a body of a few MB was copied
        # many times over (each resize past glibc's mmap threshold maps, copies and unmaps it).
        self._body_parts: list[bytes] = []
        self._body_left = 0   # bytes of that body still to arrive
        self._chunks: _ChunkedBody | None = None
        self._scanned = 0     # bytes of _buf already searched for the head's end
        self.continue_sent = False

    def feed(self, data: bytes) -> None:
        left = self._body_left
        if left:
            if len(data) <= left:
                self._body_parts.append(data)
                self._body_left = left - len(data)
                return
            self._body_parts.append(data[:left])
            self._body_left = 0
            data = data[left:]   # the next pipelined request's first bytes
        self._buf += data

    @property
    def expects_continue(self) -> bool:
        """A parsed head asked for ``100 Continue`` and its body has not arrived yet."""
        head = self._head
        return (head is not None and not self.continue_sent
                and head.headers.get("expect", "").lower() == "100-continue"
                and head.version == "HTTP/1.1")   # RFC 9110 10.1.1: ignored from HTTP/1.0

    @property
    def idle(self) -> bool:
        """No partial request is buffered (a close now loses nothing)."""
        return self._head is None and not self._buf.strip(b"\r\n")

    @property
    def receiving_body(self) -> bool:
        """A head is parsed and its body is not complete yet."""
        return self._head is not None

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned in a request (after next_request: a partial head or body)."""
        return len(self._buf) + sum(map(len, self._body_parts))

    def release(self) -> None:
        """Give the body bytes taken so far back to the budget: the handler is done with the
        body, or the connection ended before it was complete."""
        if self.reserved and self.budget is not None:
            self.budget.give(self.reserved)
            self.reserved = 0
        self._unbudgeted = 0

    def _reserve(self, n: int) -> None:
        """Take ``n`` body bytes from the budget before they are buffered; 503 when it is spent.

        The first ``unbudgeted`` bytes of each body are not taken: a connection holds at most
        that many outside the budget (bounded by the connection cap), so clients that hold big
        bodies back cannot make every small write wait for them.
        """
        if self.budget is None:
            return
        free = min(n, self.unbudgeted - self._unbudgeted)
        self._unbudgeted += free
        n -= free
        if n and not self.budget.take(n):
            # discard 0: the body is not read; the client may retry once others' bodies are handled
            raise HttpError(503, "the server is receiving too many request bodies at once; retry",
                            retry_after=1)
        self.reserved += n

    def next_request(self) -> Request | None:
        """The next complete request, or None until more bytes arrive."""
        if self._head is None:
            self._head = self._read_head()
            if self._head is None:
                return None
        head = self._head
        if head.length is not None:
            if self._body_left:
                return None
            if self._body_parts:
                body = b"".join(self._body_parts)
                self._body_parts = []
            else:   # it came whole with the head (the usual small write)
                buf = self._buf
                if len(buf) == head.length:
                    body = bytes(buf)
                    buf.clear()
                else:
                    body = bytes(buf[:head.length])
                    del buf[:head.length]
        else:
            if self._chunks is None:
                self._chunks = _ChunkedBody(self.max_body, self._reserve)
            body = self._chunks.read(self._buf)
            if body is None:
                return None
            self._chunks = None
        self._head = None
        self.continue_sent = False
        path, _, query = head.target.partition("?")
        return Request(head.method, path, query, head.version, head.headers, body, head.keep_alive)

    def _read_head(self) -> _Head | None:
        buf = self._buf
        while buf[:2] == b"\r\n":   # RFC 9112 2.2: ignore empty lines before a request line
            del buf[:2]
            self._scanned = 0
        # Search the new bytes only (and the 3 before them, for a split CRLFCRLF): a head
        # trickling in a byte a recv would otherwise cost quadratic time.
        end = buf.find(b"\r\n\r\n", max(0, self._scanned - 3))
        if end < 0:
            if len(buf) > MAX_HEAD_BYTES:
                raise HttpError(431, f"request head is larger than {MAX_HEAD_BYTES} bytes")
            self._scanned = len(buf)
            return None
        self._scanned = 0
        if end > MAX_HEAD_BYTES:
            raise HttpError(431, f"request head is larger than {MAX_HEAD_BYTES} bytes")
        raw = bytes(buf[:end])
        del buf[:end + 4]
        try:
            head = parse_head(raw, self.max_body)
        except HttpError as exc:
            exc.discard -= min(exc.discard, len(buf))   # what arrived already is discarded with us
            raise
        if head.length:
            self._reserve(head.length)
            self._start_body(head.length)
        return head

    def _start_body(self, length: int) -> None:
        """A body still to arrive is kept in pieces from here on, starting with what came with the head."""
        buf = self._buf
        have = len(buf)
        if have >= length:
            return   # all here: next_request cuts it from the buffer
        if have:
            self._body_parts.append(bytes(buf))
            buf.clear()
        self._body_left = length - have


def parse_head(raw: bytes, max_body: int) -> _Head:
    """Request line and header fields (without the blank line) -> _Head, or HttpError."""
    line_end = raw.find(b"\r\n")
    if line_end < 0:
        line, block = raw, b""
    else:
        line, block = raw[:line_end], raw[line_end + 2:] + b"\r\n"
    method, target, version = _request_line(line)
    headers: dict[str, str] = {}
    if block:
        # One regex pass validates every field line (token name, colon, no bare CR/LF).
        if not _HEADER_BLOCK.fullmatch(block):
            raise HttpError(400, "malformed header field")
        fields = _HEADER_FIELD.findall(block.decode("latin-1"))
        if len(fields) > MAX_HEADERS:
            raise HttpError(431, f"more than {MAX_HEADERS} header fields")
        for name, value in fields:
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
    keep_alive = _keep_alive(version, headers.get("connection", ""))
    length = _body_length(headers, max_body)
    if length is None and version == "HTTP/1.0":
        keep_alive = False   # RFC 9112 6.1: chunked from HTTP/1.0 is suspect framing; close after
    return _Head(method, target, version, headers, length, keep_alive)


def _request_line(line: bytes) -> tuple[str, str, str]:
    m = _REQUEST_LINE.fullmatch(line.decode("latin-1"))
    if m is None:
        version = line.rpartition(b" ")[2]
        if _OTHER_VERSION.fullmatch(version) and version not in (b"HTTP/1.0", b"HTTP/1.1"):
            raise HttpError(505, f"{version.decode('latin-1')} is not supported; use HTTP/1.1")
        raise HttpError(400, "malformed request line")
    method, target, version = m.groups()
    if target[0] != "/":
        if not target[:8].lower().startswith(("http://", "https://")):
            raise HttpError(400, "malformed request target")
        # absolute form: keep path and query; the authority ends at the first '/' or '?'
        end = _AUTHORITY_END.search(target, target.index("//") + 2)
        target = "/" if end is None else target[end.start():]
        if target[0] == "?":
            target = "/" + target
    return method, target, version


def _keep_alive(version: str, connection: str) -> bool:
    if not connection:
        return version == "HTTP/1.1"
    tokens = {t.strip().lower() for t in connection.split(",")} if connection else set()
    if version == "HTTP/1.1":
        return "close" not in tokens
    return "keep-alive" in tokens


def _body_length(headers: dict[str, str], max_body: int) -> int | None:
    coding = headers.get("transfer-encoding")
    if coding is not None:
        if "content-length" in headers:   # RFC 9112 6.1: a smuggling attempt or a broken client
            raise HttpError(400, "Transfer-Encoding together with Content-Length")
        if coding.lower() != "chunked":
            # also "gzip, chunked": its body would reach the handler still gzipped
            raise HttpError(501, "unsupported Transfer-Encoding (only chunked)")
        return None
    raw = headers.get("content-length", "0")
    if not raw.isdigit() or not raw.isascii():
        raise HttpError(400, "malformed Content-Length")
    length = int(raw)
    if length > max_body:
        raise HttpError(413, f"request body is larger than {max_body} bytes", discard=length)
    return length


class _ChunkedBody:
    """Decodes a chunked body incrementally from the connection's buffer.

    ``reserve`` is called with each chunk's size before its data is buffered (it raises
    HttpError to refuse).
    """

    def __init__(self, max_body: int, reserve: Callable[[int], None]) -> None:
        self.max_body = max_body
        self.reserve = reserve
        self.parts: list[bytes] = []
        self.size = 0
        self.remaining: int | None = None   # bytes of the current chunk still to read (+2 for CRLF)
        self.in_trailers = False
        self.scanned = 0                    # bytes of trailers already searched for their end

    def read(self, buf: bytearray) -> bytes | None:
        while True:
            if self.in_trailers:
                return self._read_trailers(buf)
            if self.remaining is None:
                end = buf.find(b"\r\n", 0, MAX_CHUNK_LINE + 2)
                if end < 0:
                    if len(buf) > MAX_CHUNK_LINE:
                        raise HttpError(400, "malformed chunk size line")
                    return None
                size_text = bytes(buf[:end]).split(b";")[0].strip().decode("latin-1")
                del buf[:end + 2]
                if not size_text or not _HEX.issuperset(size_text) or len(size_text) > 15:
                    raise HttpError(400, "malformed chunk size")
                size = int(size_text, 16)
                if size == 0:
                    self.in_trailers = True
                    continue
                if self.size + size > self.max_body:
                    # discard: the rest of this chunk, which the client is sending anyway
                    raise HttpError(413, f"request body is larger than {self.max_body} bytes",
                                    discard=max(0, size + 2 - len(buf)))
                self.reserve(size)
                self.remaining = size
            if len(buf) < self.remaining + 2:
                return None
            if buf[self.remaining:self.remaining + 2] != b"\r\n":
                raise HttpError(400, "chunk is longer than its size")
            self.parts.append(bytes(buf[:self.remaining]))
            self.size += self.remaining
            del buf[:self.remaining + 2]
            self.remaining = None

    def _read_trailers(self, buf: bytearray) -> bytes | None:
        if buf[:2] == b"\r\n":
            del buf[:2]
            return b"".join(self.parts)
        end = buf.find(b"\r\n\r\n", max(0, self.scanned - 3))   # new bytes only, as for heads
        if end < 0:
            if len(buf) > MAX_HEAD_BYTES:
                raise HttpError(431, "chunked trailers are too large")
            self.scanned = len(buf)
            return None
        del buf[:end + 4]   # trailer fields are allowed and ignored
        return b"".join(self.parts)


# ---------------------------------------------------------------- responses

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
JSON = ("Content-Type", "application/json")   # the header of every JSON answer
_REASONS = {s.value: s.phrase for s in HTTPStatus}
_date_cache: tuple[int, str] = (0, "")


def http_date() -> str:
    """The Date header's value, formatted at most once a second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True))
    return _date_cache[1]


def format_response(status: int, headers: Iterable[tuple[str, str]], body: bytes,
                    keep_alive: bool, head_only: bool = False,
                    request_version: str = "HTTP/1.1") -> bytes:
    """Status line, headers and body in one buffer (one send, one packet for small answers).

    Adds Content-Length (unless given, or the status has no content: 1xx, 204, 304) and
    Date (unless given).  The Connection header follows ``keep_alive``, not ``headers``:
    ``close`` when not keeping alive, ``keep-alive`` to an HTTP/1.0 client when keeping
    alive (without it that client assumes we close).  ``head_only`` (a HEAD request)
    leaves the body out but keeps its length.  A header that cannot be sent (a line
    break, a character outside latin-1) raises ValueError.
    """
    # The hot path of every answer: kept in one piece (sharing helpers with stream_head
    # cost ~6 % of this function in calls and tuples).
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}"]
    has_length = has_date = False
    for name, value in headers:
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise ValueError(f"header {name!r} holds a line break")
        lower = name.lower()
        if lower == "content-length":
            has_length = True
        elif lower == "date":
            has_date = True
        elif lower == "connection":
            continue   # ours below says what the server does
        lines.append(f"{name}: {value}")
    bodiless = status < 200 or status == 204 or status == 304   # RFC 9110 6.4.1
    if not has_length and not bodiless:
        lines.append(f"Content-Length: {len(body)}")
    head = _finish_head(lines, has_date, keep_alive, request_version)
    return head if head_only or bodiless else head + body


# ---------------------------------------------------------------- streamed responses

class Framing(Enum):
    """How a streamed body travels after its head."""
    CHUNKED = "chunked"   # each piece through chunk_parts, then LAST_CHUNK (HTTP/1.1)
    CLOSE = "close"       # pieces as they are, the end of the body is the connection's close (HTTP/1.0)
    NONE = "none"         # no body at all: a HEAD request, or a status without content


@dataclass(slots=True, frozen=True)
class StreamHead:
    data: bytes           # status line and header fields, ready to send
    framing: Framing
    keep_alive: bool      # whether the connection stays open once the body has ended


LAST_CHUNK = b"0\r\n\r\n"   # ends a chunked body (no trailers)


def stream_head(status: int, headers: Iterable[tuple[str, str]], keep_alive: bool,
                head_only: bool = False, request_version: str = "HTTP/1.1") -> StreamHead:
    """The head of a response whose body is streamed, and how that body must be framed.

    An HTTP/1.1 client gets ``Transfer-Encoding: chunked``; an HTTP/1.0 client cannot read
    chunks, so its body ends with the connection (``keep_alive`` becomes False).  Headers as
    for ``format_response``; a Content-Length or Transfer-Encoding among them raises
    ValueError (the length is unknown and the framing is the server's).
    """
    lines, has_date = _stream_header_lines(status, headers)
    if status < 200 or status == 204 or status == 304:   # no content (RFC 9110 6.4.1)
        framing = Framing.NONE
    elif request_version == "HTTP/1.1":
        # also for HEAD: its head is the one GET would get (RFC 9110 9.3.2)
        lines.append("Transfer-Encoding: chunked")
        framing = Framing.NONE if head_only else Framing.CHUNKED
    elif head_only:
        framing = Framing.NONE
    else:
        framing = Framing.CLOSE
        keep_alive = False
    return StreamHead(_finish_head(lines, has_date, keep_alive, request_version), framing, keep_alive)


def _stream_header_lines(status: int, headers: Iterable[tuple[str, str]]) -> tuple[list[str], bool]:
    """Status line and the handler's header lines, checked as by format_response; whether Date was given."""
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}"]
    has_date = False
    for name, value in headers:
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise ValueError(f"header {name!r} holds a line break")
        lower = name.lower()
        if lower in ("content-length", "transfer-encoding"):
            raise ValueError(f"a streamed response cannot carry {name}")
        if lower == "connection":
            continue   # the server says what it does
        has_date = has_date or lower == "date"
        lines.append(f"{name}: {value}")
    return lines, has_date


def frame_chunk(data: bytes) -> bytes:
    """One piece of a chunked body: size line, data, CRLF; nothing for empty data (which would end it)."""
    if not data:
        return b""
    return b"%x\r\n%b\r\n" % (len(data), data)


COPY_CHUNK_BELOW = 64 * 1024   # a piece this small is copied behind its size line: one send, not three


def chunk_parts(data: bytes) -> tuple[bytes, ...]:
    """``frame_chunk(data)`` as parts to send in order: a big piece is not copied to frame it."""
    if len(data) < COPY_CHUNK_BELOW:
        return (frame_chunk(data),) if data else ()
    return (b"%x\r\n" % len(data), data, b"\r\n")


def _finish_head(lines: list[str], has_date: bool, keep_alive: bool, request_version: str) -> bytes:
    """The head's closing lines (Date, Connection) and its bytes."""
    if not has_date:
        lines.append(f"Date: {http_date()}")
    if not keep_alive:
        lines.append("Connection: close")
    elif request_version == "HTTP/1.0":
        lines.append("Connection: keep-alive")
    lines.append("\r\n")
    return "\r\n".join(lines).encode("latin-1")

"""The request parser against generated input: whatever bytes arrive, split however a socket
splits them, it returns requests or raises HttpError, and nothing else; requests built
from parts parse back to those parts, whatever the split.

Each example is small (a few requests of a few hundred bytes), so the whole file runs in
seconds; the drain loops are bounded, so a parser that stopped consuming fails instead of hanging.
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from axon.web.limits import ByteBudget
from axon.web.wire import HttpError, Request, RequestParser

MAX_BODY = 4096
BUDGET = 8192
STATUSES = {400, 413, 431, 501, 503, 505}   # what malformed or unaffordable input may be refused with
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

pytestmark = pytest.mark.timeout(120)   # a hang inside the parser fails the file instead of blocking CI


# ---------------------------------------------------------------- feeding

@dataclass
class Outcome:
    requests: list[Request]
    error: int | None   # the status of the HttpError that ended the connection


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` in pieces at the given offsets (taken modulo its length), as successive recvs would give it."""
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:])]


def feed(pieces: list[bytes], budget: ByteBudget | None = None) -> Outcome:
    """What a connection's parser makes of ``pieces``, as the server drives it (release after each request)."""
    parser = RequestParser(MAX_BODY, budget)
    total = sum(map(len, pieces))
    out: list[Request] = []
    try:
        for piece in pieces:
            parser.feed(piece)
            for _ in range(total + 2):   # every request consumes bytes: more than this is a loop
                req = parser.next_request()
                if req is None:
                    break
                parser.release()
                out.append(req)
            else:
                raise AssertionError("next_request kept returning requests")
    except HttpError as exc:
        assert exc.status in STATUSES, (exc.status, exc.message)
        assert exc.message and exc.discard >= 0
        return Outcome(out, exc.status)
    finally:
        parser.release()   # what the server does when the connection ends
        if budget is not None:
            assert budget.used == 0
    return Outcome(out, None)


def check_requests(reqs: list[Request]) -> None:
    for req in reqs:
        assert isinstance(req.body, bytes) and len(req.body) <= MAX_BODY
        assert req.path.startswith("/") and req.version in ("HTTP/1.0", "HTTP/1.1")
        assert all(name == name.lower() for name in req.headers)


# ---------------------------------------------------------------- arbitrary input

TOKENS = [b"GET ", b"PUT ", b"POST ", b"/", b"/kv/a", b"?x=1", b" HTTP/1.1", b" HTTP/1.0", b" HTTP/2.0",
          b"\r\n", b"\r", b"\n", b"\r\n\r\n", b":", b" ", b"\t", b"\x00", b"Host: h", b"Content-Length: ",
          b"Transfer-Encoding: chunked", b"Transfer-Encoding: gzip", b"Expect: 100-continue",
          b"Connection: close", b"0", b"5", b"ff", b"1000", b"99999999999999999", b";ext=1", b"hello",
          b"0\r\n\r\n", b"http://h", b"\xff", b"-"]

VALID = (b"PUT /kv/a?stale=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
         b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;e=1\r\nhello\r\n0\r\nT: 1\r\n\r\n"
         b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """Valid requests with a few bytes replaced, inserted or dropped: input that gets past the first line."""
    data = bytearray(VALID)
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["replace", "insert", "drop"]))
        if kind == "drop":
            del data[at:at + draw(st.integers(1, 8))]
        else:
            new = draw(st.binary(min_size=1, max_size=4) | st.sampled_from(TOKENS))
            data[at:at + (len(new) if kind == "replace" else 0)] = new
    return bytes(data)


wire_input = st.one_of(
    st.binary(max_size=600),
    st.lists(st.sampled_from(TOKENS), max_size=60).map(b"".join),
    mutated(),
)
cuts = st.lists(st.integers(0, 10_000), max_size=12)


@FUZZ
@given(wire_input, cuts, st.booleans())
def test_any_bytes_in_any_split_give_requests_or_http_error_and_the_same_ones(data: bytes, where: list[int],
                                                                              with_budget: bool) -> None:
    whole = feed([data], ByteBudget(BUDGET) if with_budget else None)
    pieces = feed(split(data, where), ByteBudget(BUDGET) if with_budget else None)
    check_requests(whole.requests)
    assert pieces == whole


@FUZZ
@given(wire_input)
def test_any_bytes_fed_one_at_a_time_give_the_same_as_at_once(data: bytes) -> None:
    assert feed([data[i:i + 1] for i in range(len(data))]) == feed([data])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=200), max_size=10), st.integers(0, 600))
def test_a_small_budget_refuses_with_503_and_never_leaks(bodies: list[bytes], limit: int) -> None:
    data = b"".join(b"PUT /b HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (len(b), b) for b in bodies)
    budget = ByteBudget(limit)
    outcome = feed([data], budget)   # feed() checks the budget is whole again afterwards
    assert [r.body for r in outcome.requests] == bodies[:len(outcome.requests)]
    if outcome.error is not None:
        assert outcome.error == 503 and len(bodies[len(outcome.requests)]) > limit


# ---------------------------------------------------------------- valid requests, built

TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
PCHAR = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@%"
FRAMING = {"content-length", "transfer-encoding", "connection"}   # set by the builder, not at random
VALUE_EDGE = "".join(chr(c) for c in range(0x21, 0x7f)) + "".join(chr(c) for c in range(0xa0, 0x100))

token = st.text(TCHAR, min_size=1, max_size=12)
field_name = token.filter(lambda name: name.lower() not in FRAMING)
# A value as the parser gives it back: no surrounding whitespace (that is trimmed), latin-1.
field_value = st.text(VALUE_EDGE + " \t", max_size=20).map(lambda value: value.strip(" \t"))


@dataclass
class Built:
    raw: bytes
    expected: Request


@st.composite
def built_request(draw: st.DrawFn) -> Built:
    method = draw(token)
    path = "/" + "/".join(draw(st.lists(st.text(PCHAR, max_size=8), max_size=4)))
    query = draw(st.one_of(st.just(None), st.text(PCHAR + "/?", max_size=12)))
    target = path if query is None else f"{path}?{query}"
    if draw(st.booleans()):
        target = draw(st.sampled_from(["http://h", "https://h:8080", "HTTP://h.example"])) + target
    version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.0"]))
    fields = draw(st.lists(st.tuples(field_name, field_value), max_size=6))
    connection = draw(st.sampled_from([None, "close", "keep-alive", "Keep-Alive, Upgrade", "upgrade"]))
    if connection is not None:
        fields.insert(draw(st.integers(0, len(fields))), ("Connection", connection))
    body = draw(st.binary(max_size=300))
    chunked = draw(st.booleans())
    if chunked:
        fields.append(("Transfer-Encoding", draw(st.sampled_from(["chunked", "Chunked"]))))
        encoded = chunk_encode(body, draw(st.lists(st.integers(1, 64), max_size=8)), draw(st.booleans()))
    else:
        if body or draw(st.booleans()):
            fields.append(("Content-Length", str(len(body))))
        encoded = body
    spacing = draw(st.sampled_from([" ", "", "  ", "\t"]))
    head = f"{method} {target} {version}\r\n" + "".join(f"{n}:{spacing}{v}\r\n" for n, v in fields) + "\r\n"

    headers: dict[str, str] = {}
    for name, value in fields:
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    tokens = {t.strip().lower() for t in (connection or "").split(",")}
    keep_alive = ("close" not in tokens) if version == "HTTP/1.1" else ("keep-alive" in tokens)
    if chunked and version == "HTTP/1.0":
        keep_alive = False
    expected = Request(method, path, query or "", version, headers, body, keep_alive)
    return Built(head.encode("latin-1") + encoded, expected)


def chunk_encode(body: bytes, sizes: list[int], trailers: bool) -> bytes:
    """``body`` as chunks of the given sizes (the last takes the rest), with extensions here and there."""
    out, at = [], 0
    for i, size in enumerate(sizes + [len(body)]):
        piece = body[at:at + size]
        at += len(piece)
        if piece:
            ext = ";x=y" if i % 3 == 1 else ""
            out.append(b"%x%s\r\n%s\r\n" % (len(piece), ext.encode(), piece))
    out.append(b"0\r\n" + (b"X-Trailer: t\r\n" if trailers else b"") + b"\r\n")
    return b"".join(out)


@FUZZ
@given(st.lists(built_request(), min_size=1, max_size=3), cuts)
def test_built_requests_parse_back_to_what_was_built_whatever_the_split(built: list[Built],
                                                                         where: list[int]) -> None:
    data = b"".join(b.raw for b in built)
    outcome = feed(split(data, where), ByteBudget(BUDGET))
    assert outcome.error is None
    assert outcome.requests == [b.expected for b in built]

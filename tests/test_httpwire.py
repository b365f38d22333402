"""The HTTP/1.1 wire format on its own: bytes in, requests out; responses out as bytes.

No sockets here: the parser is fed exactly the bytes a socket could deliver, split
anywhere, which is what the server relies on.
"""
from __future__ import annotations

import re
import time
from typing import Iterable

import pytest

from axon.web.limits import ByteBudget
from axon.web.sse import KEEPALIVE, format_comment, format_event, sse_response
from axon.web.wire import (CONTINUE, COPY_CHUNK_BELOW, LAST_CHUNK, MAX_HEAD_BYTES, MAX_HEADERS, Framing,
                           HttpError, Request, RequestParser, Response, chunk_parts, format_response, frame_chunk,
                           http_date, parse_head, stream_head)

MAX_BODY = 1 << 20

GET = b"GET /kv/a?stale=1 HTTP/1.1\r\nHost: x\r\n\r\n"
PUT = b"PUT /kv/a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
CHUNKED = (b"POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5;name=value\r\nhello\r\n"
           b"1\r\n \r\n"
           b"5\r\nworld\r\n"
           b"0\r\nX-Trailer: yes\r\nX-Other: 2\r\n\r\n")


# ---------------------------------------------------------------- helpers

def drain(parser: RequestParser) -> list[Request]:
    """Every complete request the parser holds now."""
    out = []
    while (req := parser.next_request()) is not None:
        out.append(req)
    return out


def parse_pieces(pieces: Iterable[bytes], max_body: int = MAX_BODY) -> list[Request]:
    """Feed the pieces one at a time (as successive recvs), collecting requests as they complete."""
    parser = RequestParser(max_body)
    out: list[Request] = []
    for piece in pieces:
        parser.feed(piece)
        out += drain(parser)
    return out


def parse_one(data: bytes, max_body: int = MAX_BODY) -> Request:
    reqs = parse_pieces([data], max_body)
    assert len(reqs) == 1, reqs
    return reqs[0]


def parse_error(data: bytes, max_body: int = MAX_BODY) -> HttpError:
    with pytest.raises(HttpError) as info:
        parse_pieces([data], max_body)
    return info.value


def head_of(response: bytes) -> tuple[str, dict[str, list[str]], bytes]:
    """Status line, headers (lower-case name -> every value) and body of a formatted response."""
    head, _, body = response.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, list[str]] = {}
    for line in lines:
        name, _, value = line.partition(": ")
        headers.setdefault(name.lower(), []).append(value)
    return status, headers, body


# ---------------------------------------------------------------- requests that parse

def test_get_request_fields() -> None:
    req = parse_one(GET)
    assert (req.method, req.path, req.query, req.version) == ("GET", "/kv/a", "stale=1", "HTTP/1.1")
    assert req.headers == {"host": "x"}
    assert req.body == b"" and req.keep_alive and req.remote == ""


@pytest.mark.parametrize("raw", [GET, PUT, CHUNKED], ids=["get", "content-length", "chunked"])
def test_split_at_every_byte_boundary_gives_the_same_request(raw: bytes) -> None:
    whole = parse_one(raw)
    for cut in range(1, len(raw)):
        assert parse_pieces([raw[:cut], raw[cut:]]) == [whole], f"split at {cut}"


@pytest.mark.parametrize("raw", [GET, PUT, CHUNKED], ids=["get", "content-length", "chunked"])
def test_fed_byte_by_byte_gives_the_same_request(raw: bytes) -> None:
    assert parse_pieces(raw[i:i + 1] for i in range(len(raw))) == [parse_one(raw)]


def test_request_is_not_returned_until_its_last_byte() -> None:
    parser = RequestParser(MAX_BODY)
    parser.feed(PUT[:-1])
    assert parser.next_request() is None
    parser.feed(PUT[-1:])
    assert parser.next_request().body == b"hello"
    assert parser.next_request() is None


def test_pipelined_requests_come_out_in_order() -> None:
    reqs = parse_pieces([GET + PUT + CHUNKED + GET])
    assert [(r.method, r.path, r.body) for r in reqs] == [
        ("GET", "/kv/a", b""), ("PUT", "/kv/a", b"hello"),
        ("POST", "/p", b"hello world"), ("GET", "/kv/a", b"")]


def test_pipelined_requests_split_across_feeds() -> None:
    stream = GET + PUT + CHUNKED
    reqs = parse_pieces(stream[i:i + 7] for i in range(0, len(stream), 7))
    assert [r.method for r in reqs] == ["GET", "PUT", "POST"]


def test_a_body_and_the_next_request_split_at_every_byte() -> None:
    """A Content-Length body is kept as the pieces it came in: every split of the stream into
    three feeds gives the same requests, and ``buffered`` counts body bytes received."""
    stream = PUT + GET + PUT
    for i in range(len(stream)):
        for j in range(i, len(stream)):
            parser = RequestParser(MAX_BODY)
            reqs = []
            for piece in (stream[:i], stream[i:j], stream[j:]):
                parser.feed(piece)
                while (req := parser.next_request()) is not None:
                    reqs.append(req)
            assert [(r.method, r.body) for r in reqs] == [("PUT", b"hello"), ("GET", b""), ("PUT", b"hello")]
            assert parser.buffered == 0 and parser.idle
    parser = RequestParser(MAX_BODY)
    parser.feed(PUT[:-2])
    assert parser.next_request() is None and parser.buffered == len(b"hel")


def test_parser_is_idle_only_between_requests() -> None:
    parser = RequestParser(MAX_BODY)
    assert parser.idle
    parser.feed(PUT[:20])
    assert parser.next_request() is None and not parser.idle
    parser.feed(PUT[20:] + b"\r\n")   # a stray CRLF after a request is not a request
    assert parser.next_request() is not None
    assert parser.idle


def test_content_length_body_exactly_its_length() -> None:
    req = parse_one(b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc")
    assert req.body == b"abc"


def test_content_length_zero_and_absent_mean_no_body() -> None:
    assert parse_one(b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n").body == b""
    assert parse_one(b"POST / HTTP/1.1\r\n\r\n").body == b""


def test_body_of_exactly_max_body_is_accepted() -> None:
    assert parse_one(b"PUT / HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcd", max_body=4).body == b"abcd"


def test_chunked_body_with_extensions_and_trailers() -> None:
    req = parse_one(CHUNKED)
    assert req.body == b"hello world"
    assert "x-trailer" not in req.headers   # trailers are read past, not merged


@pytest.mark.parametrize("body, expected", [
    (b"0\r\n\r\n", b""),
    (b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789"),
    (b"a ; ext=\"q\"\r\n0123456789\r\n0\r\n\r\n", b"0123456789"),   # lower-case hex, spaced extension
    (b"3\r\n\r\n\r\r\n0\r\n\r\n", b"\r\n\r"),                         # chunk data may hold CR/LF
])
def test_chunked_body_forms(body: bytes, expected: bytes) -> None:
    req = parse_one(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
    assert req.body == expected


def test_chunked_body_then_pipelined_request() -> None:
    reqs = parse_pieces([CHUNKED + GET])
    assert [r.body for r in reqs] == [b"hello world", b""]


def test_transfer_encoding_chunked_is_case_insensitive() -> None:
    req = parse_one(b"POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n")
    assert req.body == b"x"


def test_leading_crlfs_before_a_request_are_ignored() -> None:
    reqs = parse_pieces([b"\r\n\r\n" + GET + b"\r\n" + GET])
    assert [r.path for r in reqs] == ["/kv/a", "/kv/a"]


def test_leading_crlfs_split_across_feeds_are_ignored() -> None:
    assert parse_pieces([b"\r", b"\n\r", b"\n", GET]) == [parse_one(GET)]


@pytest.mark.parametrize("version, connection, keep_alive", [
    ("HTTP/1.1", None, True),
    ("HTTP/1.1", "close", False),
    ("HTTP/1.1", "Close", False),
    ("HTTP/1.1", "keep-alive", True),
    ("HTTP/1.1", "Upgrade, close", False),
    ("HTTP/1.0", None, False),
    ("HTTP/1.0", "keep-alive", True),
    ("HTTP/1.0", "Keep-Alive", True),
    ("HTTP/1.0", "close", False),
])
def test_keep_alive_rules(version: str, connection: str | None, keep_alive: bool) -> None:
    extra = f"Connection: {connection}\r\n" if connection else ""
    req = parse_one(f"GET / {version}\r\n{extra}\r\n".encode())
    assert req.version == version
    assert req.keep_alive is keep_alive


def test_http10_chunked_request_closes_the_connection_after() -> None:
    # RFC 9112 6.1: HTTP/1.0 has no chunked coding; such framing is suspect, so do not reuse it.
    req = parse_one(b"POST / HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"2\r\nhi\r\n0\r\n\r\n")
    assert req.body == b"hi" and not req.keep_alive


def test_repeated_headers_are_joined_with_comma() -> None:
    req = parse_one(b"GET / HTTP/1.1\r\nAccept: a\r\nX: 1\r\naccept: b\r\nACCEPT: c\r\n\r\n")
    assert req.headers == {"accept": "a, b, c", "x": "1"}


def test_header_names_are_lower_cased_and_values_trimmed() -> None:
    req = parse_one(b"GET / HTTP/1.1\r\nX-Axon-Forwarded: \t 1 \t\r\nIf-Match:\"e\"\r\nEmpty:\r\n\r\n")
    assert req.headers == {"x-axon-forwarded": "1", "if-match": '"e"', "empty": ""}


def test_header_values_keep_latin1_bytes() -> None:
    req = parse_one(b"GET / HTTP/1.1\r\nX-Name: caf\xe9\r\n\r\n")
    assert req.headers["x-name"] == "caf\xe9"


@pytest.mark.parametrize("target, path, query", [
    ("/", "/", ""),
    ("/kv/a%20b", "/kv/a%20b", ""),     # the path stays percent-encoded
    ("/a?b=1&c=2", "/a", "b=1&c=2"),
    ("/a?", "/a", ""),
    ("/a?x?y=/z", "/a", "x?y=/z"),      # only the first '?' splits
    ("http://example.com/a/b?x=1", "/a/b", "x=1"),
    ("https://example.com:8080/p", "/p", ""),
    ("http://example.com", "/", ""),
    ("http://example.com?x=1", "/", "x=1"),
    ("http://example.com?next=/a/b", "/", "next=/a/b"),
    ("HTTP://Example.com/p", "/p", ""),  # the scheme is case-insensitive
])
def test_request_target_forms(target: str, path: str, query: str) -> None:
    req = parse_one(f"GET {target} HTTP/1.1\r\n\r\n".encode())
    assert (req.path, req.query) == (path, query)


def test_non_ascii_bytes_in_path_pass_through_as_latin1() -> None:
    # Clients should percent-encode, but raw UTF-8 is common; the handler decodes it.
    req = parse_one(b"GET /kv/\xc3\xa9 HTTP/1.1\r\n\r\n")
    assert req.path.encode("latin-1").decode("utf8") == "/kv/\xe9"


def test_parse_head_directly() -> None:
    head = parse_head(b"PUT /x HTTP/1.0\r\nContent-Length: 7\r\nConnection: keep-alive", MAX_BODY)
    assert (head.method, head.target, head.version, head.length, head.keep_alive) == (
        "PUT", "/x", "HTTP/1.0", 7, True)
    assert parse_head(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked", MAX_BODY).length is None


def test_exactly_max_headers_are_accepted() -> None:
    fields = b"".join(b"X-%d: v\r\n" % i for i in range(MAX_HEADERS))
    assert len(parse_one(b"GET / HTTP/1.1\r\n" + fields + b"\r\n").headers) == MAX_HEADERS


# ---------------------------------------------------------------- requests that do not

@pytest.mark.parametrize("raw, status", [
    # request line
    (b"GET /\r\n\r\n", 400),
    (b"GET  / HTTP/1.1\r\n\r\n", 400),
    (b"GET / HTTP/1.1 extra\r\n\r\n", 400),
    (b" GET / HTTP/1.1\r\n\r\n", 400),
    (b"G(T / HTTP/1.1\r\n\r\n", 400),
    (b"GET\t/ HTTP/1.1\r\n\r\n", 400),
    (b"GET / HTTP/2.0\r\n\r\n", 505),
    (b"GET / HTTP/0.9\r\n\r\n", 505),
    (b"GET / HTTX/1.1\r\n\r\n", 400),
    (b"GET / http/1.1\r\n\r\n", 400),
    (b"GET / HTTP/1.10\r\n\r\n", 400),
    (b"GET / HTTP/a.b\r\n\r\n", 400),
    (b"GET / \r\n\r\n", 400),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),   # a TLS hello
    # request target
    (b"GET kv/a HTTP/1.1\r\n\r\n", 400),
    (b"GET * HTTP/1.1\r\n\r\n", 400),
    (b"GET ftp://h/a HTTP/1.1\r\n\r\n", 400),
    (b"GET /a\x00b HTTP/1.1\r\n\r\n", 400),
    (b"GET /a\x01b HTTP/1.1\r\n\r\n", 400),
    (b"GET /a\x7fb HTTP/1.1\r\n\r\n", 400),
    (b"GET /a\rb HTTP/1.1\r\n\r\n", 400),
    # header fields
    (b"GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n: x\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400),     # obs-fold
    (b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", 400),                  # bare CR in a value
    (b"GET / HTTP/1.1\r\nX: a\nContent-Length: 5\r\n\r\n", 400),  # bare LF hiding a header
    (b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n", 400),                # NUL in a value
    # body framing
    (b"POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: 1.5\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nContent-Length:\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: \xb2\r\n\r\n", 400),        # latin-1 superscript two: isdigit()
    (b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 501),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
])
def test_malformed_requests_are_refused_with_status(raw: bytes, status: int) -> None:
    err = parse_error(raw)
    assert err.status == status, err.message
    assert err.message and err.discard == 0


def test_content_length_over_max_body_is_413_with_remaining_bytes_to_discard() -> None:
    err = parse_error(b"PUT / HTTP/1.1\r\nContent-Length: 5000\r\n\r\n" + b"x" * 1200, max_body=1000)
    assert err.status == 413
    assert err.discard == 5000 - 1200   # what already arrived is dropped with the parser


def test_content_length_over_max_body_before_any_body_discards_all() -> None:
    err = parse_error(b"PUT / HTTP/1.1\r\nContent-Length: 1001\r\n\r\n", max_body=1000)
    assert (err.status, err.discard) == (413, 1001)


def test_content_length_over_max_body_with_all_body_buffered_discards_nothing() -> None:
    err = parse_error(b"PUT / HTTP/1.1\r\nContent-Length: 11\r\n\r\n" + b"x" * 20, max_body=10)
    assert (err.status, err.discard) == (413, 0)


def test_chunked_body_over_max_body_is_413() -> None:
    raw = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n01234567\r\n8\r\n0123"
    err = parse_error(raw, max_body=10)
    assert err.status == 413
    assert err.discard == 8 + 2 - 4   # the rest of the chunk that broke the limit, and its CRLF


def test_chunked_body_of_exactly_max_body_is_accepted() -> None:
    raw = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n01234\r\n5\r\n56789\r\n0\r\n\r\n"
    assert parse_one(raw, max_body=10).body == b"0123456789"


def test_head_over_64k_without_its_end_is_431() -> None:
    err = parse_error(b"GET / HTTP/1.1\r\nX: " + b"a" * MAX_HEAD_BYTES)
    assert err.status == 431


def test_head_over_64k_with_its_end_is_431() -> None:
    err = parse_error(b"GET / HTTP/1.1\r\nX: " + b"a" * MAX_HEAD_BYTES + b"\r\n\r\n")
    assert err.status == 431


def test_head_just_under_64k_is_accepted() -> None:
    prefix = b"GET / HTTP/1.1\r\nX: "
    raw = prefix + b"a" * (MAX_HEAD_BYTES - len(prefix)) + b"\r\n\r\n"
    assert len(parse_one(raw).headers["x"]) == MAX_HEAD_BYTES - len(prefix)


def test_too_many_headers_is_431() -> None:
    fields = b"".join(b"X-%d: v\r\n" % i for i in range(MAX_HEADERS + 1))
    assert parse_error(b"GET / HTTP/1.1\r\n" + fields + b"\r\n").status == 431


def test_head_trickling_in_byte_by_byte_costs_linear_time() -> None:
    # A client sending a big head a byte a recv must not cost a scan of the whole buffer
    # per byte: quadratic, over a second of the node's one CPU thread for a 60 KB head.
    # Linear is ~0.1 s; CPU time, not wall time, so a busy machine does not fail the test.
    head = b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"a" * 600) for i in range(99))
    parser = RequestParser(MAX_BODY)
    started = time.process_time()
    for i in range(len(head)):
        parser.feed(head[i:i + 1])
        assert parser.next_request() is None
    elapsed = time.process_time() - started
    parser.feed(b"\r\n")
    assert len(parser.next_request().headers) == 99
    assert elapsed < 0.6, f"{elapsed:.2f} s to feed {len(head)} bytes one at a time"


def test_trailers_trickling_in_byte_by_byte_cost_linear_time() -> None:
    parser = RequestParser(MAX_BODY)
    parser.feed(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n")
    trailers = b"".join(b"T-%d: %s\r\n" % (i, b"t" * 600) for i in range(99)) + b"\r\n"
    started = time.process_time()
    for i in range(len(trailers) - 1):
        parser.feed(trailers[i:i + 1])
        assert parser.next_request() is None
    elapsed = time.process_time() - started
    parser.feed(trailers[-1:])
    assert parser.next_request().body == b""
    assert elapsed < 0.6, f"{elapsed:.2f} s to feed {len(trailers)} bytes one at a time"


@pytest.mark.parametrize("size_line", [
    b"zz", b"-1", b"", b"0x5", b" ", b"1" * 16, b"5 5", b";ext",
], ids=repr)
def test_bad_chunk_size_is_400(size_line: bytes) -> None:
    raw = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + size_line + b"\r\nhello\r\n0\r\n\r\n"
    assert parse_error(raw).status == 400


def test_chunk_longer_than_its_size_is_400() -> None:
    raw = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n"
    assert parse_error(raw).status == 400


def test_endless_chunk_size_line_is_400() -> None:
    raw = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;" + b"e" * 2000
    assert parse_error(raw).status == 400


def test_endless_trailers_are_431() -> None:
    raw = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: " + b"t" * MAX_HEAD_BYTES
    assert parse_error(raw).status == 431


# ---------------------------------------------------------------- Expect: 100-continue

EXPECT_HEAD = b"PUT /kv/a HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"


def test_expects_continue_once_the_head_is_parsed_and_the_body_is_missing() -> None:
    parser = RequestParser(MAX_BODY)
    parser.feed(EXPECT_HEAD[:-2])
    assert parser.next_request() is None
    assert not parser.expects_continue   # the head is not complete yet
    parser.feed(EXPECT_HEAD[-2:])
    assert parser.next_request() is None
    assert parser.expects_continue


def test_expects_continue_stops_once_continue_is_sent() -> None:
    parser = RequestParser(MAX_BODY)
    parser.feed(EXPECT_HEAD + b"he")
    assert parser.next_request() is None and parser.expects_continue
    parser.continue_sent = True
    assert not parser.expects_continue
    parser.feed(b"llo")
    assert parser.next_request().body == b"hello"
    assert not parser.continue_sent   # reset for the next request on the connection


def test_expects_continue_for_each_pipelined_request() -> None:
    parser = RequestParser(MAX_BODY)
    parser.feed(EXPECT_HEAD + b"he")
    assert parser.next_request() is None
    parser.continue_sent = True
    parser.feed(b"llo" + EXPECT_HEAD)
    assert parser.next_request().body == b"hello"
    assert parser.next_request() is None
    assert parser.expects_continue   # the second request asks again


def test_body_sent_with_the_head_needs_no_continue() -> None:
    parser = RequestParser(MAX_BODY)
    parser.feed(EXPECT_HEAD + b"hello")
    assert parser.next_request().body == b"hello"
    assert not parser.expects_continue


def test_expect_header_value_is_case_insensitive() -> None:
    parser = RequestParser(MAX_BODY)
    parser.feed(EXPECT_HEAD.replace(b"100-continue", b"100-Continue"))
    assert parser.next_request() is None and parser.expects_continue


def test_http10_expect_continue_is_ignored() -> None:
    # RFC 9110 10.1.1: an HTTP/1.0 client does not know 100 Continue; it must not get one.
    parser = RequestParser(MAX_BODY)
    parser.feed(EXPECT_HEAD.replace(b"HTTP/1.1", b"HTTP/1.0"))
    assert parser.next_request() is None
    assert not parser.expects_continue


def test_request_without_expect_does_not_expect_continue() -> None:
    parser = RequestParser(MAX_BODY)
    parser.feed(PUT[:-2])
    assert parser.next_request() is None and not parser.expects_continue


def test_continue_is_a_bare_status_line() -> None:
    assert CONTINUE == b"HTTP/1.1 100 Continue\r\n\r\n"


# ---------------------------------------------------------------- responses

def test_format_response_adds_content_length_and_date() -> None:
    status, headers, body = head_of(format_response(200, [("Content-Type", "application/json")],
                                                    b'{"a": 1}', keep_alive=True))
    assert status == "HTTP/1.1 200 OK"
    assert headers["content-length"] == ["8"]
    assert headers["content-type"] == ["application/json"]
    assert headers["date"] == [http_date()]
    assert "connection" not in headers
    assert body == b'{"a": 1}'


def test_format_response_keeps_a_given_content_length() -> None:
    _, headers, _ = head_of(format_response(200, [("Content-Length", "3")], b"abc", keep_alive=True))
    assert headers["content-length"] == ["3"]


def test_format_response_keeps_a_given_date() -> None:
    given = "Mon, 02 Jan 2006 15:04:05 GMT"
    _, headers, _ = head_of(format_response(200, [("Date", given)], b"", keep_alive=True))
    assert headers["date"] == [given]


def test_format_response_says_close_when_not_keeping_alive() -> None:
    _, headers, _ = head_of(format_response(404, [], b"", keep_alive=False))
    assert headers["connection"] == ["close"]


def test_format_response_has_one_connection_header_when_the_handler_gave_one() -> None:
    _, headers, _ = head_of(format_response(200, [("Connection", "close")], b"", keep_alive=False))
    assert headers["connection"] == ["close"]


def test_format_response_tells_an_http10_client_the_connection_stays_open() -> None:
    # Without it an HTTP/1.0 client that asked for keep-alive assumes we close.
    _, headers, _ = head_of(format_response(200, [], b"", keep_alive=True, request_version="HTTP/1.0"))
    assert headers["connection"] == ["keep-alive"]
    _, headers, _ = head_of(format_response(200, [], b"", keep_alive=False, request_version="HTTP/1.0"))
    assert headers["connection"] == ["close"]


def test_format_response_head_only_drops_the_body_but_keeps_its_length() -> None:
    raw = format_response(200, [], b"0123456789", keep_alive=True, head_only=True)
    _, headers, body = head_of(raw)
    assert headers["content-length"] == ["10"] and body == b""
    assert raw.endswith(b"\r\n\r\n")


@pytest.mark.parametrize("status", [204, 304])
def test_format_response_bodiless_status_has_no_content_length_or_body(status: int) -> None:
    # RFC 9110 8.6 / 15.3.5: no Content-Length in a 204; neither status has content.
    _, headers, body = head_of(format_response(status, [], b"", keep_alive=True))
    assert "content-length" not in headers and body == b""


@pytest.mark.parametrize("status, line", [
    (200, "HTTP/1.1 200 OK"), (413, "HTTP/1.1 413 Request Entity Too Large"),
    (431, "HTTP/1.1 431 Request Header Fields Too Large"), (505, "HTTP/1.1 505 HTTP Version Not Supported"),
    (599, "HTTP/1.1 599 Unknown"),
])
def test_format_response_status_line(status: int, line: str) -> None:
    assert head_of(format_response(status, [], b"", keep_alive=True))[0] == line


@pytest.mark.parametrize("header", [
    ("X-Bad", "a\r\nSet-Cookie: x=1"), ("X-Bad", "a\nb"), ("X-Bad", "a\rb"), ("X\r\nY", "v"),
])
def test_format_response_refuses_header_line_breaks(header: tuple[str, str]) -> None:
    with pytest.raises(ValueError):
        format_response(200, [header], b"", keep_alive=True)


def test_format_response_refuses_non_latin1_header() -> None:
    with pytest.raises(ValueError):   # UnicodeEncodeError is a ValueError: the server answers 500
        format_response(200, [("X-Name", "\u2603")], b"", keep_alive=True)


def test_formatted_response_round_trips_through_head_parsing() -> None:
    raw = format_response(201, [("ETag", '"3"'), ("X-Empty", "")], b"{}", keep_alive=False)
    status, headers, body = head_of(raw)
    assert status == "HTTP/1.1 201 Created"
    assert headers["etag"] == ['"3"'] and headers["x-empty"] == [""]
    assert body == b"{}"


def test_http_date_is_an_imf_fixdate() -> None:
    assert re.fullmatch(r"[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT", http_date())


# ---------------------------------------------------------------- streamed responses

def test_response_is_still_built_positionally_and_streams_only_when_asked() -> None:
    resp = Response(200, [], b"x")
    assert (resp.status, resp.headers, resp.body, resp.stream) == (200, [], b"x", None)
    pieces = [b"a"]
    assert Response(200, [], stream=pieces).stream is pieces


def test_stream_head_for_http11_is_chunked_without_length() -> None:
    head = stream_head(200, [("Content-Type", "text/plain")], keep_alive=True)
    assert (head.framing, head.keep_alive) == (Framing.CHUNKED, True)
    status, headers, body = head_of(head.data)
    assert status == "HTTP/1.1 200 OK"
    assert headers["transfer-encoding"] == ["chunked"] and headers["content-type"] == ["text/plain"]
    assert headers["date"] == [http_date()]
    assert "content-length" not in headers and "connection" not in headers
    assert head.data.endswith(b"\r\n\r\n") and body == b""


def test_stream_head_for_http10_sends_as_is_and_closes_even_if_asked_to_keep_alive() -> None:
    head = stream_head(200, [], keep_alive=True, request_version="HTTP/1.0")
    assert (head.framing, head.keep_alive) == (Framing.CLOSE, False)
    _, headers, _ = head_of(head.data)
    assert headers["connection"] == ["close"]
    assert "transfer-encoding" not in headers and "content-length" not in headers


@pytest.mark.parametrize("version, framing", [("HTTP/1.1", ["chunked"]), ("HTTP/1.0", None)])
def test_stream_head_for_head_request_has_no_body_and_keeps_alive(version: str, framing) -> None:
    head = stream_head(200, [], keep_alive=True, head_only=True, request_version=version)
    assert (head.framing, head.keep_alive) == (Framing.NONE, True)
    assert head_of(head.data)[1].get("transfer-encoding") == framing


@pytest.mark.parametrize("status", [204, 304])
def test_stream_head_for_bodiless_status_has_no_body(status: int) -> None:
    head = stream_head(status, [], keep_alive=True)
    assert head.framing is Framing.NONE and head.keep_alive
    assert "transfer-encoding" not in head_of(head.data)[1]


def test_stream_head_follows_keep_alive_not_the_handlers_connection_header() -> None:
    head = stream_head(200, [("Connection", "keep-alive")], keep_alive=False)
    assert not head.keep_alive and head_of(head.data)[1]["connection"] == ["close"]


@pytest.mark.parametrize("header", [
    ("Content-Length", "5"), ("transfer-encoding", "chunked"), ("X-Bad", "a\r\nSet-Cookie: x=1"),
    ("X-Name", "\u2603"),
])
def test_stream_head_refuses_what_it_cannot_send(header: tuple[str, str]) -> None:
    with pytest.raises(ValueError):
        stream_head(200, [header], keep_alive=True)


@pytest.mark.parametrize("data, framed", [
    (b"hello", b"5\r\nhello\r\n"), (b"x" * 65536, b"10000\r\n" + b"x" * 65536 + b"\r\n"),
    (b"\r\n0\r\n\r\n", b"7\r\n\r\n0\r\n\r\n\r\n"), (bytearray(b"ab"), b"2\r\nab\r\n"),
])
def test_frame_chunk(data: bytes, framed: bytes) -> None:
    assert frame_chunk(data) == framed


def test_frame_chunk_of_nothing_is_nothing_not_the_last_chunk() -> None:
    assert frame_chunk(b"") == b"" and LAST_CHUNK == b"0\r\n\r\n"


@pytest.mark.parametrize("size", [0, 1, COPY_CHUNK_BELOW - 1, COPY_CHUNK_BELOW, 3 << 20])
def test_chunk_parts_are_the_framed_chunk_and_a_big_piece_is_not_copied(size: int) -> None:
    data = bytes(size)
    parts = chunk_parts(data)
    assert b"".join(parts) == frame_chunk(data)
    assert len(parts) == (0 if size == 0 else 1 if size < COPY_CHUNK_BELOW else 3)
    if len(parts) == 3:
        assert parts[1] is data


def test_chunked_framing_round_trips_through_the_chunked_decoder() -> None:
    pieces = [b"a", b"", b"\r\n", b"0\r\n\r\n", bytes(range(256)) * 300]
    body = b"".join(frame_chunk(p) for p in pieces) + LAST_CHUNK
    req = parse_one(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
    assert req.body == b"".join(pieces)


# ---------------------------------------------------------------- Server-Sent Events

def parse_event_stream(text: str) -> list[dict[str, str]]:
    """Events as an EventSource dispatches them (HTML Living Standard 9.2.6)."""
    events, data, event_type, last_id, retry = [], "", "", "", ""
    for line in re.split(r"\r\n|\r|\n", text):
        if not line:   # dispatch
            if data:
                events.append({"data": data[:-1], "event": event_type or "message", "id": last_id,
                               "retry": retry})
            data, event_type = "", ""
            continue
        if line.startswith(":"):
            continue
        name, colon, value = line.partition(":")
        value = value[1:] if colon and value.startswith(" ") else value
        if name == "data":
            data += value + "\n"
        elif name == "event":
            event_type = value
        elif name == "id" and "\0" not in value:
            last_id = value
        elif name == "retry" and value.isdigit():
            retry = value
    return events


def test_sse_event_lines() -> None:
    assert format_event("hi", event="put", event_id="42", retry_ms=1500) == \
        b"id: 42\nevent: put\nretry: 1500\ndata: hi\n\n"
    assert format_event("plain") == b"data: plain\n\n"


@pytest.mark.parametrize("data", ["one", "", "a\nb", "a\r\nb\rc", "trailing\n", "\n\n", " leading space",
                                  "colon: inside", "\u00e9t\u00e9 \u2603", ": like a comment"])
def test_sse_data_arrives_as_sent_with_line_breaks_as_newlines(data: str) -> None:
    [event] = parse_event_stream(format_event(data).decode("utf-8"))
    assert event["data"] == re.sub(r"\r\n|\r", "\n", data)


def test_sse_stream_of_events_and_comments_parses() -> None:
    stream = b"".join([format_comment("hello"), format_event("a", event_id="1"), KEEPALIVE,
                       format_comment("two\nlines"), format_event("b\nc", event="update"),
                       format_event("d", event_id="", retry_ms=0)]).decode("utf-8")
    assert parse_event_stream(stream) == [
        {"data": "a", "event": "message", "id": "1", "retry": ""},
        {"data": "b\nc", "event": "update", "id": "1", "retry": ""},   # the last id carries over
        {"data": "d", "event": "message", "id": "", "retry": "0"},      # an empty id resets it
    ]


def test_sse_comment_lines() -> None:
    assert format_comment("ping") == b": ping\n\n"
    assert format_comment("a\nb") == b": a\n: b\n\n"
    assert format_comment() == KEEPALIVE == b":\n\n"


@pytest.mark.parametrize("field", [{"event": "a\nb"}, {"event": "a\rb"}, {"event_id": "1\r\n2"},
                                   {"event_id": "1\n"}, {"event_id": "1\0"}, {"retry_ms": -1},
                                   {"retry_ms": "5"}, {"retry_ms": True}])
def test_sse_fields_that_would_break_the_stream_are_refused(field: dict) -> None:
    with pytest.raises(ValueError):
        format_event("data", **field)


def test_sse_response_streams_the_events_uncached() -> None:
    events = iter([format_event("x")])
    resp = sse_response(events, [("X-Extra", "1")])
    assert resp.status == 200 and resp.stream is events and resp.body == b""
    assert resp.headers == [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache"),
                            ("X-Extra", "1")]


# ---------------------------------------------------------------- in-flight body budget

def test_content_length_is_taken_from_the_budget_when_the_head_is_parsed_and_held_until_release() -> None:
    budget = ByteBudget(100)
    parser = RequestParser(MAX_BODY, budget)
    parser.feed(b"PUT /a HTTP/1.1\r\nContent-Length: 40\r\n\r\n" + b"x" * 10)
    assert parser.next_request() is None
    assert (budget.used, parser.reserved, parser.receiving_body, parser.buffered) == (40, 40, True, 10)
    parser.feed(b"x" * 30)
    assert parser.next_request().body == b"x" * 40
    assert budget.used == 40 and not parser.receiving_body   # the handler still holds the body
    parser.release()
    assert budget.used == 0 and parser.reserved == 0
    parser.release()   # twice is harmless
    assert budget.used == 0


def test_content_length_past_the_budget_is_503_retry_after_without_reading_the_body() -> None:
    budget = ByteBudget(100)
    budget.take(70)   # other connections' bodies
    parser = RequestParser(MAX_BODY, budget)
    parser.feed(b"PUT /a HTTP/1.1\r\nContent-Length: 31\r\n\r\n")
    with pytest.raises(HttpError) as info:
        parser.next_request()
    assert (info.value.status, info.value.retry_after, info.value.discard) == (503, 1, 0)
    assert budget.used == 70 and parser.reserved == 0


def test_small_bodies_pass_while_the_budget_has_room_and_bodiless_requests_take_nothing() -> None:
    budget = ByteBudget(100)
    budget.take(70)
    parser = RequestParser(MAX_BODY, budget)
    parser.feed(b"PUT /a HTTP/1.1\r\nContent-Length: 30\r\n\r\n" + b"x" * 30 + b"GET /b HTTP/1.1\r\n\r\n")
    assert parser.next_request().body == b"x" * 30
    assert budget.used == 100
    parser.release()
    assert parser.next_request().path == "/b" and parser.reserved == 0


def test_chunked_body_takes_from_the_budget_chunk_by_chunk_and_is_refused_at_the_chunk_that_does_not_fit() -> None:
    budget = ByteBudget(100)
    parser = RequestParser(MAX_BODY, budget)
    parser.feed(b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n32\r\n" + b"y" * 50 + b"\r\n")
    assert parser.next_request() is None and budget.used == 50
    parser.feed(b"33\r\n")   # 51 more: past the 100
    with pytest.raises(HttpError) as info:
        parser.next_request()
    assert (info.value.status, info.value.retry_after) == (503, 1)
    assert budget.used == 50   # what it holds until the connection gives it back
    parser.release()
    assert budget.used == 0


def test_chunked_body_within_the_budget_is_held_whole_until_release() -> None:
    budget = ByteBudget(100)
    parser = RequestParser(MAX_BODY, budget)
    parser.feed(CHUNKED)
    assert parser.next_request().body == b"hello world"
    assert budget.used == 11
    parser.release()
    assert budget.used == 0


def test_budget_refusal_comes_instead_of_100_continue() -> None:
    budget = ByteBudget(10)
    parser = RequestParser(MAX_BODY, budget)
    parser.feed(b"PUT /a HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 11\r\n\r\n")
    with pytest.raises(HttpError) as info:
        parser.next_request()
    assert info.value.status == 503 and not parser.expects_continue

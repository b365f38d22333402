"""axon.address: the one parser of "host:port" addresses, and the callers that wrap its error."""
from __future__ import annotations

import pytest

from axon.address import MAX_ADDR_LEN, AddressError, format_addr, is_loopback, parse_addr
from axon.config import ConfigError
from axon.config import parse_addr as config_parse_addr
from axon.gossip.address import parse_addr as gossip_parse_addr
from axon.gossip.errors import GossipError
from axon.raft.transport import TransportError, parse_address


@pytest.mark.parametrize("text, expected", [
    ("127.0.0.1:7000", ("127.0.0.1", 7000)),
    ("localhost:0", ("localhost", 0)),
    ("node-1.example.org:65535", ("node-1.example.org", 65535)),
    ("my_host:80", ("my_host", 80)),
    ("[::1]:7001", ("::1", 7001)),
    ("[2001:db8::1]:443", ("2001:db8::1", 443)),
    ("[fe80::1%eth0]:7002", ("fe80::1%eth0", 7002)),
    ("[::ffff:10.0.0.1]:9", ("::ffff:10.0.0.1", 9)),
    ("h:007", ("h", 7)),
])
def test_good_addresses(text: str, expected: tuple[str, int]) -> None:
    assert parse_addr(text) == expected


@pytest.mark.parametrize("text", [
    "", "nonsense", ":7000", "host:", "host:-1", "host:65536", "host:99999999", "host:+80", "host:8 0",
    "host:0x50", "host:1e3",
    "host:7\u00b2",            # superscript two: str.isdigit() says yes
    "host:\u0667\u0660",       # Arabic-Indic digits
    "host:\uff17\uff10",       # full-width digits
    "\u0661.0.0.1:80",         # a Unicode digit in the host
    " host:80", "host :80", "ho st:80", "host:80 ", "host:80\n", "host\n:80", "ho\x00st:80", "host\t:80",
    "h\x7fst:80", "h\u200bst:80", "h\u00e9st:80",
    "::1:80", "[::1]", "[::1:80", "::1]:80", "[]:80", "[host]:80", "[[::1]]:80", "[::1]x:80",
    "a" * 254 + ":80", "host:80:90",
])
def test_bad_addresses(text: str) -> None:
    with pytest.raises(AddressError):
        parse_addr(text)


@pytest.mark.parametrize("value", [None, 7000, b"host:80", ("host", 80)])
def test_non_strings_are_address_errors(value: object) -> None:
    with pytest.raises(AddressError):
        parse_addr(value)


def test_length_is_bounded_and_the_message_short() -> None:
    longest_host = "a" * 253
    assert parse_addr(f"{longest_host}:65535") == (longest_host, 65535)
    with pytest.raises(AddressError, match="longer than"):
        parse_addr("a" * (MAX_ADDR_LEN - 1) + ":80")
    with pytest.raises(AddressError) as info:
        parse_addr("x" * 100_000 + ":80")
    assert len(str(info.value)) < 200


def test_message_names_what_and_the_address() -> None:
    with pytest.raises(AddressError, match=r"invalid --join address 'nohost': expected HOST:PORT"):
        parse_addr("nohost", "--join address")
    with pytest.raises(AddressError, match="from 0 to 65535"):
        parse_addr("h:70000")


def test_format_round_trips() -> None:
    for text in ("127.0.0.1:7000", "[::1]:7001", "name:0"):
        assert format_addr(*parse_addr(text)) == text


def test_callers_wrap_the_error_in_their_own() -> None:
    bad = "host:7\u00b2"
    for parse, error in ((config_parse_addr, ConfigError), (gossip_parse_addr, GossipError),
                         (parse_address, TransportError)):
        with pytest.raises(error, match="invalid"):
            parse(bad)
        assert parse("[::1]:80") == ("::1", 80)
    assert issubclass(AddressError, ValueError)


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("LocalHost", True),
    ("0.0.0.0", False), ("10.0.0.1", False), ("::", False), ("[2001:db8::1]", False),
    ("example.com", False), ("localhost.example.com", False), ("", False),
])
def test_is_loopback_is_the_one_answer_for_binds_and_browser_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback

"""The one parser of network addresses: "host:port" or "[v6]:port" <-> (host, port).

Pure and strict: ASCII digits only in the port (``str.isdigit`` also accepts '²' or Arabic-Indic
digits), a port from 0 to 65535, no spaces or control characters, and a length bound, so a bad
address fails here with one clear message instead of deep inside a socket call.  Callers that
have their own error type wrap :class:`AddressError` in it.
"""
from __future__ import annotations

import ipaddress
import re

MAX_HOST_LEN = 253                      # the longest DNS name
MAX_ADDR_LEN = MAX_HOST_LEN + 8         # "[" host "]" ":" and five digits

_NAME = re.compile(r"[A-Za-z0-9._-]+")                       # a DNS name or an IPv4 address
_IPV6 = re.compile(r"[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*(%[A-Za-z0-9._-]+)?")   # optional zone: %eth0
_PORT = re.compile(r"[0-9]{1,5}")


class AddressError(ValueError):
    """Not a "host:port" address; the message names the address and what is wrong with it."""


def parse_addr(text: object, what: str = "address") -> tuple[str, int]:
    """"host:port" or "[v6]:port" -> (host, port), the brackets removed; raises AddressError."""
    if not isinstance(text, str):
        raise AddressError(f"invalid {what} {text!r}: expected HOST:PORT")
    if len(text) > MAX_ADDR_LEN:
        raise AddressError(f"invalid {what} {text[:40]!r}...: longer than {MAX_ADDR_LEN} characters")
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise AddressError(f"invalid {what} {text!r}: expected HOST:PORT")
    if not _PORT.fullmatch(port_text) or int(port_text) > 65535:
        raise AddressError(f"invalid {what} {text!r}: the port must be a number from 0 to 65535")
    return _host(host, text, what), int(port_text)


def _host(host: str, text: str, what: str) -> str:
    if host.startswith("[") and host.endswith("]"):
        inner = host[1:-1]
        if not _IPV6.fullmatch(inner):
            raise AddressError(f"invalid {what} {text!r}: expected an IPv6 address in the brackets")
        return inner
    if ":" in host:
        raise AddressError(f"invalid {what} {text!r}: put an IPv6 address in brackets, [::1]:PORT")
    if len(host) > MAX_HOST_LEN or not _NAME.fullmatch(host):
        raise AddressError(f"invalid {what} {text!r}: the host may hold only letters, digits, "
                           f"'.', '-' and '_'")
    return host


def format_addr(host: str, port: int) -> str:
    """(host, port) -> "host:port", with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 (bracketed or not) or "localhost"; any other name counts as reachable
    from elsewhere (it is not resolved)."""
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

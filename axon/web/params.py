"""The request's path parameters and query, decoded strictly, and its target as sent.

Percent-escapes decode to bytes, and the bytes must be UTF-8: a malformed escape or
invalid UTF-8 is InvalidInput, never a guess (decoding leniently once turned
``/kv/adm%ffin`` into the key ``admin``).
"""
from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from axon.api.errors import InvalidInput
from axon.web.wire import Request

_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def decode_component(raw: str, what: str) -> str:
    """A path segment or query part as sent (still percent-encoded) -> its text."""
    if raw.isascii() and "%" not in raw:
        return raw   # the usual case: nothing to decode
    if _BAD_ESCAPE.search(raw):
        raise InvalidInput(f"{what} holds a malformed percent-escape")
    try:
        # The server hands the request line over as latin-1: one character per byte sent.
        data = unquote_to_bytes(raw.encode("latin-1"))
        return data.decode("utf-8")
    except UnicodeError:
        raise InvalidInput(f"{what} is not valid UTF-8") from None


def query_params(query: str) -> dict[str, str]:
    """'a=1&b=x%20y' -> {"a": "1", "b": "x y"}; a repeated name keeps its last value."""
    params: dict[str, str] = {}
    if not query:
        return params
    for part in query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        name = decode_component(name.replace("+", " "), "a query parameter name")
        params[name] = decode_component(value.replace("+", " "), f"query parameter {name!r}")
    return params


def target(req: Request) -> str:
    """The request target as the client sent it: path and query, still encoded."""
    return req.path + "?" + req.query if req.query else req.path

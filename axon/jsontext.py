"""JSON text in and out on the request path: what ``json.dumps`` and ``json.loads`` give, for
less per call.

``json.dumps`` builds a new C encoder for every call and ``json.loads`` runs two whitespace
regexes around the C scanner; together that is about 2 us of a ~100 us write.  Here one
encoder is built once, and a document is scanned as it is, falling back to ``json.loads``
only when it starts with whitespace or does not parse (so its errors stay the standard ones).
"""
from __future__ import annotations

import json
from json import encoder as _stdlib_encoder
from typing import Any

_WHITESPACE = " \t\n\r"   # RFC 8259's insignificant whitespace, as json's own regex has it
_DECODER = json.JSONDecoder()


def _make_dumps() -> Any:
    make = _stdlib_encoder.c_make_encoder
    if make is None:   # an interpreter without the C speedups
        return json.dumps
    # json.dumps's defaults (ensure_ascii, allow_nan, ", " and ": "), minus the circular-reference
    # check: its marks are left behind when an encode fails, so a shared encoder could not keep
    # them; what is encoded here is plain data built per reply
    encode = make(None, json.JSONEncoder().default, _stdlib_encoder.encode_basestring_ascii,
                  None, ": ", ", ", False, False, True)

    def dumps(obj: Any) -> str:
        """``json.dumps(obj)``: the same text."""
        if type(obj) is str:   # the C encoder takes containers and scalars other than str
            return _stdlib_encoder.encode_basestring_ascii(obj)
        return "".join(encode(obj, 0))
    return dumps


dumps = _make_dumps()

# what ``dumps`` escapes in an ASCII string: control characters, DEL, the quote and the backslash
_ESCAPED_ASCII = bytes(range(0x20)) + b'\x7f"\\'


def plain_ascii(text: str) -> bytes | None:
    """``text`` as ASCII bytes when ``dumps(text)`` is exactly those bytes between quotes, else None.

    Lets a long value be sent as it is instead of being escaped (~2 ms/MiB) and copied
    again; the check costs a quarter of the escape.
    """
    if not text.isascii():   # a flag of the str, not a scan
        return None
    raw = text.encode("ascii")
    return raw if len(raw.translate(None, _ESCAPED_ASCII)) == len(raw) else None


LONG_STRING = 64 << 10   # a str this long in a dict is looked at for the fast path


def dumps_bytes(obj: Any) -> bytes:
    """``dumps(obj).encode()``: the same bytes; for a dict holding a long value (a 1 MiB put
    echoed back) about 2x less work, its plain ASCII strings joined in as they are."""
    if type(obj) is dict and _holds_long_string(obj):
        return b"".join(dict_parts(obj))
    return dumps(obj).encode()


def dict_parts(obj: dict) -> list[bytes]:
    """``dumps(obj).encode()`` as parts in order; a long plain ASCII value is a part of its own
    (else, the usual case, there is one part)."""
    if not _holds_long_string(obj) or any(type(key) is not str for key in obj):
        return [dumps(obj).encode()]   # (json's own conversions of other keys: not worth copying)
    parts = [b"{"]
    for n, (key, value) in enumerate(obj.items()):
        raw = plain_ascii(value) if type(value) is str and len(value) >= LONG_STRING else None
        lead = ("" if n == 0 else ", ") + dumps(key) + ": "
        if raw is None:
            parts.append((lead + dumps(value)).encode())
        else:
            parts += [(lead + '"').encode(), raw, b'"']
    parts.append(b"}")
    return parts


def _holds_long_string(obj: dict) -> bool:
    for value in obj.values():   # a plain loop, no generator: this runs for every answer
        if type(value) is str and len(value) >= LONG_STRING:
            return True
    return False


def loads(text: str) -> Any:
    """``json.loads(text)`` for a str: the same value, or the same JSONDecodeError/RecursionError."""
    try:
        value, end = _DECODER.raw_decode(text)
    except json.JSONDecodeError:
        return json.loads(text)   # leading whitespace, or not JSON: json.loads decides and says why
    if end != len(text):
        rest = text[end:].lstrip(_WHITESPACE)
        if rest:
            raise json.JSONDecodeError("Extra data", text, len(text) - len(rest))
    return value

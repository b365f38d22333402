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

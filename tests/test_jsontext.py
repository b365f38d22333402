"""axon.jsontext gives exactly what json.dumps / json.loads give, errors included."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings, strategies as st

from axon import jsontext

SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)


def outcome(fn, arg):
    """What a call gives: its value, or the kind, message and position of its error."""
    try:
        return ("value", fn(arg))
    except json.JSONDecodeError as exc:
        return ("JSONDecodeError", exc.msg, exc.pos)
    except (TypeError, ValueError, RecursionError) as exc:
        return (type(exc).__name__, str(exc))


@settings(max_examples=300, deadline=None)
@given(VALUES)
def test_dumps_is_json_dumps(value):
    assert jsontext.dumps(value) == json.dumps(value)


@settings(max_examples=500, deadline=None)
@given(st.text() | st.text(st.characters(max_codepoint=0x7f)) | st.text("ab ~{}\\\"\x7f\x1f"))
def test_plain_ascii_is_the_json_string_between_its_quotes(text):
    raw = jsontext.plain_ascii(text)
    escaped = json.dumps(text)
    assert (raw is not None) == (escaped == f'"{text}"')
    if raw is not None:
        assert b'"' + raw + b'"' == escaped.encode()


# strings short and long (past LONG_STRING, where dumps_bytes looks for plain ASCII)
STRINGS = st.builds(lambda piece, times: piece * times, st.text("ab ~\\\"\x7f\x1f\u00e9", min_size=1, max_size=3),
                    st.sampled_from([1, jsontext.LONG_STRING // 3, jsontext.LONG_STRING, jsontext.LONG_STRING + 1]))
REPLIES = st.dictionaries(st.text(max_size=6), STRINGS | SCALARS | st.lists(STRINGS, max_size=2), max_size=4)


@settings(max_examples=200, deadline=None)
@given(REPLIES | VALUES | st.dictionaries(st.integers(), STRINGS, max_size=2))
def test_dumps_bytes_and_dict_parts_are_json_dumps(value):
    expected = json.dumps(value).encode()
    assert jsontext.dumps_bytes(value) == expected
    if isinstance(value, dict):
        assert b"".join(jsontext.dict_parts(value)) == expected


@settings(max_examples=300, deadline=None)
@given(VALUES, st.sampled_from(["", " ", "\n\t\r ", " x", "\x0c", "}", " 1"]),
       st.sampled_from(["", " ", "\r\n"]))
def test_loads_is_json_loads(value, tail, head):
    text = head + json.dumps(value) + tail
    assert repr(outcome(jsontext.loads, text)) == repr(outcome(json.loads, text))


@pytest.mark.parametrize("text", ["", "  ", "nul", "[1,2", '{"a":1} x', "1 2", '"\\ud800"', "NaN",
                                  "\ufeff{}", "[" * 100_000, '{"a": 1}\t\r\n x'])
def test_loads_fails_as_json_loads_does(text):
    assert repr(outcome(jsontext.loads, text)) == repr(outcome(json.loads, text))


@pytest.mark.parametrize("value", [{"x": object()}, {(1, 2): 3}, b"bytes", {1: "a", None: 2, 2.5: 3, True: 4}])
def test_dumps_refuses_and_converts_as_json_dumps_does(value):
    assert outcome(jsontext.dumps, value) == outcome(json.dumps, value)


def test_a_failed_dumps_leaves_the_shared_encoder_usable():
    shared = [1, 2]
    with pytest.raises(TypeError):
        jsontext.dumps({"a": shared, "b": object()})
    assert jsontext.dumps({"a": shared}) == '{"a": [1, 2]}'

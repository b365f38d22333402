"""Server-Sent Events (``text/event-stream``) as bytes, and the streamed Response carrying them.

Pure, like ``wire``: a producer (a generator) yields ``format_event(...)`` and, while it
has nothing to say, ``KEEPALIVE`` now and then (a proxy would otherwise time the idle
stream out); ``sse_response`` wraps it for a handler to return.  The server pulls the
next event only once the previous one is on its way, and closes the generator when the
client leaves, so its ``finally`` is where a producer unsubscribes.
"""
from __future__ import annotations

import re
from typing import Iterable

from axon.web.wire import Response

KEEPALIVE = b":\n\n"        # a comment line: ignored by EventSource, keeps the connection busy
_LINE_BREAK = re.compile(r"\r\n|\r|\n")   # what ends a line in an event stream
CONTENT_TYPE = "text/event-stream"


def format_event(data: str, *, event: str | None = None, event_id: str | None = None,
                 retry_ms: int | None = None) -> bytes:
    """One event: ``id:``, ``event:``, ``retry:`` and one ``data:`` line per line of ``data``.

    The client joins the data lines with "\\n", so ``data`` arrives as sent (line breaks
    normalized to "\\n").  A line break in ``event`` or ``event_id`` (or NUL in the id,
    which makes clients ignore it) raises ValueError: it would start a field of its own.
    """
    lines = []
    if event_id is not None:
        _check_field("id", event_id, "\r\n\0")
        lines.append(f"id: {event_id}")
    if event is not None:
        _check_field("event", event, "\r\n")
        lines.append(f"event: {event}")
    if retry_ms is not None:
        if isinstance(retry_ms, bool) or not isinstance(retry_ms, int) or retry_ms < 0:
            raise ValueError(f"retry must be a non-negative int of milliseconds, not {retry_ms!r}")
        lines.append(f"retry: {retry_ms}")
    lines.extend(f"data: {line}" for line in _LINE_BREAK.split(data))
    lines.append("\n")   # the blank line that dispatches the event
    return "\n".join(lines).encode("utf-8")


def format_comment(text: str = "") -> bytes:
    """A comment (``: text``, one per line of ``text``), which clients ignore: a keep-alive."""
    lines = [f": {line}" if line else ":" for line in _LINE_BREAK.split(text)]
    lines.append("\n")
    return "\n".join(lines).encode("utf-8")


def sse_response(events: Iterable[bytes], headers: Iterable[tuple[str, str]] = (),
                 status: int = 200) -> Response:
    """A streamed Response of ``events`` (bytes from format_event/format_comment), never cached."""
    return Response(status, [("Content-Type", CONTENT_TYPE), ("Cache-Control", "no-cache"), *headers],
                    stream=events)


def _check_field(name: str, value: str, forbidden: str) -> None:
    if any(c in value for c in forbidden):
        raise ValueError(f"SSE {name} {value!r} holds a line break or NUL")

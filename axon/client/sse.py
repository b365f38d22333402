"""Reading a Server-Sent Events stream: bytes in, events out (pure; no sockets).

The parser follows the event-stream format: lines end in CR, LF or CRLF; ``data:`` lines
join with "\\n"; a blank line dispatches the event; a line starting with ":" is a comment;
an ``id`` holding NUL is ignored.  The last id seen is kept, as a client resuming with
``Last-Event-ID`` needs it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

MAX_LINE = 16 << 20   # one event's line; a stream that never ends a line is refused past it


class StreamError(Exception):
    """The stream is not an event stream (e.g. a line longer than MAX_LINE)."""


@dataclass(frozen=True, slots=True)
class Event:
    event: str          # "message" when the stream named none
    data: str
    id: str | None      # the last event id in force when this event was dispatched


class EventParser:
    """Feed it chunks of the stream; it returns the events they complete."""

    def __init__(self) -> None:
        self.last_id: str | None = None
        self._buffer = b""
        self._data: list[str] = []
        self._event = ""
        self._pending_cr = False

    def feed(self, chunk: bytes) -> list[Event]:
        self._buffer += chunk
        events = []
        for line in self._lines():
            event = self._line(line)
            if event is not None:
                events.append(event)
        if len(self._buffer) > MAX_LINE:
            raise StreamError(f"an event-stream line is longer than {MAX_LINE} bytes")
        return events

    def _lines(self) -> Iterator[str]:
        buf = self._buffer
        start = 0
        if self._pending_cr and buf.startswith(b"\n"):
            start = 1   # the LF of a CRLF split across chunks
        self._pending_cr = False
        i = start
        while i < len(buf):
            c = buf[i]
            if c == 0x0A or c == 0x0D:
                yield buf[start:i].decode("utf-8", "replace")
                if c == 0x0D:
                    if i + 1 == len(buf):
                        self._pending_cr = True
                    elif buf[i + 1] == 0x0A:
                        i += 1
                start = i + 1
            i += 1
        self._buffer = buf[start:]

    def _line(self, line: str) -> Event | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self.last_id = value
        return None

    def _dispatch(self) -> Event | None:
        if not self._data:
            self._event = ""
            return None
        event = Event(self._event or "message", "\n".join(self._data), self.last_id)
        self._data, self._event = [], ""
        return event

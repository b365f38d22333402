"""The pure parts of watches: the request parser, the event stream parser, a watch over a feed."""
from __future__ import annotations

import pytest

from axon.api.errors import Compacted, InvalidInput
from axon.api.watch import Ended, Progress, WatchService, WatchSpec, parse_watch
from axon.client.sse import EventParser, StreamError
from axon.kv.feed import Change, ChangeFeed, FeedLimits
from axon.web.sse import format_event


def test_parse_watch_starts() -> None:
    assert parse_watch(None, "a/", None, None, 100) == WatchSpec(prefix="a/")
    assert parse_watch("k", None, "7", None, 100) == WatchSpec(prefix="k", key="k", start=7)
    assert parse_watch(None, "", None, "41", 100) == WatchSpec(prefix="", start=42)


@pytest.mark.parametrize("key,prefix,rev,last", [
    (None, None, None, None), ("a", "a", None, None), (None, "a", "0", None), (None, "a", "-1", None),
    (None, "a", "1" * 20, None), (None, "a", "٣", None), (None, "a", "1", "1"), (None, "a", None, "x"),
    ("", None, None, None), ("a\x00b", None, None, None), (None, "p" * 101, None, None),
])
def test_parse_watch_refuses(key, prefix, rev, last) -> None:
    with pytest.raises(InvalidInput):
        parse_watch(key, prefix, rev, last, 100)


class Applied:
    def __init__(self, index: int) -> None:
        self.index = index

    def read_index(self, timeout: float) -> int:
        return self.index

    def wait_applied(self, index: int, timeout: float) -> None:
        pass


def service(feed: ChangeFeed, index: int = 0) -> WatchService:
    return WatchService(feed, Applied(index), 1.0, 0.05)


def test_a_watch_gets_its_key_in_order_then_progress() -> None:
    feed = ChangeFeed()
    watches = service(feed)
    watch = watches.open(WatchSpec(prefix="k", key="k"), watches.now())
    feed.publish(1, [("k", 1, "a"), ("kk", 1, "b")])
    feed.publish(2, [("k", 2, None)])
    batches = watch.batches()
    got = [e for batch in (next(batches), next(batches)) for e in batch if type(e) is Change]
    assert got == [Change("k", 1, "put", "a"), Change("k", 2, "delete", None)]
    assert next(batches) == [Progress(2)]
    watch.close()
    assert next(batches)[-1].reason.startswith("watch cut")


def test_a_start_past_the_history_is_compacted_and_a_reset_ends_a_watch() -> None:
    feed = ChangeFeed(limits=FeedLimits(history_changes=2, history_bytes=1 << 20))
    for rev in range(1, 6):
        feed.publish(rev, [("k", rev, "v")])
    watches = service(feed)
    with pytest.raises(Compacted) as err:
        watches.open(WatchSpec(prefix=""), 1)
    assert err.value.details["compacted_revision"] >= 3
    watch = watches.open(WatchSpec(prefix=""), 5)
    feed.reset(9)
    [*changes, end] = [e for batch in watch.batches() for e in batch]
    assert changes == [Change("k", 5, "put", "v")]
    assert type(end) is Ended and end.compacted_revision == 9


def test_progress_never_points_before_a_future_start() -> None:
    feed = ChangeFeed()
    watch = service(feed).open(WatchSpec(prefix=""), 100)
    assert next(watch.batches()) == [Progress(99)]
    watch.close()


def test_event_parser_reads_what_format_event_writes_in_any_split() -> None:
    stream = (b": hello\n\n" + format_event('{"a": 1}\nline2', event="put", event_id="5")
              + format_event("x", event="progress", event_id="6"))
    for size in (1, 2, 3, 7, len(stream)):
        parser = EventParser()
        events = [e for i in range(0, len(stream), size) for e in parser.feed(stream[i:i + size])]
        assert [(e.event, e.data, e.id) for e in events] == [("put", '{"a": 1}\nline2', "5"),
                                                              ("progress", "x", "6")]


def test_event_parser_handles_crlf_split_and_refuses_endless_lines(monkeypatch) -> None:
    parser = EventParser()
    assert parser.feed(b"data: a\r") == []
    assert [e.data for e in parser.feed(b"\n\r\n")] == ["a"]
    monkeypatch.setattr("axon.client.sse.MAX_LINE", 10)
    with pytest.raises(StreamError):
        parser.feed(b"data: " + b"x" * 20)

"""The change feed (axon.kv.feed) on its own: publishing, subscriptions, history, resets."""
from __future__ import annotations

import threading

import gevent
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from axon.kv.feed import (Change, ChangeFeed, Compacted, FeedLimits, Reset, SubscriptionClosed,
                          Subscription)
from axon.testing.polling import wait_until


def put(key: str, revision: int, value: str = "v") -> tuple[str, int, str]:
    return (key, revision, value)


def delete(key: str, revision: int) -> tuple[str, int, None]:
    return (key, revision, None)


def read_all(subscription: Subscription, limit: int = 1000) -> list:
    """Everything buffered now, without waiting."""
    out = []
    while batch := subscription.read(timeout=0, limit=limit):
        out.extend(batch)
    return out


def publish_one_per_revision(feed: ChangeFeed, first: int, last: int, value: str = "v") -> None:
    for revision in range(first, last + 1):
        feed.publish(revision, [put(f"k{revision}", revision, value)])


# ---- live changes ---------------------------------------------------------------

def test_changes_arrive_in_order_each_once_as_events():
    feed = ChangeFeed()
    subscription = feed.subscribe()
    feed.publish(2, [put("a", 1, "1"), put("b", 1, "2"), delete("a", 2)])
    feed.publish(3, [])
    feed.publish(5, [put("c", 5, "3")])
    assert read_all(subscription) == [Change("a", 1, "put", "1"), Change("b", 1, "put", "2"),
                                      Change("a", 2, "delete", None), Change("c", 5, "put", "3")]
    assert read_all(subscription) == []
    assert feed.last_revision == 5


def test_small_read_limits_split_batches_without_loss_or_repeats():
    feed = ChangeFeed()
    subscription = feed.subscribe()
    feed.publish(1, [put(f"k{i}", 1) for i in range(7)])
    feed.publish(2, [put(f"k{i}", 2) for i in range(7, 10)])
    batches = []
    while batch := subscription.read(timeout=0, limit=3):
        assert len(batch) <= 3
        batches.append([change.key for change in batch])
    assert batches == [["k0", "k1", "k2"], ["k3", "k4", "k5"], ["k6", "k7", "k8"], ["k9"]]
    assert subscription.pending == 0


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(1, 5)), max_size=25), st.sampled_from(["", "a", "b/"]))
def test_any_publish_and_read_pattern_gives_each_matching_change_once_in_order(steps, prefix):
    feed = ChangeFeed()
    subscription = feed.subscribe(prefix=prefix)
    keys = ["a", "ab", "b/1", "b/2", "c"]
    published, seen, revision = [], [], 0
    for count, limit in steps:
        revision += 1
        changes = [put(keys[(revision + i) % len(keys)], revision, str(i)) for i in range(count)]
        feed.publish(revision, changes)
        published += [c for c in changes if c[0].startswith(prefix)]
        seen += subscription.read(timeout=0, limit=limit)
    seen += read_all(subscription)
    assert seen == [Change(key, rev, "put", value) for key, rev, value in published]


def test_a_subscription_starts_now_and_filters_by_prefix():
    feed = ChangeFeed()
    feed.publish(1, [put("user/1", 1)])
    subscription = feed.subscribe(prefix="user/")
    feed.publish(2, [put("user/2", 2), put("other", 2), delete("user/1", 2)])
    assert read_all(subscription) == [Change("user/2", 2, "put", "v"), Change("user/1", 2, "delete", None)]
    assert subscription.from_revision == 2


def test_a_waiting_greenlet_wakes_on_publish_and_times_out_otherwise():
    feed = ChangeFeed()
    subscription = feed.subscribe()
    assert subscription.read(timeout=0.01) == []
    reader = gevent.spawn(subscription.read, timeout=10)
    gevent.sleep(0)   # the reader is now waiting
    assert not reader.ready()
    feed.publish(1, [put("a", 1)])
    assert reader.get(timeout=5) == [Change("a", 1, "put", "v")]


def test_only_changes_matching_the_filter_end_a_wait():
    feed = ChangeFeed()
    subscription = feed.subscribe(prefix="x")
    reader = gevent.spawn(subscription.read, timeout=10)
    gevent.sleep(0)
    feed.publish(1, [put("a", 1)])
    gevent.sleep(0)
    assert not reader.ready() and subscription.pending == 0
    feed.publish(2, [put("x", 2)])
    assert reader.get(timeout=5) == [Change("x", 2, "put", "v")]


def test_last_revision_moves_on_without_changes_and_never_back():
    feed = ChangeFeed(revision=3)
    assert feed.last_revision == 3
    feed.publish(5, [])
    assert feed.last_revision == 5
    feed.publish(4, [])
    assert feed.last_revision == 5


# ---- bounded buffers ----------------------------------------------------------

def test_a_subscriber_that_falls_behind_is_cut_and_others_go_on():
    feed = ChangeFeed(limits=FeedLimits(buffer_changes=5))
    slow, fast = feed.subscribe(), feed.subscribe()
    for revision in range(1, 8):
        feed.publish(revision, [put("k", revision)])
        assert [c.revision for c in read_all(fast)] == [revision]
    assert slow.closed and slow.overflowed and slow.pending == 0
    assert "fell behind" in slow.reason
    with pytest.raises(SubscriptionClosed, match="fell behind") as raised:
        slow.read(timeout=0)
    assert raised.value.reason == slow.reason
    assert not fast.closed and feed.subscriber_count == 1


def test_the_buffer_is_bounded_by_bytes_too():
    feed = ChangeFeed(limits=FeedLimits(buffer_bytes=10_000))
    subscription = feed.subscribe()
    feed.publish(1, [put("k", 1, "x" * 5000)])
    assert not subscription.closed
    feed.publish(2, [put("k", 2, "x" * 5000)])
    assert subscription.overflowed and feed.subscriber_count == 0


def test_reading_keeps_a_subscriber_within_its_buffer():
    feed = ChangeFeed(limits=FeedLimits(buffer_changes=10))
    subscription = feed.subscribe()
    for revision in range(1, 101):
        feed.publish(revision, [put("a", revision), put("b", revision)])
        if revision % 4 == 0:
            assert len(read_all(subscription)) == 8
    assert not subscription.closed


def test_a_cut_wakes_a_waiting_reader():
    feed = ChangeFeed(limits=FeedLimits(buffer_changes=2))
    subscription = feed.subscribe(prefix="never")
    reader = gevent.spawn(subscription.read, timeout=10)
    gevent.sleep(0)
    feed.publish(1, [put("a", 1), put("b", 1), put("c", 1)])
    with pytest.raises(SubscriptionClosed):
        reader.get(timeout=5)


def test_closing_a_subscription_or_the_feed():
    feed = ChangeFeed()
    mine, other = feed.subscribe(), feed.subscribe()
    mine.close()
    assert feed.subscriber_count == 1 and not mine.overflowed
    with pytest.raises(SubscriptionClosed, match="subscriber"):
        mine.read(timeout=0)
    reader = gevent.spawn(other.read, timeout=10)
    gevent.sleep(0)
    feed.close("node stopping")
    with pytest.raises(SubscriptionClosed, match="node stopping"):
        reader.get(timeout=5)
    with pytest.raises(SubscriptionClosed, match="node stopping"):
        feed.subscribe()
    assert feed.closed and feed.subscriber_count == 0


# ---- retained history -----------------------------------------------------------

def test_history_is_bounded_by_count_and_starts_after_the_compacted_revision():
    feed = ChangeFeed(limits=FeedLimits(history_changes=5))
    publish_one_per_revision(feed, 1, 10)
    assert feed.retained[0] == 5 and feed.compacted_revision == 5
    replayed = read_all(feed.subscribe(from_revision=6))
    assert [c.revision for c in replayed] == [6, 7, 8, 9, 10]
    assert [c.revision for c in read_all(feed.subscribe(from_revision=9))] == [9, 10]
    with pytest.raises(Compacted) as raised:
        feed.subscribe(from_revision=5)
    assert raised.value.compacted_revision == 5


def test_history_is_bounded_by_bytes():
    feed = ChangeFeed(limits=FeedLimits(history_bytes=30_000))
    publish_one_per_revision(feed, 1, 10, value="x" * 10_000)
    changes, size = feed.retained
    assert changes == 2 and 20_000 < size <= 30_000
    assert feed.compacted_revision == 8
    assert [c.revision for c in read_all(feed.subscribe(from_revision=9))] == [9, 10]


def test_history_drops_whole_batches_so_a_revision_is_all_there_or_compacted():
    feed = ChangeFeed(limits=FeedLimits(history_changes=4))
    feed.publish(2, [put("a", 1), put("b", 2)])
    feed.publish(4, [put("c", 3), put("d", 3), put("e", 4)])
    # Five changes: the first batch leaves whole, though one change would have been enough.
    assert feed.retained[0] == 3 and feed.compacted_revision == 2
    with pytest.raises(Compacted):
        feed.subscribe(from_revision=2)
    assert [c.key for c in read_all(feed.subscribe(from_revision=3))] == ["c", "d", "e"]
    feed.publish(5, [put(f"big{i}", 5) for i in range(9)])   # larger than the whole history
    assert feed.retained == (0, 0) and feed.compacted_revision == 5
    assert read_all(feed.subscribe(from_revision=6)) == []


def test_replay_then_live_without_gaps_or_repeats():
    feed = ChangeFeed()
    feed.publish(3, [put("a", 1), put("b", 2), put("c", 3)])
    feed.publish(4, [put("d", 4)])
    subscription = feed.subscribe(from_revision=2)   # starts inside the first batch
    assert subscription.pending == 3
    first = subscription.read(timeout=0, limit=2)
    feed.publish(6, [put("e", 6)])
    rest = read_all(subscription)
    assert [c.key for c in first + rest] == ["b", "c", "d", "e"]


def test_a_revision_ahead_of_the_feed_waits_for_it():
    feed = ChangeFeed()
    feed.publish(1, [put("a", 1)])
    subscription = feed.subscribe(from_revision=3)
    feed.publish(3, [put("b", 2), put("c", 3)])
    assert read_all(subscription) == [Change("c", 3, "put", "v")]


def test_a_feed_knows_nothing_before_its_start():
    feed = ChangeFeed(revision=7)
    with pytest.raises(Compacted) as raised:
        feed.subscribe(from_revision=7)
    assert raised.value.compacted_revision == 7
    assert read_all(feed.subscribe(from_revision=8)) == []
    for bad in (0, -1, "3", True):
        with pytest.raises(ValueError):
            feed.subscribe(from_revision=bad)


def test_a_replay_larger_than_the_buffer_cuts_at_once():
    feed = ChangeFeed(limits=FeedLimits(history_changes=100, buffer_changes=3))
    publish_one_per_revision(feed, 1, 5)
    subscription = feed.subscribe(from_revision=1)
    assert subscription.overflowed and feed.subscriber_count == 0


def test_subscribers_share_batches():
    feed = ChangeFeed()
    subscriptions = [feed.subscribe() for _ in range(3)]
    changes = [put("a", 1)]
    feed.publish(1, changes)
    assert all(s._items[0].changes is changes for s in subscriptions)
    assert feed._history[0].changes is changes


# ---- resets -----------------------------------------------------------------------

def test_a_reset_comes_after_earlier_changes_and_drops_the_history():
    feed = ChangeFeed()
    subscription = feed.subscribe()
    publish_one_per_revision(feed, 1, 3)
    feed.reset(10)
    feed.publish(11, [put("after", 11)])
    events = read_all(subscription)
    assert [e.kind for e in events] == ["put", "put", "put", "reset", "put"]
    assert events[3] == Reset(10) and events[3].revision == 10
    assert feed.last_revision == 11 and feed.compacted_revision == 10
    with pytest.raises(Compacted):
        feed.subscribe(from_revision=3)
    assert [c.key for c in read_all(feed.subscribe(from_revision=11))] == ["after"]


def test_a_reset_reaches_prefix_subscribers_and_never_moves_back():
    feed = ChangeFeed()
    subscription = feed.subscribe(prefix="only/")
    feed.publish(9, [])
    feed.reset(4)
    assert read_all(subscription) == [Reset(9)]
    assert feed.last_revision == 9


def test_a_reset_from_another_thread_is_delivered_on_the_hub_before_later_changes():
    feed = ChangeFeed()
    subscription = feed.subscribe()
    worker = threading.Thread(target=feed.reset, args=(20,))
    worker.start()
    worker.join()
    # The hub has not run the callback yet; the next publish must deliver the reset first.
    assert feed.last_revision == 0
    feed.publish(21, [put("a", 21)])
    assert read_all(subscription) == [Reset(20), Change("a", 21, "put", "v")]


def test_a_reset_from_a_worker_thread_wakes_a_waiting_reader():
    feed = ChangeFeed()
    subscription = feed.subscribe()
    reader = gevent.spawn(subscription.read, timeout=10)
    gevent.sleep(0)
    gevent.get_hub().threadpool.apply(feed.reset, (5,))
    assert reader.get(timeout=5) == [Reset(5)]
    wait_until(lambda: feed.compacted_revision == 5, 5, "the reset on the hub")

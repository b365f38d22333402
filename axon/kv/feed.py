"""The change feed: what applied entries changed, in order, for subscribers on gevent.

The state machine publishes each applied batch once the store has written it, so a
subscriber never sees a change the store does not hold.  A change is published as a raw
tuple ``(key, revision, value)`` (value None for a delete): the store builds one per
effective put or delete on the apply path, where a tuple costs a fraction of what an
event object would.  A batch's tuples stay one shared chunk: publishing it takes a few
C-level passes to size it and a reference per subscriber, and each subscriber's own
reads turn raw tuples into ``Change`` events, in its own greenlet.

Memory stays bounded twice over.  The feed retains the most recent chunks (``history_*``
limits) so that a subscriber may start from a recent revision; a chunk leaves whole, so
a revision is either complete in the history or gone (``compacted_revision``).  Each
subscription buffers at most ``buffer_*`` unread changes and is cut, with a reason, when
it falls further behind.  Buffers share the chunks, so lagging subscribers pin about the
newest ``buffer_bytes`` of changes between them, however many there are.

A snapshot install replaces the whole data set in a worker thread: ``reset`` may be called
from any thread and reaches subscribers as a ``Reset`` marker, on the feed's hub, before
anything published after it.
"""
from __future__ import annotations

import bisect
import time
from collections import deque
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Callable, NamedTuple, Sequence

import gevent
from gevent.event import Event
from gevent.monkey import get_original

RawChange = tuple[str, int, str | None]   # (key, revision, value); value None: the key was deleted

# The real thread id even when gevent's monkey patching maps thread ids to greenlets.
_thread_id: Callable[[], int] = get_original("_thread", "get_ident")
_key = itemgetter(0)
_revision = itemgetter(1)
_value = itemgetter(2)
# What a change holds besides its characters: the tuple, two str headers, the revision.
_CHANGE_OVERHEAD = 200


class Change(NamedTuple):
    """One effective put or delete; ``revision`` is the Raft index of the entry that made it."""
    key: str
    revision: int
    kind: str              # "put" | "delete"
    value: str | None      # the new value of a put; None for a delete


class Reset(NamedTuple):
    """The store's data set was replaced by a snapshot at ``revision``: re-read it.

    Changes up to ``revision`` that were never published are in the store, not in the feed.
    """
    revision: int
    kind: str = "reset"


FeedEvent = Change | Reset


class Compacted(Exception):
    """The feed no longer holds every change from the requested revision on."""

    def __init__(self, compacted_revision: int, requested: int) -> None:
        super().__init__(f"cannot start from revision {requested}: changes up to revision "
                         f"{compacted_revision} are no longer retained")
        self.compacted_revision = compacted_revision


class SubscriptionClosed(Exception):
    """The subscription (or the whole feed) is closed; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class FeedLimits:
    history_changes: int = 20_000
    history_bytes: int = 16 << 20
    # Twice the history, so that a subscriber replaying all of it is not cut at once.
    buffer_changes: int = 40_000
    buffer_bytes: int = 32 << 20


class _Chunk:
    """One published batch: its raw changes, in revision order, shared by every reader."""
    __slots__ = ("changes", "revision", "size")

    def __init__(self, changes: Sequence[RawChange], revision: int) -> None:
        self.changes = changes
        self.revision = revision      # the feed's revision once published: >= each change's
        self.size = _estimate_bytes(changes)


class ChangeFeed:
    """Publishes applied changes to subscribers and retains a bounded recent history.

    Everything but ``reset`` and ``close`` must run on the hub thread that created the feed.
    """

    def __init__(self, revision: int = 0, limits: FeedLimits = FeedLimits()) -> None:
        self.limits = limits
        self._last = revision
        self._compacted = revision   # changes up to here may be missing from the history
        self._history: deque[_Chunk] = deque()
        self._history_changes = 0
        self._history_bytes = 0
        self._subscriptions: set[Subscription] = set()
        self._closed: str | None = None
        self._hub_thread = _thread_id()
        self._loop = gevent.get_hub().loop
        # Calls made from other threads, run on the hub in order (deque ops are atomic).
        self._incoming: deque[tuple[Callable[..., None], tuple]] = deque()

    @property
    def last_revision(self) -> int:
        """The revision the store had reached at the last publish or reset; never decreases."""
        return self._last

    @property
    def compacted_revision(self) -> int:
        """Changes at or below this revision may be gone: subscribe from a later one."""
        return self._compacted

    @property
    def retained(self) -> tuple[int, int]:
        """(changes, estimated bytes) held in the history."""
        return self._history_changes, self._history_bytes

    @property
    def subscriber_count(self) -> int:
        return len(self._subscriptions)

    @property
    def closed(self) -> bool:
        return self._closed is not None

    # ---- publishing (hub thread) ------------------------------------------

    def publish(self, revision: int, changes: Sequence[RawChange]) -> None:
        """The store has written everything up to ``revision``; ``changes`` is what it changed.

        ``changes`` must follow every change published before, in revision order, and the
        feed keeps it as it is: the caller must not touch it afterwards.
        """
        if self._incoming:
            self._run_incoming()   # a reset from a worker thread comes before what follows it
        if revision > self._last:
            self._last = revision
        if not changes or self._closed is not None:
            return
        chunk = _Chunk(changes, revision)
        self._retain(chunk)
        if self._subscriptions:
            for subscription in tuple(self._subscriptions):   # a push may cut, and so drop, one
                subscription._push(chunk)

    def _retain(self, chunk: _Chunk) -> None:
        self._history.append(chunk)
        self._history_changes += len(chunk.changes)
        self._history_bytes += chunk.size
        limits = self.limits
        while self._history and (self._history_changes > limits.history_changes
                                 or self._history_bytes > limits.history_bytes):
            old = self._history.popleft()
            self._history_changes -= len(old.changes)
            self._history_bytes -= old.size
            self._compacted = old.revision

    # ---- subscribing (hub thread) -----------------------------------------

    def subscribe(self, from_revision: int | None = None, prefix: str = "") -> Subscription:
        """Changes to keys starting with ``prefix``: from ``from_revision`` on, else from now on.

        Retained changes at or after ``from_revision`` come first, then live ones.  Raises
        Compacted when the history no longer reaches back to ``from_revision``, and
        SubscriptionClosed when the feed is closed.
        """
        if self._incoming:
            self._run_incoming()
        if self._closed is not None:
            raise SubscriptionClosed(self._closed)
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, not {type(prefix).__name__}")
        if from_revision is None:
            subscription = Subscription(self, self._last + 1, prefix)
        else:
            if type(from_revision) is not int or from_revision < 1:
                raise ValueError(f"from_revision must be an int >= 1, not {from_revision!r}")
            if from_revision <= self._compacted:
                raise Compacted(self._compacted, from_revision)
            subscription = Subscription(self, from_revision, prefix)
            subscription._replay(self._retained_from(from_revision))
        if not subscription.closed:   # a replay larger than the buffer cuts it at once
            self._subscriptions.add(subscription)
        return subscription

    def _retained_from(self, revision: int) -> list[_Chunk]:
        chunks: list[_Chunk] = []
        for chunk in reversed(self._history):
            if chunk.revision < revision:
                break
            chunks.append(chunk)
        chunks.reverse()
        return chunks

    def _drop(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)

    # ---- from any thread ---------------------------------------------------

    def reset(self, revision: int) -> None:
        """The store now holds a snapshot at ``revision``: drop the history, tell subscribers."""
        self._on_hub(self._reset, revision)

    def close(self, reason: str = "the change feed is closed") -> None:
        """Cut every subscription with ``reason`` and refuse new ones."""
        self._on_hub(self._close, reason)

    def _reset(self, revision: int) -> None:
        # Snapshots only move a store forward; a stale one must not move last_revision back.
        revision = max(revision, self._last)
        self._history.clear()
        self._history_changes = self._history_bytes = 0
        self._last = self._compacted = revision
        marker = Reset(revision)
        for subscription in tuple(self._subscriptions):
            subscription._push_reset(marker)

    def _close(self, reason: str) -> None:
        if self._closed is None:
            self._closed = reason
        for subscription in tuple(self._subscriptions):
            subscription._cut(reason)

    def _on_hub(self, fn: Callable[..., None], *args: Any) -> None:
        if _thread_id() == self._hub_thread:
            self._run_incoming()
            fn(*args)
        else:
            self._incoming.append((fn, args))
            self._loop.run_callback_threadsafe(self._run_incoming)

    def _run_incoming(self) -> None:
        while self._incoming:
            fn, args = self._incoming.popleft()
            fn(*args)


class Subscription:
    """One subscriber's view of the feed: a bounded buffer of unread changes.

    Read it from one greenlet with ``read``; ``close`` it when done (one left behind holds
    memory only until its buffer fills and the feed cuts it).
    """

    def __init__(self, feed: ChangeFeed, from_revision: int, prefix: str) -> None:
        self.from_revision = from_revision
        self.prefix = prefix
        self.reason: str | None = None     # why it was closed
        self.overflowed = False            # cut for falling behind
        self._feed = feed
        self._limits = feed.limits
        self._items: deque[_Chunk | Reset] = deque()
        self._offset = 0                   # changes of the first chunk already read
        self._pending = 0                  # unread changes
        self._pending_bytes = 0            # estimated, counting the first chunk whole
        self._ready = Event()              # set while there is something to read, or once closed

    @property
    def closed(self) -> bool:
        return self.reason is not None

    @property
    def pending(self) -> int:
        """Changes buffered and not read yet (before the prefix filter)."""
        return self._pending

    def read(self, timeout: float | None = None, limit: int = 1000) -> list[FeedEvent]:
        """The next events, at most ``limit``; waits up to ``timeout`` seconds for one.

        Returns [] on timeout.  Raises SubscriptionClosed once the subscription is closed,
        even with events still unread (an overflowed buffer is dropped).
        """
        if type(limit) is not int or limit < 1:
            raise ValueError(f"limit must be an int >= 1, not {limit!r}")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.reason is not None:
                raise SubscriptionClosed(self.reason)
            if self._items:
                events = self._take(limit)
                if events:
                    return events
                continue   # all filtered out: look again
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return []
            self._ready.clear()
            self._ready.wait(remaining)

    def close(self, reason: str = "closed by the subscriber") -> None:
        self._cut(reason)

    # ---- called by the feed ------------------------------------------------

    def _replay(self, chunks: list[_Chunk]) -> None:
        if not chunks:
            return
        # The first chunk may start before from_revision: its earlier changes count as read.
        skip = bisect.bisect_left(chunks[0].changes, self.from_revision, key=_revision)
        self._offset, self._pending = skip, -skip
        for chunk in chunks:
            self._push(chunk)

    def _push(self, chunk: _Chunk) -> None:
        if self.reason is not None:
            return
        self._items.append(chunk)
        self._pending += len(chunk.changes)
        self._pending_bytes += chunk.size
        limits = self._limits
        if self._pending > limits.buffer_changes or self._pending_bytes > limits.buffer_bytes:
            self.overflowed = True
            self._cut(f"fell behind: more than {limits.buffer_changes} changes or "
                      f"{limits.buffer_bytes} bytes unread")
        else:
            self._ready.set()

    def _push_reset(self, marker: Reset) -> None:
        self._items.append(marker)
        self._ready.set()

    def _cut(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        self._items.clear()
        self._pending = self._pending_bytes = self._offset = 0
        self._feed._drop(self)
        self._ready.set()

    def _take(self, limit: int) -> list[FeedEvent]:
        """Up to ``limit`` events off the buffer (changes outside the filter are consumed too)."""
        out: list[FeedEvent] = []
        prefix, first = self.prefix, self.from_revision
        while self._items and len(out) < limit:
            item = self._items[0]
            if type(item) is Reset:
                self._items.popleft()
                out.append(item)
                continue
            changes = item.changes
            start = self._offset
            stop = min(len(changes), start + limit - len(out))
            for key, revision, value in changes[start:stop]:
                if revision >= first and key.startswith(prefix):
                    out.append(Change(key, revision, "put" if value is not None else "delete", value))
            self._pending -= stop - start
            if stop == len(changes):
                self._items.popleft()
                self._offset = 0
                self._pending_bytes -= item.size
            else:
                self._offset = stop
        return out


def _estimate_bytes(changes: Sequence[RawChange]) -> int:
    """Memory a batch of changes holds, roughly: characters plus a fixed cost per change.

    Characters, not encoded bytes, counted in C-level passes: this runs on the apply path,
    and one join (a copy) costs less than a len() call per string.
    """
    keys = len("".join(map(_key, changes)))
    values = len("".join(filter(None, map(_value, changes))))
    return keys + values + _CHANGE_OVERHEAD * len(changes)

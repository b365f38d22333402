"""Watches: which changes a watcher gets, from which revision, as plain events.

A watch reads the node's change feed (axon/kv/feed.py), so any node serves one from what
it has applied.  It starts at a revision the client names (``from_revision=N``: the first
change at revision >= N; ``Last-Event-ID: N``: the first after N), or from "now", which
must be a linearizable point: the leader's ReadIndex, once this node has applied it.  A
change committed before the watch was asked for is then never in it, and one committed
after always is, whichever node serves it.

``Watch.batches`` yields ``Change`` events in revision order, each once, a ``Progress``
whenever nothing happened for a while (every change up to its revision has been
delivered), and ends with one ``Ended`` when the watch cannot go on: the watcher fell
too far behind, the node replaced its data with a snapshot, or the node is stopping.
Nothing here knows HTTP; the web layer turns these into Server-Sent Events.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Protocol

from axon.api import validate
from axon.api.errors import Compacted, InvalidInput, Unavailable, from_raft
from axon.kv.feed import Change, ChangeFeed, Compacted as FeedCompacted, Reset, Subscription, SubscriptionClosed
from axon.raft.errors import RaftError

MAX_EVENTS_PER_READ = 256


class Applied(Protocol):
    """What a watch needs of the Raft node (axon.raft.node.RaftNode)."""

    def read_index(self, timeout: float) -> int: ...
    def wait_applied(self, index: int, timeout: float) -> None: ...


@dataclass(frozen=True, slots=True)
class WatchSpec:
    """What to watch: one ``key``, or every key under ``prefix``; where to start (None: now)."""
    prefix: str
    key: str | None = None
    start: int | None = None

    def matches(self, key: str) -> bool:
        return self.key is None or key == self.key


@dataclass(frozen=True, slots=True)
class Progress:
    """Every change up to ``revision`` has been delivered."""
    revision: int


@dataclass(frozen=True, slots=True)
class Ended:
    """The watch stops here; resume from the last revision seen (``compacted_revision``: the
    history no longer reaches back past it, so re-read the keys first)."""
    reason: str
    compacted_revision: int | None = None


WatchEvent = Change | Progress | Ended


def parse_watch(key: str | None, prefix: str | None, from_revision: str | None,
                last_event_id: str | None, max_key_bytes: int) -> WatchSpec:
    """The watch a request asks for; InvalidInput when it is not one."""
    if (key is None) == (prefix is None):
        raise InvalidInput("give exactly one of key and prefix (prefix may be empty: every key)")
    if from_revision is not None and last_event_id is not None:
        raise InvalidInput("give from_revision or Last-Event-ID, not both")
    start = None
    if from_revision is not None:
        start = _revision(from_revision, "from_revision")
        if start < 1:
            raise InvalidInput("from_revision must be at least 1")
    elif last_event_id is not None:
        start = _revision(last_event_id.strip(), "Last-Event-ID") + 1
    if key is not None:
        key = validate.key(key, max_key_bytes)
        return WatchSpec(prefix=key, key=key, start=start)
    if prefix and len(prefix.encode("utf-8", "surrogatepass")) > max_key_bytes:
        raise InvalidInput(f"prefix is longer than {max_key_bytes} bytes")
    return WatchSpec(prefix=prefix or "", start=start)


def _revision(text: str, name: str) -> int:
    if not validate.ascii_digits(text) or len(text) > validate.MAX_REVISION_DIGITS:
        raise InvalidInput(f"{name} must be a revision number")
    return int(text)


class WatchService:
    """Opens watches on this node's change feed."""

    def __init__(self, feed: ChangeFeed | None, node: Applied, request_timeout: float,
                 progress_interval: float) -> None:
        """``feed``: the state machine's; None gives an empty one (nodes without a store, in tests)."""
        self.feed = feed if feed is not None else ChangeFeed()
        self.node = node
        self.request_timeout = request_timeout
        self.progress_interval = progress_interval

    def now(self) -> int:
        """The first revision a watch "from now" delivers (leader only: NotLeader elsewhere)."""
        try:
            return self.node.read_index(self.request_timeout) + 1
        except RaftError as exc:
            raise from_raft(exc, None) from None

    def open(self, spec: WatchSpec, start: int, catch_up: bool = False) -> "Watch":
        """A watch from ``start``; Compacted when the retained history no longer reaches back to it.

        ``catch_up``: first wait until this node has applied everything before ``start`` (a
        start from ``now()``, so that the first event is not late by this node's lag).
        """
        if catch_up:
            try:
                self.node.wait_applied(start - 1, self.request_timeout)
            except RaftError as exc:
                raise Unavailable(f"this node has not caught up with the leader: {exc}") from None
        try:
            subscription = self.feed.subscribe(start, spec.prefix)
        except FeedCompacted as exc:
            raise Compacted(f"revision {start} is older than the watch history kept here; "
                            f"re-read the keys, then watch from revision {exc.compacted_revision + 1}",
                            compacted_revision=exc.compacted_revision) from None
        except SubscriptionClosed as exc:
            raise InvalidInput(f"watches are not served now: {exc.reason}") from None
        return Watch(subscription, spec, start, self.feed, self.progress_interval)


class Watch:
    """One open watch; read ``batches()`` from one greenlet, ``close()`` when done."""

    def __init__(self, subscription: Subscription, spec: WatchSpec, start: int, feed: ChangeFeed,
                 progress_interval: float) -> None:
        self.spec = spec
        self.start = start
        self._subscription = subscription
        self._feed = feed
        self._progress_interval = progress_interval

    def batches(self) -> Iterator[list[WatchEvent]]:
        """Changes as they come (a batch holds what was ready at once), ``[Progress]`` after each
        quiet interval, and finally a batch that ends with one Ended."""
        while True:
            try:
                ready = self._subscription.read(self._progress_interval, MAX_EVENTS_PER_READ)
            except SubscriptionClosed as exc:
                yield [Ended(f"watch cut: {exc.reason}")]
                return
            if not ready:
                # Nothing unread: every change the feed published so far has been seen.
                yield [Progress(max(self._feed.last_revision, self.start - 1))]
                continue
            batch: list[WatchEvent] = []
            for event in ready:
                if type(event) is Reset:
                    batch.append(Ended(f"this node replaced its data with a snapshot at revision "
                                       f"{event.revision}; re-read the keys, then watch from revision "
                                       f"{event.revision + 1}", compacted_revision=event.revision))
                    yield batch
                    return
                if self.spec.matches(event.key):
                    batch.append(event)
            if batch:
                yield batch

    def close(self) -> None:
        self._subscription.close()

"""Client writes waiting on the log: batched into entries, answered once applied.

Every write queued while the driver's loop was busy goes into one proposal round; the items
of many clients share an entry (up to ``max_entry_bytes``), and each client gets back the
results of its own items once the entry is applied.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from gevent.event import AsyncResult

from axon.raft.core import RaftCore
from axon.raft.errors import Dropped, NotLeader
from axon.raft.types import Entry

MAX_ENTRY_BYTES = 1 << 20


@dataclass(slots=True)
class _Part:
    """One client's items inside a proposed entry."""
    result: AsyncResult
    start: int
    count: int


@dataclass(slots=True)
class _Pending:
    term: int
    parts: list[_Part] = field(default_factory=list)


class Proposals:
    """Queued writes, the entries proposed for them, and their answers."""

    def __init__(self, encode_batch: Callable[[list], bytes], item_size: Callable[[Any], int],
                 max_entry_bytes: int = MAX_ENTRY_BYTES) -> None:
        self.encode_batch = encode_batch
        self.item_size = item_size          # rough encoded size of one item: bounds an entry's size
        self.max_entry_bytes = max_entry_bytes
        self._queued: list[tuple[list, AsyncResult]] = []
        self._pending: dict[int, _Pending] = {}     # entry index -> who waits for it

    def queue(self, items: list) -> AsyncResult:
        """Items to propose with the next round; the result is their list of results."""
        result = AsyncResult()
        self._queued.append((items, result))
        return result

    def flush(self, core: RaftCore, not_leader: Callable[[], NotLeader]) -> int:
        """Propose everything queued, as few entries as the size bound allows; how many
        clients' proposals that was."""
        if not self._queued:
            return 0
        queued, self._queued = self._queued, []
        batches = self._batches(queued)
        try:
            first, term = core.propose([self.encode_batch(items) for items, _ in batches])
        except NotLeader:
            err = not_leader()
            for _, result in queued:
                result.set_exception(err)
            return 0
        for offset, (_, parts) in enumerate(batches):
            self._pending[first + offset] = _Pending(term, parts)
        return len(queued)

    def _batches(self, queued: list[tuple[list, AsyncResult]]) -> list[tuple[list, list[_Part]]]:
        batches: list[tuple[list, list[_Part]]] = [([], [])]
        size = 0
        for items, result in queued:
            entry_items, parts = batches[-1]
            if entry_items and size > self.max_entry_bytes:
                batches.append(([], []))
                entry_items, parts = batches[-1]
                size = 0
            parts.append(_Part(result, len(entry_items), len(items)))
            entry_items.extend(items)
            size += sum(map(self.item_size, items))
        return batches

    def track(self, index: int, term: int) -> AsyncResult:
        """Wait for one entry proposed elsewhere (a membership change); the result is []."""
        result = AsyncResult()
        self._pending[index] = _Pending(term, [_Part(result, 0, 0)])
        return result

    def applied(self, entries: Sequence[Entry], results: Sequence[Sequence[Any]]) -> None:
        """``entries`` were applied with ``results`` (one list per entry, one result per
        item): answer whoever proposed them."""
        if not self._pending:
            return    # a follower's case: nobody here waits
        pop = self._pending.pop
        for entry, res in zip(entries, results):
            pending = pop(entry.index, None)
            if pending is not None:
                _answer(pending, entry, res)

    def fail_all(self, err: Exception) -> None:
        for pending in self._pending.values():
            for part in pending.parts:
                part.result.set_exception(err)
        self._pending.clear()
        for _, result in self._queued:
            result.set_exception(err)
        self._queued.clear()


def _answer(pending: _Pending, entry: Entry, results: Sequence[Any]) -> None:
    if entry.term != pending.term:
        err = Dropped("leadership changed before the write committed; it was not applied")
        for part in pending.parts:
            part.result.set_exception(err)
        return
    for part in pending.parts:
        part.result.set(results[part.start:part.start + part.count])

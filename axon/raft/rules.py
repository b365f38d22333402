"""The driver's rules: what to do with the core's output, and when.  Pure: no I/O, no gevent.

``RaftNode`` (gevent, WAL, TCP, LevelDB) and the simulation (fake clock, fake disk, simulated
network) both drive the core through these rules, so the simulation's seeds test the rules
the real node runs.  Each driver keeps its own I/O; a rule only says what may happen now.

- ``Durability``: a Ready's ``messages`` go at once (a leader sends its appends before its
  own log write: Raft lets the leader write in parallel with its followers); its
  ``persist_messages`` (votes, append acks) wait until a sync covers every write before
  them.  The local log counts as durable only up to what a completed sync covers and no
  later write has rewritten.
- ``ApplyQueue``: committed entries are applied in order and only once durable in the local
  log (the state machine never gets ahead of it); entries an installed snapshot covers are
  skipped; a received snapshot is installed at its place in that order.
- ``SnapshotStaging``: the chunks of one stream are taken in offset order; a gap is ignored
  until the leader starts over at offset 0; while a snapshot installs, new streams are ignored.
- ``finish_install``: at the end of an install the core decides whether the snapshot
  replaces the log, and the log follows in the same step.
- ``compaction_index`` and ``compact``: the log drops entries only once the state machine
  that holds them is durable.
- ``log_behind_store``: on start-up, a store newer than the log means the log is dropped.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable

from axon.raft.core import RaftCore, Ready
from axon.raft.types import Entry, Message, SnapshotMeta


# ---------------------------------------------------------------------- the rules themselves
# Small module-level functions, so that a test can break exactly one of them and watch the
# simulation catch it (tests/test_driver_rules.py).

def must_wait_for_sync(written: int, synced: int) -> bool:
    """A message that needs durability waits while any write before it is unsynced."""
    return synced < written


def apply_limit(durable_index: int, committed_index: int) -> int:
    """Committed entries may be applied up to here: only what the local log holds durably."""
    return min(durable_index, committed_index)


def continues_stream(staged: SnapshotMeta | None, source: str | None, size: int,
                     chunk: Message) -> bool:
    """A chunk extends the stream being staged only if it comes right after what is staged."""
    return staged == chunk.snapshot and source == chunk.src and size == chunk.offset


# ---------------------------------------------------------------------- durability

@dataclass(slots=True)
class _Write:
    seq: int
    first: int       # index of the first entry written
    last: int        # index and term of the last one
    last_term: int


@dataclass(slots=True)
class Synced:
    """What a completed sync allows: messages to send now, and the core's new persisted position."""
    release: list[Message]
    persisted: tuple[int, int] | None


class Durability:
    """Which messages go now, which wait for which sync, and how far the local log is durable.

    Writes are numbered in the order the driver hands them to its log; a sync covers every
    write numbered up to the one last handed over when it began.
    """

    def __init__(self, log_end: int) -> None:
        self.written = 0                   # number of the last write handed to the log
        self.synced = 0                    # number of the last write a completed sync covers
        self.durable_index = log_end       # the local log is durable (as it is now) up to here
        self._disk_end = log_end           # where the durable log ends
        self._writes: deque[_Write] = deque()            # unsynced writes of entries
        self._held: deque[tuple[int, list[Message]]] = deque()   # (write number to wait for, msgs)

    @property
    def unsynced(self) -> bool:
        """True while a write awaits a sync."""
        return self.written > self.synced

    def track(self, rd: Ready) -> tuple[bool, list[Message]]:
        """Account for one Ready: (must the driver write its entries/hard state?, held
        messages that may go now).  The caller sends ``rd.messages`` before writing."""
        writes = bool(rd.entries) or rd.hard_state is not None
        if writes:
            self.written += 1
            if rd.entries:
                first, last = rd.entries[0], rd.entries[-1]
                self._writes.append(_Write(self.written, first.index, last.index, last.term))
                # entries from `first` on are rewritten: what the disk holds there is stale
                self.durable_index = min(self.durable_index, first.index - 1)
        held = rd.persist_messages
        if not held:
            return writes, []
        if must_wait_for_sync(self.written, self.synced):
            self._held.append((self.written, held))
            return writes, []
        return writes, held

    def sync_completed(self, upto: int) -> Synced:
        """A sync covering every write numbered up to ``upto`` completed."""
        if upto <= self.synced:
            return Synced([], None)
        self.synced = upto
        persisted = None
        writes = self._writes
        while writes and writes[0].seq <= upto:
            write = writes.popleft()
            self._disk_end = write.last
            persisted = (write.last, write.last_term)
        self.durable_index = min(self._disk_end, writes[0].first - 1) if writes else self._disk_end
        return Synced(self._release(upto), persisted)

    def all_synced(self, log_end: int, log_end_term: int) -> Synced:
        """Every write so far is durable and the log ends at ``log_end`` (after a snapshot
        install: compacting the log syncs it, and may have dropped what was written)."""
        self.synced = self.written
        self._writes.clear()
        self._disk_end = self.durable_index = log_end
        return Synced(self._release(self.written), (log_end, log_end_term))

    def _release(self, upto: int) -> list[Message]:
        out: list[Message] = []
        held = self._held
        while held and held[0][0] <= upto:
            out.extend(held.popleft()[1])
        return out


# ---------------------------------------------------------------------- applying

class ApplyQueue:
    """Committed entries and received snapshots, in order; hands out only what may be applied now."""

    def __init__(self) -> None:
        self._queue: deque[list[Entry] | SnapshotMeta] = deque()
        self._entries = 0

    def __len__(self) -> int:
        """Entries waiting (snapshots not counted)."""
        return self._entries

    def push(self, entries: list[Entry]) -> None:
        """Committed entries, contiguous, after everything pushed before."""
        if entries:
            self._queue.append(entries)
            self._entries += len(entries)

    def push_snapshot(self, meta: SnapshotMeta) -> None:
        self._queue.append(meta)

    def clear(self) -> None:
        self._queue.clear()
        self._entries = 0

    def take(self, applied: int, durable_index: int,
             limit: int | None = None) -> list[Entry] | SnapshotMeta | None:
        """The next work: entries to apply (at most ``limit``), a snapshot to install, or None
        when nothing may be applied yet (the next sync or install will allow more)."""
        queue = self._queue
        while queue:
            head = queue[0]
            if isinstance(head, SnapshotMeta):
                queue.popleft()
                return head
            first = head[0].index
            skip = max(0, applied + 1 - first)    # covered by an installed snapshot
            if skip >= len(head):
                queue.popleft()
                self._entries -= len(head)
                continue
            stop = apply_limit(durable_index, head[-1].index) - first + 1
            if limit is not None:
                stop = min(stop, skip + limit)
            if stop <= skip:
                return None
            if stop >= len(head):
                queue.popleft()
                stop = len(head)
            else:
                queue[0] = head[stop:]
            self._entries -= stop
            return head[skip:stop] if skip or stop < len(head) else head
        return None


# ---------------------------------------------------------------------- snapshots received

@dataclass(slots=True)
class ChunkStep:
    """What to do with a chunk: start staging afresh, append data, and whether the stream is whole."""
    restart: bool
    data: bytes
    complete: SnapshotMeta | None


class SnapshotStaging:
    """Which received chunks to stage, and when a staged stream is whole."""

    def __init__(self) -> None:
        self.meta: SnapshotMeta | None = None   # the stream being staged
        self.source: str | None = None
        self.size = 0
        self.installing = False                # a staged snapshot is being installed

    def chunk(self, msg: Message) -> ChunkStep | None:
        """Where ``msg`` goes; None: ignore it."""
        if msg.snapshot is None or self.installing:
            # The install reads what was staged: a new stream (the leader re-sends while a
            # large install runs) must not overwrite it.  The leader retries once we answer.
            return None
        restart = msg.offset == 0
        if restart:
            self.meta, self.source, self.size = msg.snapshot, msg.src, 0
        elif not continues_stream(self.meta, self.source, self.size, msg):
            return None    # a gap: ignore until the leader starts over
        self.size += len(msg.data)
        complete = None
        if msg.done:
            complete, self.meta, self.source = msg.snapshot, None, None
        return ChunkStep(restart, msg.data, complete)

    def received(self, core: RaftCore, meta: SnapshotMeta, source: str) -> bool:
        """A stream is whole: True if the core wants it installed (then call ``finish_install``)."""
        self.installing = core.snapshot_received(meta, source)
        return self.installing


def finish_install(core: RaftCore, staging: SnapshotStaging, durability: Durability,
                   meta: SnapshotMeta, compact_log: Callable[[int, int, bool], None]) -> Synced:
    """The state machine now holds ``meta``'s snapshot: the core decides whether it replaces
    the log (appends that arrived during the install may already hold its last entry, and
    what follows may have been acknowledged), and the log follows with ``compact_log(index,
    term, drop_newer)``, which must make every earlier write durable.  Returns what that
    sync allows."""
    staging.installing = False
    replaced = core.snapshot_installed(meta, core.leader)
    compact_log(meta.index, meta.term, replaced)
    last = core.last_index()
    return durability.all_synced(last, core.term_at(last) or 0)


# ---------------------------------------------------------------------- start-up and compaction

def log_behind_store(store_index: int, compacted_index: int, log_last: int) -> bool:
    """On start-up: True if the store holds a snapshot newer than the log (a crash right
    after an install), so the log must be dropped up to it; raises if the log was compacted
    past the store, which a driver following ``compact`` never does."""
    if store_index < compacted_index:
        raise RuntimeError(
            f"store is at index {store_index} but the log was compacted to {compacted_index}; "
            "the data directory is damaged (remove it and re-join this node)")
    return store_index > log_last


def compaction_index(applied: int, snap_index: int, keep_entries: int,
                     snapshot_entries: int) -> int | None:
    """Where to compact the log now, if at all: ``keep_entries`` behind the applied index,
    once that is ``snapshot_entries`` past the last compaction."""
    target = applied - keep_entries
    if target <= snap_index or target - snap_index < snapshot_entries:
        return None
    return target


def byte_compaction_index(core: RaftCore, applied: int, keep_entries: int,
                          snapshot_bytes: int) -> int | None:
    """Where to compact the log now that its entries hold ``snapshot_bytes`` or more, if at
    all: behind the applied index, keeping at most ``keep_entries`` entries and a quarter
    of the bound (a few big entries must not keep the memory the bound is there to free)."""
    if snapshot_bytes <= 0 or core.log_bytes < snapshot_bytes or applied <= core.snap_index:
        return None
    quarter = snapshot_bytes // 4
    target, kept = applied, 0
    while target > core.snap_index and applied - target < keep_entries:
        kept += len(core.log[target - core.snap_index - 1].data)
        if kept > quarter:
            break
        target -= 1
    # Each compaction syncs the store and the log: when most of the bytes are not applied yet
    # (a follower catching up), wait until it frees a quarter of the bound, not one entry.
    if target <= core.snap_index or _bytes_upto(core, target, quarter) < quarter:
        return None
    return target


def _bytes_upto(core: RaftCore, index: int, enough: int) -> int:
    """Bytes of the log's entries up to ``index``, counted only until they reach ``enough``."""
    total = 0
    for entry in core.log[:index - core.snap_index]:
        total += len(entry.data)
        if total >= enough:
            break
    return total


def compact(core: RaftCore, index: int, sync_state_machine: Callable[[], None],
            compact_log: Callable[[int, int], None]) -> bool:
    """Compact the log to an applied ``index``: the state machine is synced first, since
    after this only it holds those entries.  False if there was nothing to compact."""
    term = core.term_at(index)
    if term is None or index <= core.snap_index or index > core.applied:
        return False
    sync_state_machine()
    compact_log(index, term)
    core.compact(index)
    return True


def snapshot_sending_allowed(core: RaftCore, term: int) -> bool:
    """A snapshot stream goes on (and its end is reported to the core) only while this node
    still leads the term the stream started in."""
    return core.is_leader and core.term == term


"""The Raft driver's state machine: the store and the change feed behind Raft's types.

The only kv module that knows Raft.  Entries become store slots (a CONFIG entry's
configuration travels as an opaque blob, encoded by Raft's own function), snapshot
positions become ``SnapshotMeta``, and every applied batch is published to the change
feed once the store has written it.
"""
from __future__ import annotations

import logging
from typing import Callable, Iterable, Iterator, Sequence

from gevent.threadpool import ThreadPool

from axon.kv.authstate import AuthState
from axon.kv.commands import Result
from axon.kv.feed import ChangeFeed, RawChange
from axon.kv.leases import LeaseTable
from axon.kv.store import Applied, Slot, Store, StoreError
from axon.raft.core import decode_config_bytes, encode_config_bytes
from axon.raft.types import ClusterConfig, Entry, EntryKind, SnapshotMeta

log = logging.getLogger(__name__)


# A batch this big is written to LevelDB from a worker thread: LevelDB holds a write back while
# a compaction catches up (100 ms and more under a stream of 1 MiB values), and the event loop
# must not wait with it.  Small batches stay on the loop: a thread hand-off would cost more.
OFFLOAD_APPLY_BYTES = 256 << 10


class KVStateMachine:
    """The Raft driver's ``StateMachine`` over a Store, publishing what it applies to ``feed``.

    ``feed`` must start at the store's applied index (a new one does when not given).
    """

    def __init__(self, store: Store, feed: ChangeFeed | None = None) -> None:
        if feed is None:
            feed = ChangeFeed(store.applied_index)
        elif feed.last_revision != store.applied_index:
            raise ValueError(f"the feed is at revision {feed.last_revision}, "
                             f"the store at {store.applied_index}")
        self.store = store
        self.feed = feed
        self._writer: ThreadPool | None = None   # one thread for big writes, made on first use
        self._config_blob = store.config_blob
        self._config = _config_from_blob(self._config_blob)   # a corrupt one fails here, at start-up

    @property
    def applied_index(self) -> int:
        return self.store.applied_index

    @property
    def applied_term(self) -> int:
        return self.store.applied_term

    @property
    def config(self) -> ClusterConfig | None:
        """The configuration of the last applied CONFIG entry (or of an installed snapshot)."""
        blob = self.store.config_blob
        if blob is not self._config_blob:
            self._config, self._config_blob = _config_from_blob(blob), blob
        return self._config

    @property
    def auth(self) -> AuthState:
        """The replicated auth state as of the applied index (reloaded by a snapshot install)."""
        return self.store.auth

    @property
    def leases(self) -> LeaseTable:
        """The replicated lease table as of the applied index (reloaded by a snapshot install)."""
        return self.store.leases

    def apply(self, entries: Sequence[Entry]) -> list[list[Result]]:
        """Apply committed entries (one list of command results each) and publish their changes."""
        changes: list[RawChange] = []
        big = sum(len(entry.data) for entry in entries) >= OFFLOAD_APPLY_BYTES
        results = self.store.apply([_slot(entry) for entry in entries], changes,
                                   self.write_in_thread if big else None)
        self.feed.publish(self.store.applied_index, changes)
        return results

    def write_in_thread(self, write: Callable[[], None]) -> None:
        """Run a store write in this machine's one writer thread (one thread: one malloc arena)."""
        if self._writer is None:
            self._writer = ThreadPool(1)
        self._writer.apply(write)

    def sync(self) -> None:
        """Make everything applied durable; in the writer thread, as a sync can take tens of ms."""
        self.write_in_thread(self.store.sync)

    def reopen(self) -> None:
        self.store.reopen()

    def snapshot_reader(self, chunk_size: int = 1 << 20) -> tuple[SnapshotMeta, Iterator[bytes]]:
        at, stream = self.store.snapshot_reader(chunk_size)
        try:
            config = _config_from_blob(at.config_blob)
        except BaseException:
            stream.close()
            raise
        return SnapshotMeta(at.index, at.term, config or ClusterConfig()), stream

    def restore(self, meta: SnapshotMeta, chunks: Iterable[bytes]) -> None:
        """Install a snapshot (the driver calls this in a worker thread); subscribers get a Reset."""
        before = self.store.applied_index
        try:
            self.store.restore(Applied(meta.index, meta.term, _blob_from_config(meta.config)), chunks)
        except BaseException:
            if self.store.applied_index != before:
                self.feed.close("a snapshot install failed and left the local store empty")
            raise
        self.feed.reset(meta.index)

    def close(self) -> None:
        """Close the feed, then the store."""
        self.feed.close("the store is closed")
        if self._writer is not None:
            self._writer.join()   # a write or sync under way there must not outlive the store
            self._writer.kill()
        self.store.close()


def _slot(entry: Entry) -> Slot:
    if entry.kind == EntryKind.NORMAL:
        return Slot(entry.index, entry.term, commands=entry.data)
    if entry.kind == EntryKind.CONFIG:
        return Slot(entry.index, entry.term, config_blob=_config_entry_blob(entry))
    if entry.kind != EntryKind.NOOP:
        log.error("entry %d has unknown kind %r; skipped", entry.index, entry.kind)
    return Slot(entry.index, entry.term)


def _config_entry_blob(entry: Entry) -> bytes | None:
    """A CONFIG entry's configuration as the store keeps it; None (logged) when it does not decode."""
    try:
        # Re-encoded, so the stored blob is canonical: restore compares blobs as bytes.
        return encode_config_bytes(decode_config_bytes(entry.data))
    except Exception as exc:   # decode_config trusts its input's shape
        log.error("entry %d holds an undecodable config (%s); skipped", entry.index, exc)
        return None


def _blob_from_config(config: ClusterConfig) -> bytes | None:
    # A store that never applied a configuration snapshots with SnapshotMeta's empty default.
    if not config.voters and not config.learners:
        return None
    return encode_config_bytes(config)


def _config_from_blob(blob: bytes | None) -> ClusterConfig | None:
    if blob is None:
        return None
    try:
        return decode_config_bytes(blob)
    except Exception as exc:   # decode_config trusts its input's shape
        raise StoreError(f"store meta is corrupt (config): {exc}") from exc

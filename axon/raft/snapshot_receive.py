"""Receiving a snapshot: staging its chunks in a file, then installing it into the store.

Which chunks to stage and when a stream is whole are ``rules.SnapshotStaging``'s decisions;
this module does the file and store I/O.  The install runs in a worker thread (a large store
takes a while) and the node keeps taking messages meanwhile; when it ends, the core decides
whether the snapshot replaces the log (``rules.finish_install``).
"""
from __future__ import annotations

import logging
import os
from typing import BinaryIO, Iterator

import gevent

from axon.raft.core import RaftCore
from axon.raft.interfaces import StateMachine
from axon.raft.rules import Durability, SnapshotStaging, Synced, finish_install
from axon.raft.types import Message, SnapshotMeta
from axon.raft.wal import WAL

log = logging.getLogger("axon.raft")

READ_BLOCK = 1 << 20


class SnapshotReceiver:
    """Stages one stream at a time in ``path`` and installs it when the core wants it."""

    def __init__(self, core: RaftCore, sm: StateMachine, wal: WAL, durability: Durability,
                 path: str) -> None:
        self.core = core
        self.sm = sm
        self.wal = wal
        self.durability = durability
        self.path = path
        self.staging = SnapshotStaging()
        self._file: BinaryIO | None = None

    def chunk(self, msg: Message) -> SnapshotMeta | None:
        """Stage one received chunk; returns the snapshot to install once a stream is whole."""
        step = self.staging.chunk(msg)
        if step is None:
            return None
        if step.restart:
            self.close()
            self._file = open(self.path, "wb")
        assert self._file is not None
        self._file.write(step.data)
        if step.complete is None:
            return None
        self.close()
        return step.complete if self.staging.received(self.core, step.complete, msg.src) else None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def install(self, meta: SnapshotMeta) -> Synced:
        """Restore the store from the staged file (in a worker thread), then let the core
        decide about the log and compact the WAL to match; returns what that sync allows."""
        log.info("installing snapshot at index %d", meta.index)
        try:
            gevent.get_hub().threadpool.apply(self.sm.restore, (meta, self._blocks()))
        except BaseException:
            self.staging.installing = False
            raise
        # No switch from here to the WAL's compaction: appends may have arrived during the
        # install, and acknowledged entries must not be dropped.
        done = finish_install(self.core, self.staging, self.durability, meta, self._compact_wal)
        os.unlink(self.path)
        log.info("snapshot at index %d installed", meta.index)
        return done

    def _compact_wal(self, index: int, term: int, drop_newer: bool) -> None:
        self.wal.compact(index, term, drop_newer=drop_newer)

    def _blocks(self) -> Iterator[bytes]:
        with open(self.path, "rb") as f:
            while block := f.read(READ_BLOCK):
                yield block

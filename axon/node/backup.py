"""Restoring a backup file (axon/kv/snapshot_file.py) into a new data dir (``axon snapshot restore``).

The file is checked whole first (its SHA-256, its framing), so a damaged one is refused
before anything is written.  Then the store is filled from the file's snapshot stream by the
store's own Raft snapshot install, and the data dir ends as a recovery does
(axon/node/recover.py): this node the only voter, the log starting after the data set, a new
cluster id.  ``axon serve`` with the same node id, data dir and addresses then runs it as a
one-node cluster holding every key at its revision; other nodes join it with ``--join``.
"""
from __future__ import annotations

import os
import shutil
from typing import BinaryIO, Callable

from axon.config import ConfigError
from axon.kv.snapshot_file import SnapshotFileError, SnapshotFileReader, SnapshotHeader
from axon.kv.store import Applied, Store, StoreError
from axon.node.cluster_id import ClusterId
from axon.node.datadir import claim_data_dir
from axon.node.recover import STORE_DIR, WAL_DIR, Recovered, RecoverError, seal_sole_voter
from axon.raft.types import Member
from axon.raft.wal import WAL, WalError

Progress = Callable[[int], None]   # called with the bytes read since the last call


def read_header(path: str) -> SnapshotHeader:
    """The header of a backup file (SnapshotFileError when it is not one)."""
    with _open(path) as f:
        return SnapshotFileReader(f).header


def verify_file(path: str, progress: Progress | None = None) -> SnapshotHeader:
    """Check a backup file whole (framing, SHA-256, nothing after it); returns its header."""
    with _open(path) as f:
        reader = _reader(f, progress)
        reader.verify()
        return reader.header


def restore(path: str, data_dir: str, node_id: str, member: Member,
            progress: Progress | None = None) -> Recovered:
    """Write a new data dir holding the backup's data set, with ``node_id`` its only voter.

    ``data_dir`` must not exist or be empty; on failure it is removed again.
    """
    os.umask(0o077)
    header = verify_file(path)
    if os.path.exists(data_dir) and (not os.path.isdir(data_dir) or os.listdir(data_dir)):
        raise RecoverError(f"data dir {data_dir} exists and is not empty: restore writes a new one")
    try:
        claim_data_dir(data_dir, node_id)
        with Store.open(os.path.join(data_dir, STORE_DIR)) as store:
            _fill(store, path, header, progress)
            with WAL.open(os.path.join(data_dir, WAL_DIR)) as wal:
                term = seal_sole_voter(store, wal, node_id, member)
            revision = store.applied_index
        cluster_id = ClusterId(data_dir).mint()
    except BaseException as exc:
        shutil.rmtree(data_dir, ignore_errors=True)
        if isinstance(exc, (ConfigError, StoreError, WalError, SnapshotFileError)):
            raise RecoverError(str(exc)) from None
        raise
    return Recovered(node_id, member, revision, term, cluster_id, header.cluster_id)


def _fill(store: Store, path: str, header: SnapshotHeader, progress: Progress | None) -> None:
    """The store from the file's stream (read again: the check above read it once already)."""
    at = Applied(header.revision, header.applied_term, header.config_blob)
    with _open(path) as f:
        reader = _reader(f, progress)
        store.restore(at, reader.chunks())
    count = store.count()
    if count != header.keys:
        raise RecoverError(f"the backup holds {count} keys, its header says {header.keys}")


def _reader(f: BinaryIO, progress: Progress | None) -> SnapshotFileReader:
    return SnapshotFileReader(Tap(f, lambda data: progress(len(data))) if progress else f)


def _open(path: str) -> BinaryIO:
    try:
        return open(path, "rb")
    except OSError as exc:
        raise SnapshotFileError(f"cannot read {path}: {exc.strerror}") from None


class Tap:
    """A readable that shows each piece it reads to ``seen`` (a progress bar, a copy on disk)."""

    def __init__(self, source: BinaryIO, seen: Callable[[bytes], None]) -> None:
        self._source = source
        self._seen = seen

    def read(self, n: int) -> bytes:
        data = self._source.read(n)
        self._seen(data)
        return data

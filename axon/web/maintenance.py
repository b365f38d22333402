"""``GET /maintenance/snapshot``: a consistent backup of the data set, streamed (admin only).

The node first waits until it has applied everything the leader had committed when the
request came (a ReadIndex, asked of the leader by a follower), then freezes its store
(a LevelDB snapshot) and streams the backup file (axon/kv/snapshot_file.py) from it: the
store's own Raft snapshot stream in frames, then a SHA-256.  Reading and packing a megabyte
of records runs in a worker thread, and the server pulls the next piece only once the last
one is in the socket, so a million keys stream in bounded memory without stalling the loop.
"""
from __future__ import annotations

import contextlib
import threading
from datetime import datetime, timezone
from typing import Callable, Iterator

import gevent

from axon.api.auth import Decision
from axon.api.errors import Unavailable, from_raft
from axon.kv.snapshot_file import SnapshotHeader, file_chunks
from axon.kv.store import Store, StoreError
from axon.raft.errors import RaftError
from axon.web.routes import Route
from axon.web.wire import Request, Response

SNAPSHOT_PATH = "/maintenance/snapshot"
CHUNK_BYTES = 1 << 20
MAX_STREAMS = 2          # each pins a LevelDB snapshot and a worker thread for as long as it runs
CONTENT_TYPE = "application/octet-stream"


def maintenance_routes(store: Store, wait_applied: Callable[[int, float], None], timeout: float,
                       read_now: Callable[[Request], int], node_id: str,
                       cluster_id: Callable[[], str | None]) -> list[Route]:
    """The backup route; ``read_now(req)`` is the first revision after what the leader has
    committed now, ``wait_applied(index, timeout)`` waits until this node applied ``index``."""
    slots = threading.BoundedSemaphore(MAX_STREAMS)

    def snapshot(req: Request) -> Response:
        wanted = read_now(req) - 1
        try:
            wait_applied(wanted, timeout)
        except RaftError as exc:
            raise from_raft(exc, None) from None
        if not slots.acquire(blocking=False):
            raise Unavailable(f"{MAX_STREAMS} snapshots are being streamed already; retry later",
                              retry_after=10)
        try:
            body = _SnapshotBody(store, node_id, cluster_id(), slots.release)
        except BaseException:
            slots.release()
            raise
        return Response(200, [("Content-Type", CONTENT_TYPE), ("Cache-Control", "no-store"),
                              ("X-Axon-Revision", str(body.header.revision)),
                              ("X-Axon-Keys", str(body.header.keys))], stream=body)

    return [Route("GET", SNAPSHOT_PATH, snapshot, Decision.ADMIN)]


class _SnapshotBody:
    """The backup file's pieces from a frozen store; ``close()`` (the server always calls it)
    releases the LevelDB snapshot and the stream's slot, whether or not it was read."""

    def __init__(self, store: Store, node_id: str, cluster_id: str | None,
                 release: Callable[[], None]) -> None:
        self._release = release
        self._pool = gevent.get_hub().threadpool
        try:
            at, self._stream = self._pool.apply(store.snapshot_reader, (CHUNK_BYTES,))
        except StoreError as exc:
            raise Unavailable(f"cannot snapshot the store: {exc}") from None
        try:
            keys = self._pool.apply(self._stream.count)
        except BaseException as exc:
            self._stream.close()
            if isinstance(exc, StoreError):
                raise Unavailable(f"cannot snapshot the store: {exc}") from None
            raise
        self.header = SnapshotHeader(
            cluster_id=cluster_id, node_id=node_id, revision=at.index, applied_term=at.term, keys=keys,
            config_blob=at.config_blob,
            created=datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"))
        self._pieces = file_chunks(self.header, self._stream)
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        # Each piece is read, packed and checksummed in a worker thread: that is where the CPU goes.
        while (piece := self._pool.apply(next, (self._pieces, None))) is not None:
            yield piece

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                # A client that leaves while a worker still reads the stream: the stream's own
                # __del__ releases the LevelDB snapshot once that read is over.
                with contextlib.suppress(ValueError):
                    self._stream.close()
            finally:
                self._release()


"""Streaming the state machine's snapshot to followers whose next entry was compacted away.

One greenlet per follower reads the store's frozen snapshot in chunks (in a worker thread),
sends each as a SNAPSHOT message, holds the stream to ``rate`` bytes/s and to a short
transport backlog, and stops as soon as this node no longer leads the term it started in.
"""
from __future__ import annotations

import logging
import time
from typing import Callable

import gevent

from axon.raft.core import RaftCore
from axon.raft.interfaces import StateMachine, Transport
from axon.raft.rules import snapshot_sending_allowed
from axon.raft.types import Message, MsgType, SnapshotMeta

log = logging.getLogger("axon.raft")

SNAPSHOT_CHUNK = 1 << 20
MAX_BACKLOG = 4           # chunks queued in the transport before the stream waits
BACKLOG_POLL = 0.005


class SnapshotSender:
    """At most one stream per follower at a time."""

    def __init__(self, node_id: str, core: RaftCore, sm: StateMachine, transport: Transport,
                 rate: float, wake: Callable[[], None]) -> None:
        self.id = node_id
        self.core = core
        self.sm = sm
        self.transport = transport
        self.rate = rate          # bytes/s; 0: as fast as possible
        self.wake = wake          # the driver's loop has core output to look at
        self._streams: dict[str, gevent.Greenlet] = {}
        self._stopped = False

    def start(self, peer: str) -> None:
        """Stream the current snapshot to peer, unless a stream to it is under way."""
        stream = self._streams.get(peer)
        if stream is not None and not stream.dead:
            return
        self._streams[peer] = gevent.spawn(self._stream, peer, self.core.term)

    def stop(self) -> None:
        self._stopped = True
        gevent.killall(list(self._streams.values()), timeout=2)

    def _allowed(self, term: int) -> bool:
        return not self._stopped and snapshot_sending_allowed(self.core, term)

    def _stream(self, peer: str, term: int) -> None:
        ok = False
        try:
            ok = self._send_all(peer, term)
        except Exception as exc:
            log.warning("snapshot to %s failed: %s", peer, exc)
        finally:
            if self._allowed(term):
                self.core.snapshot_send_done(peer, ok)
                self.wake()

    def _send_all(self, peer: str, term: int) -> bool:
        meta, chunks = self.sm.snapshot_reader(SNAPSHOT_CHUNK)
        meta = self.core.snapshot_meta(meta.index) if meta.config is None else meta
        log.info("sending snapshot at index %d to %s", meta.index, peer)
        offset = 0
        started = time.monotonic()
        pool = gevent.get_hub().threadpool
        # Reading and packing a megabyte of records takes tens of milliseconds; in a worker
        # thread it shares the CPU with the hub instead of stalling every write meanwhile.
        while (chunk := pool.apply(next, (chunks, None))) is not None:
            if not self._allowed(term):
                return False
            self._send_chunk(peer, term, meta, offset, chunk, False)
            offset += len(chunk)
            self._pace(started, offset)
        self._send_chunk(peer, term, meta, offset, b"", True)
        log.info("snapshot at index %d sent to %s (%d bytes)", meta.index, peer, offset)
        return True

    def _send_chunk(self, peer: str, term: int, meta: SnapshotMeta, offset: int, data: bytes,
                    done: bool) -> None:
        while self.transport.backlog(peer) > MAX_BACKLOG and self._allowed(term):
            gevent.sleep(BACKLOG_POLL)   # bounded memory: wait for the connection to drain
        self.transport.send(Message(type=MsgType.SNAPSHOT, src=self.id, dst=peer, term=term,
                                    snapshot=meta, offset=offset, data=data, done=done))

    def _pace(self, started: float, sent: int) -> None:
        """Hold the stream to ``rate``: sending a large snapshot flat out costs the leader and
        the receiver enough CPU and disk to halve the cluster's write rate."""
        if self.rate > 0:
            ahead = started + sent / self.rate - time.monotonic()
            if ahead > 0:
                gevent.sleep(ahead)

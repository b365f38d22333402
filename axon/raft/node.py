"""The gevent driver: ties the pure Raft core to the WAL, the transport and the state machine.

Greenlets, each with one job:
- ticker: advances the core's logical clock;
- loop: turns core output (``Ready``) into WAL writes, sends and work for the others;
- syncer: group commit — one fdatasync (in a worker thread) covers every write queued meanwhile,
  then the messages that had to wait for durability go out;
- applier: applies committed entries to the state machine, answers proposals and reads,
  installs snapshots and compacts the log.
"""
from __future__ import annotations

import heapq
import itertools
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Protocol, Sequence

import gevent
from gevent.event import AsyncResult, Event

from axon.raft.core import (ConfChange, RaftCore, RaftOptions, Ready,
                   bootstrap_entry, decode_config_bytes)
from axon.raft.errors import Dropped, NotLeader, Stopped, Timeout
from axon.raft.types import ClusterConfig, Entry, EntryKind, HardState, Member, Message, MsgType, SnapshotMeta
from axon.raft.wal import WAL, SyncToken

log = logging.getLogger("axon.raft")


class StateMachine(Protocol):
    """What the driver needs of the store (``axon.kv.store.Store`` implements it)."""
    applied_index: int
    applied_term: int
    config: ClusterConfig | None

    def apply(self, entries: Sequence[Entry]) -> list[list[Any]]: ...
    def sync(self) -> None: ...
    def snapshot_reader(self, chunk_size: int = ...) -> tuple[SnapshotMeta, Iterator[bytes]]: ...
    def restore(self, meta: SnapshotMeta, chunks: Any) -> None: ...


class Transport(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def set_peers(self, peers: dict[str, str]) -> None: ...
    def send(self, msg: Message) -> None: ...
    def backlog(self, peer_id: str) -> int: ...


@dataclass
class _Proposal:
    """A client's items inside one proposed entry."""
    result: AsyncResult
    start: int
    count: int


@dataclass
class _Pending:
    term: int
    parts: list[_Proposal] = field(default_factory=list)


SNAPSHOT_CHUNK = 1 << 20
GIL_SWITCH_INTERVAL = 0.0002
MAX_ENTRY_BYTES = 1 << 20
# fdatasync runs on the hub's own thread while it typically takes less than this: handing it to
# a worker thread and back (two thread wake-ups, two GIL hand-offs) cost more than the sync.
INLINE_SYNC_BELOW = 0.001


class RaftNode:
    """One Raft member on gevent. Thread-unsafe by design: everything runs on the hub's thread."""

    def __init__(self, node_id: str, member: Member, wal_dir: str, state_machine: StateMachine,
                 make_transport: Callable[[Callable[[Message], None]], Transport], *,
                 encode_batch: Callable[[list], bytes], item_size: Callable[[Any], int],
                 bootstrap: bool = False,
                 options: RaftOptions | None = None, tick_interval: float = 0.05,
                 snapshot_entries: int = 20000, keep_entries: int = 1000, snapshot_rate: float = 0.0,
                 staging_path: str | None = None) -> None:
        self.id = node_id
        self.member = member
        self.sm = state_machine
        self.encode_batch = encode_batch
        self.item_size = item_size   # rough encoded size of one item: bounds an entry's size
        self.tick_interval = tick_interval
        self.snapshot_entries = snapshot_entries
        self.keep_entries = keep_entries
        self.snapshot_rate = snapshot_rate   # bytes/s for streaming a snapshot; 0: as fast as possible
        self.staging_path = staging_path or os.path.join(wal_dir, "snapshot.incoming")
        self.wal = WAL.open(wal_dir)
        self.bootstrapped = self._maybe_bootstrap(bootstrap)
        self.core = self._recover_core(options or RaftOptions())
        self.transport = make_transport(self.receive)
        self._durable_index = self.wal.last_index()
        self._applied = self.sm.applied_index
        self._wake = Event()
        self._sync_wake = Event()
        self._apply_wake = Event()
        self._sync_items: list[tuple[list[Message], tuple[int, int] | None]] = []
        self._unsynced = False
        self._sync_avg = 0.0   # moving average of fdatasync seconds
        self._apply_queue: list[Any] = []
        self._queued_items: list[tuple[Any, AsyncResult]] = []
        self._pending: dict[int, _Pending] = {}
        self._read_queue: list[AsyncResult] = []
        self._reads: dict[int, list[AsyncResult]] = {}
        self._read_ids = itertools.count(1)
        self._applied_waiters: list[tuple[int, int, AsyncResult]] = []
        self._waiter_ids = itertools.count()
        self._staging: dict[str, Any] | None = None
        self._installing = False
        self._snapshot_senders: dict[str, gevent.Greenlet] = {}
        self._peer_hints: dict[str, str] = {}
        self._greenlets: list[gevent.Greenlet] = []
        self._last_seen = (self.core.role, self.core.leader, self.core.term)
        self._config_seen: ClusterConfig | None = None
        self.stopped = False
        self.fatal: Callable[[BaseException], None] = self._default_fatal

    # ------------------------------------------------------------------ start-up
    def _maybe_bootstrap(self, bootstrap: bool) -> bool:
        has_state = (self.wal.last_index() > 0 or self.wal.compacted[0] > 0
                     or self.sm.applied_index > 0 or self.wal.hard_state.term > 0)
        if not bootstrap:
            return False
        if has_state:
            log.info("data directory has cluster state; --bootstrap changes nothing")
            return False
        self.wal.append([bootstrap_entry(self.id, self.member)], HardState(1, None))
        self.wal.begin_sync().run()
        log.info("bootstrapped a new one-node cluster as %s", self.id)
        return True

    def _recover_core(self, options: RaftOptions) -> RaftCore:
        compacted_index, compacted_term = self.wal.compacted
        sm_index = self.sm.applied_index
        if sm_index < compacted_index:
            raise RuntimeError(
                f"store is at index {sm_index} but the log was compacted to {compacted_index}; "
                "the data directory is damaged (remove it and re-join this node)")
        if sm_index > self.wal.last_index():
            # The store holds a snapshot newer than the log (crash right after an install).
            self.wal.compact(sm_index, self.sm.applied_term, drop_newer=True)
        snapshot = SnapshotMeta(sm_index, self.sm.applied_term, self.sm.config or ClusterConfig())
        entries = [e for e in self.wal.entries() if e.index > sm_index]
        return RaftCore(self.id, hard_state=self.wal.hard_state, snapshot=snapshot,
                        entries=entries, applied=sm_index, options=options)

    def start(self) -> None:
        # The fdatasync runs in a worker thread; when it returns, that thread needs the GIL to
        # hand the result back, and by default it waits up to 5 ms for the busy hub thread to
        # let go of it: one such wait per commit on leader and follower doubled write latency.
        sys.setswitchinterval(min(sys.getswitchinterval(), GIL_SWITCH_INTERVAL))
        self._update_peers()
        self.transport.start()
        for fn in (self._ticker, self._loop, self._syncer, self._applier):
            self._greenlets.append(gevent.spawn(self._guard, fn))
        self._wake.set()

    def stop(self) -> None:
        """Stop all activity and close the log cleanly (idempotent)."""
        if self.stopped:
            return
        self.stopped = True
        gevent.killall(self._greenlets + list(self._snapshot_senders.values()), timeout=2)
        self.transport.stop()
        try:
            self.wal.begin_sync().run()
        finally:
            self.wal.close()
        self._fail_all(Stopped("node is shutting down"))

    def _guard(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except gevent.GreenletExit:
            raise
        except BaseException as exc:   # a broken invariant or disk: stop rather than diverge
            log.critical("raft %s failed: %r", fn.__name__, exc, exc_info=True)
            self.fatal(exc)

    def _default_fatal(self, exc: BaseException) -> None:
        os._exit(70)

    # ------------------------------------------------------------------ inputs
    def receive(self, msg: Message) -> None:
        """Called by the transport for every message addressed to this node."""
        if self.stopped:
            return
        self.core.step(msg)
        self._wake.set()

    def _ticker(self) -> None:
        while True:
            gevent.sleep(self.tick_interval)
            self.core.tick()
            self._wake.set()

    def propose(self, items: list, timeout: float) -> list:
        """Replicate items (state-machine commands) and return their results once applied."""
        self._require_leader()
        result = AsyncResult()
        self._queued_items.append((items, result))
        self._wake.set()
        return self._wait(result, timeout, "write")

    def read_barrier(self, timeout: float) -> None:
        """Return once a linearizable read may be served from the local state machine."""
        self._require_leader()
        result = AsyncResult()
        self._read_queue.append(result)
        self._wake.set()
        deadline = gevent.get_hub().loop.now() + timeout
        index = self._wait(result, timeout, "read")
        self.wait_applied(index, max(0.0, deadline - gevent.get_hub().loop.now()))

    def wait_applied(self, index: int, timeout: float) -> None:
        if self._applied >= index:
            return
        result = AsyncResult()
        heapq.heappush(self._applied_waiters, (index, next(self._waiter_ids), result))
        self._wait(result, timeout, "read")

    def change_membership(self, change: ConfChange, timeout: float) -> None:
        """Propose one membership change and wait until it is applied."""
        self._require_leader()
        try:
            index, term = self.core.propose_conf_change(change)
        except NotLeader:
            self._require_leader()
            raise
        result = AsyncResult()
        self._pending[index] = _Pending(term, [_Proposal(result, 0, 0)])
        self._wake.set()
        self._wait(result, timeout, "membership change")

    def transfer_leadership(self, target: str) -> None:
        self._require_leader()
        self.core.transfer_leadership(target)
        self._wake.set()

    def add_peer_hints(self, peers: dict[str, str]) -> None:
        """Raft addresses learned outside the log (a joiner learns the cluster from the join answer)."""
        self._peer_hints.update({k: v for k, v in peers.items() if k != self.id})
        self._update_peers()

    @property
    def leader_id(self) -> str | None:
        """The leader this node knows of (None while there is none)."""
        return self.core.leader

    @property
    def is_leader(self) -> bool:
        return self.core.is_leader

    def _require_leader(self) -> None:
        if self.stopped:
            raise Stopped("node is shutting down")
        if not self.core.is_leader or self.core.transferee is not None:
            raise NotLeader(self.core.leader, self.leader_http())

    def _wait(self, result: AsyncResult, timeout: float, what: str) -> Any:
        try:
            return result.get(timeout=timeout)
        except gevent.Timeout:
            raise Timeout(f"{what} timed out after {timeout:g}s (no quorum?); outcome unknown",
                          self.core.leader) from None

    # ------------------------------------------------------------------ main loop
    def _loop(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            self._flush_proposals()
            self._flush_reads()
            while True:
                rd = self.core.ready()
                if rd.empty():
                    break
                self._handle_ready(rd)
            self._observe()

    def _flush_proposals(self) -> None:
        if not self._queued_items:
            return
        queued, self._queued_items = self._queued_items, []
        batches: list[tuple[list, list[tuple[AsyncResult, int, int]]]] = [([], [])]
        size = 0
        for items, result in queued:
            entry_items, parts = batches[-1]
            if entry_items and size > MAX_ENTRY_BYTES:
                batches.append(([], []))
                entry_items, parts = batches[-1]
                size = 0
            parts.append((result, len(entry_items), len(items)))
            entry_items.extend(items)
            size += sum(map(self.item_size, items))
        try:
            first, term = self.core.propose([self.encode_batch(items) for items, _ in batches])
        except NotLeader:
            err = NotLeader(self.core.leader, self.leader_http())
            for _, result in queued:
                result.set_exception(err)
            return
        for offset, (_, parts) in enumerate(batches):
            self._pending[first + offset] = _Pending(term, [_Proposal(r, s, c) for r, s, c in parts])

    def _flush_reads(self) -> None:
        if not self._read_queue:
            return
        ctx = next(self._read_ids)
        self._reads[ctx], self._read_queue = self._read_queue, []
        self.core.read_index(ctx)

    def _handle_ready(self, rd: Ready) -> None:
        # Messages that need no durability first (a leader's appends above all: Raft lets the
        # leader write its log in parallel with its followers) leave before the local write.
        for msg in rd.messages:
            self.transport.send(msg)
        if rd.entries or rd.hard_state:
            self.wal.append(rd.entries, rd.hard_state)
            self._unsynced = True
        last = (rd.entries[-1].index, rd.entries[-1].term) if rd.entries else None
        if rd.persist_messages or last or rd.hard_state:
            self._sync_items.append((rd.persist_messages, last))
            self._sync_wake.set()
        if rd.committed:
            self._apply_queue.append(rd.committed)
            self._apply_wake.set()
        for rs in rd.read_states:
            for result in self._reads.pop(rs.ctx, ()):
                result.set(rs.index)
        if rd.failed_reads:
            err = NotLeader(self.core.leader, self.leader_http())
            for ctx in rd.failed_reads:
                for result in self._reads.pop(ctx, ()):
                    result.set_exception(err)
        for peer in rd.snapshot_sends:
            self._start_snapshot_send(peer)
        for chunk in rd.snapshot_chunks:
            self._stage_chunk(chunk)

    def _observe(self) -> None:
        """Log role changes and keep transport peers in line with the configuration."""
        seen = (self.core.role, self.core.leader, self.core.term)
        if seen != self._last_seen:
            role, leader, term = seen
            if role.value == "leader" and self._last_seen[0].value != "leader":
                log.info("elected leader for term %d", term)
            elif self._last_seen[0].value == "leader" and role.value != "leader":
                log.info("stepped down as leader in term %d", term)
            elif leader and leader != self._last_seen[1]:
                log.info("following leader %s in term %d", leader, term)
            self._last_seen = seen
        if self.core.config is not self._config_seen:
            self._update_peers()

    def _update_peers(self) -> None:
        config = self.core.config
        self._config_seen = config
        peers = dict(self._peer_hints)
        peers.update({nid: m.raft for nid, m in config.members().items() if nid != self.id})
        self.transport.set_peers(peers)

    # ------------------------------------------------------------------ durability
    def _syncer(self) -> None:
        while True:
            self._sync_wake.wait()
            self._sync_wake.clear()
            if not self._sync_items:
                continue
            items, self._sync_items = self._sync_items, []
            if self._unsynced:
                self._unsynced = False
                token = self.wal.begin_sync()
                self._run_sync(token)
                self._durable_index = token.covers_index
                self._apply_wake.set()
            last = None
            for _, entry_pos in items:
                last = entry_pos or last
            if last is not None:
                self.core.persisted(*last)
            for messages, _ in items:
                for msg in messages:
                    self.transport.send(msg)
            self._wake.set()

    def _run_sync(self, token: SyncToken) -> None:
        """fdatasync inline while syncs are quick, in a worker thread once they are slow.

        Inline blocks every greenlet for the sync; a worker lets them run meanwhile, which
        only pays off when the disk is slow.  The moving average decides.
        """
        def timed() -> float:
            started = time.perf_counter()
            token.run()
            return time.perf_counter() - started
        if self._sync_avg < INLINE_SYNC_BELOW:
            took = timed()
        else:
            took = gevent.get_hub().threadpool.apply(timed)
        self._sync_avg += 0.2 * (took - self._sync_avg)

    # ------------------------------------------------------------------ applying
    def _applier(self) -> None:
        while True:
            self._apply_wake.wait()
            self._apply_wake.clear()
            while self._apply_queue:
                work = self._apply_queue[0]
                if isinstance(work, SnapshotMeta):
                    self._apply_queue.pop(0)
                    self._install_snapshot(work)
                    continue
                ready = [e for e in work if e.index <= self._durable_index]
                if not ready:
                    break   # wait for the syncer: the store never gets ahead of the local log
                if len(ready) < len(work):
                    self._apply_queue[0] = work[len(ready):]
                else:
                    self._apply_queue.pop(0)
                self._apply(ready)
            self._maybe_compact()

    def _apply(self, entries: list[Entry]) -> None:
        entries = [e for e in entries if e.index > self._applied]
        if not entries:
            return
        results = self.sm.apply(entries)
        for entry, res in zip(entries, results):
            pending = self._pending.pop(entry.index, None)
            if pending is not None:
                self._answer(pending, entry, res)
            if entry.kind == EntryKind.CONFIG:
                config = decode_config_bytes(entry.data)
                log.info("membership applied at %d: voters=%s learners=%s", entry.index,
                         sorted(config.voters), sorted(config.learners))
        self._applied = entries[-1].index
        self._release_applied_waiters()

    def _answer(self, pending: _Pending, entry: Entry, results: list) -> None:
        if entry.term != pending.term:
            err = Dropped("leadership changed before the write committed; it was not applied")
            for part in pending.parts:
                part.result.set_exception(err)
            return
        for part in pending.parts:
            part.result.set(results[part.start:part.start + part.count])

    def _release_applied_waiters(self) -> None:
        while self._applied_waiters and self._applied_waiters[0][0] <= self._applied:
            _, _, result = heapq.heappop(self._applied_waiters)
            result.set(None)

    def _maybe_compact(self) -> None:
        target = self._applied - self.keep_entries
        if target - self.core.snap_index < self.snapshot_entries:
            return
        term = self.core.term_at(target)
        if term is None:
            return
        gevent.get_hub().threadpool.apply(self.sm.sync)
        self.wal.compact(target, term)
        self.core.compact(target)
        log.info("log compacted to index %d", target)

    # ------------------------------------------------------------------ snapshots
    def _start_snapshot_send(self, peer: str) -> None:
        if peer in self._snapshot_senders and not self._snapshot_senders[peer].dead:
            return
        self._snapshot_senders[peer] = gevent.spawn(self._send_snapshot, peer, self.core.term)

    def _send_snapshot(self, peer: str, term: int) -> None:
        ok = False
        try:
            meta, chunks = self.sm.snapshot_reader(SNAPSHOT_CHUNK)
            meta = self.core.snapshot_meta(meta.index) if meta.config is None else meta
            log.info("sending snapshot at index %d to %s", meta.index, peer)
            offset = 0
            started = time.monotonic()
            pool = gevent.get_hub().threadpool
            # Reading and packing a megabyte of records takes tens of milliseconds; in a worker
            # thread it shares the CPU with the hub instead of stalling every write meanwhile.
            while (chunk := pool.apply(next, (chunks, None))) is not None:
                if not self._still_leader(term):
                    return
                self._send_chunk(peer, term, meta, offset, chunk, False)
                offset += len(chunk)
                self._pace(started, offset)
            self._send_chunk(peer, term, meta, offset, b"", True)
            ok = True
            log.info("snapshot at index %d sent to %s (%d bytes)", meta.index, peer, offset)
        except Exception as exc:
            log.warning("snapshot to %s failed: %s", peer, exc)
        finally:
            if self._still_leader(term):
                self.core.snapshot_send_done(peer, ok)
                self._wake.set()

    def _send_chunk(self, peer: str, term: int, meta: SnapshotMeta, offset: int, data: bytes,
                    done: bool) -> None:
        while self.transport.backlog(peer) > 4 and self._still_leader(term):
            gevent.sleep(0.005)   # bounded memory: wait for the connection to drain
        self.transport.send(Message(type=MsgType.SNAPSHOT, src=self.id, dst=peer, term=term,
                                    snapshot=meta, offset=offset, data=data, done=done))

    def _pace(self, started: float, sent: int) -> None:
        """Hold a snapshot stream to snapshot_rate: sending a large one flat out costs the
        leader and the receiver enough CPU and disk to halve the cluster's write rate."""
        if self.snapshot_rate > 0:
            ahead = started + sent / self.snapshot_rate - time.monotonic()
            if ahead > 0:
                gevent.sleep(ahead)

    def _still_leader(self, term: int) -> bool:
        return not self.stopped and self.core.is_leader and self.core.term == term

    def _stage_chunk(self, msg: Message) -> None:
        meta = msg.snapshot
        if meta is None or self._installing:
            # The applier is reading the staging file: a new stream (the leader re-sends while a
            # large install runs) must not truncate it.  The leader retries once we answer.
            return
        st = self._staging
        if msg.offset == 0:
            self._close_staging()
            st = self._staging = {"meta": meta, "size": 0, "leader": msg.src,
                                  "file": open(self.staging_path, "wb")}
        if st is None or st["meta"] != meta or st["size"] != msg.offset:
            return   # a gap: ignore until the leader starts over
        st["file"].write(msg.data)
        st["size"] += len(msg.data)
        if msg.done:
            st["file"].close()
            self._staging = None
            if self.core.snapshot_received(meta, msg.src):
                self._installing = True
                self._apply_queue.append(meta)
                self._apply_wake.set()

    def _close_staging(self) -> None:
        if self._staging is not None:
            self._staging["file"].close()
            self._staging = None

    def _install_snapshot(self, meta: SnapshotMeta) -> None:
        def chunks() -> Iterator[bytes]:
            with open(self.staging_path, "rb") as f:
                while block := f.read(SNAPSHOT_CHUNK):
                    yield block
        log.info("installing snapshot at index %d", meta.index)
        try:
            gevent.get_hub().threadpool.apply(self.sm.restore, (meta, chunks()))
        finally:
            self._installing = False
        # The core decides, the WAL follows with no switch in between: appends may have
        # arrived during the install, and acknowledged entries must not be dropped.
        replaced = self.core.snapshot_installed(meta, self.core.leader)
        self.wal.compact(meta.index, meta.term, drop_newer=replaced)
        self._applied = max(self._applied, meta.index)
        self._durable_index = max(self._durable_index, meta.index)
        os.unlink(self.staging_path)
        self._release_applied_waiters()
        log.info("snapshot at index %d installed", meta.index)
        self._wake.set()

    # ------------------------------------------------------------------ queries
    @property
    def applied_index(self) -> int:
        return self._applied

    @property
    def config(self) -> ClusterConfig:
        return self.core.config

    def leader_http(self) -> str | None:
        leader = self.core.leader
        member = self.core.config.members().get(leader) if leader else None
        return member.http if member else None

    def status(self) -> dict:
        st = self.core.status()
        st["applied_index"] = self._applied
        st["members"] = {nid: {"raft": m.raft, "http": m.http}
                         for nid, m in self.core.config.members().items()}
        if self.core.is_leader:
            st["progress"] = self.core.peer_progress()
        return st

    def _fail_all(self, err: Exception) -> None:
        for pending in self._pending.values():
            for part in pending.parts:
                part.result.set_exception(err)
        self._pending.clear()
        for results in self._reads.values():
            for result in results:
                result.set_exception(err)
        self._reads.clear()
        for _, _, result in self._applied_waiters:
            result.set_exception(err)
        self._applied_waiters.clear()

"""Deterministic simulation of a Raft cluster built on the pure core.

A whole cluster runs in one process on a ``FakeClock`` and a lossy ``SimNetwork``,
everything driven by one seed: message loss, delay, reordering and duplication,
partitions, crashes that lose unsynced writes, restarts, membership changes,
leadership transfers and compaction.  A workload of writes and ReadIndex reads is
recorded as a ``History``.  After every event the Raft safety invariants are
checked; a violation raises ``SimFailure`` whose message says how to replay it:

    python -m axon.testing.raft_sim --seed N --nodes 3 [--steps S] [-v]

Model of a node (``SimNode``): its durable ``Disk`` (hard state, log, compaction
marker, the state machine as last synced) changes only when a simulated fsync
completes; a crash keeps a random prefix of the unsynced writes and loses the rest
together with the in-memory state machine, which is rebuilt from the disk on restart.

The node follows the same driver rules as ``RaftNode``: they live in
``axon.raft.rules`` and both call them (what goes out before the write and what waits
for the fsync, which committed entries may be applied, how snapshot chunks are staged,
how an install ends, when the log may be compacted, how a restart recovers).  Only the
I/O is simulated here.  Installing a received snapshot takes simulated time during which
the node keeps taking messages, as ``RaftNode`` does while its store restores in a worker
thread; a snapshot is streamed one chunk at a time, in order, as over TCP.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import msgpack

from axon.raft import rules
from axon.raft.core import (ConfChange, RaftCore, RaftOptions, Ready, Role, decode_config_bytes,
                            encode_config_bytes)
from axon.raft.errors import NotLeader, RaftError
from axon.raft.types import (ClusterConfig, Entry, EntryKind, HardState, Member, Message, MsgType,
                             SnapshotMeta, decode_config, encode_config)
from axon.testing.clock import FakeClock, Handle
from axon.testing.history import History, Op
from axon.testing.simnet import SimNetwork

DEFAULT_STEPS = 150
KEYS = ("a", "b", "c", "d")


class SimFailure(AssertionError):
    """An invariant was violated (or the cluster made no progress) for a seed."""


@dataclass
class SimConfig:
    seed: int
    nodes: int = 3
    steps: int = DEFAULT_STEPS            # ticks of the random phase
    tick: float = 0.1                     # simulated seconds per Raft tick
    min_delay: float = 0.001
    max_delay: float = 0.04
    loss: float = 0.0
    duplicate: float = 0.0
    fsync_delay: tuple[float, float] = (0.002, 0.06)
    apply_delay: float = 0.0              # seconds per applied entry; > 0 = a slow state machine
    write_rate: float = 0.6               # client writes per tick (expected)
    read_rate: float = 0.4
    nemesis: bool = True
    nemesis_rate: float = 0.1             # nemesis events per tick (expected)
    max_extra_nodes: int = 2              # nodes the nemesis may add over a run
    compact_every: int = 24               # entries applied beyond the snapshot before compacting
    chunk_size: int = 48                  # bytes per InstallSnapshot chunk
    chunk_interval: float = 0.04          # seconds between chunks of a stream (>= the delay
                                          # spread, so that a stream arrives in order as over TCP)
    install_delay: tuple[float, float] = (0.0, 0.5)   # seconds a snapshot install takes; the
                                          # core keeps taking messages meanwhile, as in RaftNode
    settle: bool = True                   # heal everything at the end and demand progress
    settle_ticks: int = 400
    options: dict = field(default_factory=lambda: {"election_ticks": 8})
    verbose: bool = False


def replay_command(cfg: SimConfig) -> str:
    cmd = f"python -m axon.testing.raft_sim --seed {cfg.seed} --nodes {cfg.nodes}"
    if cfg.steps != DEFAULT_STEPS:
        cmd += f" --steps {cfg.steps}"
    return cmd


# ---------------------------------------------------------------------- durable state

@dataclass
class DiskSnapshot:
    meta: SnapshotMeta
    data: bytes                         # the encoded state machine (see StateMachine.encode)


class Disk:
    """What survives a crash: hard state, the state machine as last synced, the log after
    its compaction marker (as in the WAL, the marker may lag behind the state machine)."""

    def __init__(self, hard_state: HardState, entries: list[Entry]) -> None:
        self.hard_state = hard_state
        self.snapshot = DiskSnapshot(SnapshotMeta(), StateMachine().encode())
        self.compacted: tuple[int, int] = (0, 0)
        self.log: list[Entry] = list(entries)

    @property
    def snap_index(self) -> int:
        """Index of the durable state machine."""
        return self.snapshot.meta.index

    def last_index(self) -> int:
        return self.log[-1].index if self.log else self.compacted[0]

    def term_at(self, index: int) -> int | None:
        if index == self.compacted[0]:
            return self.compacted[1]
        pos = index - self.compacted[0] - 1
        if 0 <= pos < len(self.log):
            return self.log[pos].term
        return None

    def holds(self, index: int, term: int) -> bool:
        """True when the entry (index, term) survives a crash here."""
        return index <= self.snap_index or self.term_at(index) == term

    def write(self, entries: list[Entry]) -> None:
        """Append entries; one at index <= last replaces that index and everything after."""
        for entry in entries:
            if entry.index <= self.compacted[0]:
                continue   # behind the compaction marker: a snapshot holds it
            pos = entry.index - self.compacted[0] - 1
            if pos > len(self.log):
                raise SimFailure(f"gap in the durable log: {entry.index} after {self.last_index()}")
            del self.log[pos:]
            self.log.append(entry)

    def save_state(self, snapshot: DiskSnapshot) -> None:
        """The state machine is durable as of ``snapshot`` (a sync, or a restore)."""
        self.snapshot = snapshot

    def compact(self, index: int, term: int, drop_newer: bool = False) -> None:
        """Like ``WAL.compact``: drop the log up to index (all of it if drop_newer)."""
        if index < self.compacted[0] or (index == self.compacted[0] and not drop_newer):
            return
        self.log = [] if drop_newer else [e for e in self.log if e.index > index]
        if self.log and self.log[0].index != index + 1:
            self.log = []
        self.compacted = (index, term)


@dataclass
class WriteBatch:
    """One Ready's writes, durable only after the next fsync."""
    hard_state: HardState | None
    entries: list[Entry]


# ---------------------------------------------------------------------- state machine

class StateMachine:
    """A key-value map; ``digest`` chains every applied entry so prefixes compare in O(1).

    Like the store, it knows the term and the configuration of what it applied."""

    def __init__(self) -> None:
        self.kv: dict[str, tuple[str, int]] = {}
        self.applied = 0
        self.term = 0
        self.config = ClusterConfig()
        self.digest = 0

    def apply(self, entry: Entry) -> None:
        if entry.index != self.applied + 1:
            raise SimFailure(f"applied {entry.index} after {self.applied}")
        self.applied, self.term = entry.index, entry.term
        self.digest = hash((self.digest, entry.index, entry.term, int(entry.kind), entry.data))
        if entry.kind == EntryKind.NORMAL:
            _, key, value = entry.data.decode().split("|")
            self.kv[key] = (value, entry.index)
        elif entry.kind == EntryKind.CONFIG:
            self.config = decode_config_bytes(entry.data)

    def meta(self) -> SnapshotMeta:
        return SnapshotMeta(self.applied, self.term, self.config)

    def encode(self) -> bytes:
        return msgpack.packb({"kv": {k: list(v) for k, v in self.kv.items()},
                              "applied": self.applied, "term": self.term,
                              "config": encode_config(self.config), "digest": self.digest})

    @classmethod
    def decode(cls, data: bytes) -> "StateMachine":
        raw = msgpack.unpackb(data)
        sm = cls()
        sm.kv = {k: (v[0], v[1]) for k, v in raw["kv"].items()}
        sm.applied, sm.term, sm.digest = raw["applied"], raw["term"], raw["digest"]
        sm.config = decode_config(raw["config"])
        return sm


def write_command(op: Op) -> bytes:
    return f"{op.id}|{op.key}|{op.value}".encode()


# ---------------------------------------------------------------------- one node

@dataclass
class PendingWrite:
    op: Op
    term: int
    data: bytes


@dataclass
class PendingRead:
    op: Op
    must_see: int      # highest index acknowledged, or applied on any node, before the read was invoked
    index: int = -1    # from the ReadState, once granted


class SimNode:
    def __init__(self, node_id: str, disk: Disk) -> None:
        self.id = node_id
        self.disk = disk
        self.up = False
        self.incarnation = 0
        self.core: RaftCore | None = None
        self.sm = StateMachine()
        # the driver's rules, fresh at every boot (as RaftNode's are at every start)
        self.durability = rules.Durability(0)
        self.apply_queue = rules.ApplyQueue()
        self.staging = rules.SnapshotStaging()
        self.staged = bytearray()                # the stream being staged (RaftNode: a file)
        self.unsynced: list[WriteBatch] = []
        self.fsync_handle: Handle | None = None
        self.tick_handle: Handle | None = None
        self.apply_handle: Handle | None = None
        self.installing: Handle | None = None    # a received snapshot being installed
        self.streams: dict[str, Handle] = {}     # snapshot streams to peers, by peer
        self.writes: dict[int, PendingWrite] = {}
        self.reads: dict[int, PendingRead] = {}
        self.in_ready = False
        self.role_seen: tuple[Role, int] | None = None

    def handles(self) -> list[Handle]:
        return [h for h in (self.fsync_handle, self.tick_handle, self.apply_handle, self.installing,
                            *self.streams.values()) if h is not None]


# ---------------------------------------------------------------------- the simulation

class Simulation:
    """A seeded cluster run: call ``run()`` or script it with the public methods."""

    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.clock = FakeClock()
        self.net = SimNetwork(self.clock, random.Random(self.rng.getrandbits(64)), loss=cfg.loss,
                              min_delay=cfg.min_delay, max_delay=cfg.max_delay,
                              duplicate=cfg.duplicate)
        self.options = RaftOptions(**cfg.options)
        self.history = History(clock=lambda: self.clock.now)
        self.nodes: dict[str, SimNode] = {}
        self.step_no = 0
        self.trace: deque[str] = deque(maxlen=60)
        # global knowledge for the invariants
        self.leaders: dict[int, str] = {}                  # term -> leader
        self.entry_ids: dict[tuple[int, int], tuple] = {}  # (index, term) -> (prev term, kind, data)
        self.committed: dict[int, Entry] = {}
        # index -> a term by which it was committed (the term of the first node that applied
        # it: at least the term it was committed in), for leader completeness
        self.commit_terms: dict[int, int] = {}
        self.max_committed = 0
        self.committed_config: ClusterConfig = ClusterConfig()
        self.committed_config_index = 0
        self.digests: dict[int, int] = {}                  # index -> state machine digest
        self.max_acked = 0                                  # highest index of an acknowledged write
        self.max_applied = 0                                # highest index applied on any node (a watcher saw it)
        self.next_ctx = 1
        self.next_node = cfg.nodes + 1
        self.partitioned_until = -1
        self.stats = {"writes_ok": 0, "reads_ok": 0, "elections": 0, "crashes": 0,
                      "snapshots_sent": 0, "snapshot_chunks": 0, "snapshots_installed": 0, "conf_changes": 0,
                      "transfers": 0, "heartbeats": 0, "messages": 0, "follower_commits_first": 0}
        ids = [f"n{i}" for i in range(1, cfg.nodes + 1)]
        config = ClusterConfig(voters={i: Member(i, "") for i in ids})
        first = Entry(1, 1, EntryKind.CONFIG, encode_config_bytes(config))
        for nid in ids:
            self.nodes[nid] = SimNode(nid, Disk(HardState(1, None), [first]))
            self._boot(self.nodes[nid])

    # ------------------------------------------------------------------ reporting
    def log(self, what: str) -> None:
        line = f"[{self.clock.now:8.3f} s{self.step_no:4d}] {what}"
        self.trace.append(line)
        if self.cfg.verbose:
            print(line)

    def fail(self, what: str) -> None:
        tail = "\n".join(self.trace)
        raise SimFailure(f"seed {self.cfg.seed} ({self.cfg.nodes} nodes), step {self.step_no}, "
                         f"t={self.clock.now:.3f}: {what}\n"
                         f"replay: {replay_command(self.cfg)} -v\nlast events:\n{tail}")

    # ------------------------------------------------------------------ node lifecycle
    def _boot(self, node: SimNode) -> None:
        """Start a node from its disk (first start or restart after a crash), as RaftNode does."""
        disk = node.disk
        node.incarnation += 1
        node.sm = StateMachine.decode(disk.snapshot.data)
        store = disk.snapshot.meta
        try:
            if rules.log_behind_store(store.index, disk.compacted[0], disk.last_index()):
                disk.compact(store.index, store.term, drop_newer=True)
        except RuntimeError as e:
            self.fail(f"{node.id} cannot restart: {e}")
        node.core = RaftCore(node.id, hard_state=disk.hard_state, snapshot=store,
                             entries=[e for e in disk.log if e.index > store.index],
                             applied=store.index, options=self.options,
                             rng=random.Random(self.rng.getrandbits(64)))
        node.durability = rules.Durability(disk.last_index())
        node.apply_queue = rules.ApplyQueue()
        node.staging = rules.SnapshotStaging()
        node.staged = bytearray()
        node.up = True
        node.role_seen = None
        self.net.register(node.id, lambda src, msg, node=node: self._on_message(node, msg))
        phase = self.rng.uniform(0, self.cfg.tick)
        self._schedule_tick(node, phase)

    def _schedule_tick(self, node: SimNode, delay: float) -> None:
        inc = node.incarnation

        def fire() -> None:
            if node.up and node.incarnation == inc:
                node.core.tick()
                self._process(node)
                self._schedule_tick(node, self.cfg.tick)
        node.tick_handle = self.clock.call_later(delay, fire)

    def _later(self, node: SimNode, delay: float, fn: Callable[[], None]) -> Handle:
        """Run fn after delay unless the node crashed meanwhile."""
        inc = node.incarnation
        return self.clock.call_later(delay, lambda: fn() if node.up and node.incarnation == inc else None)

    def crash(self, nid: str) -> None:
        """Kill a node: a random prefix of its unsynced writes reaches the disk, the rest is lost."""
        node = self.nodes[nid]
        if not node.up:
            return
        survive = self.rng.randrange(len(node.unsynced) + 1)
        for batch in node.unsynced[:survive]:
            self._write_batch(node, batch)
        self.log(f"crash {nid} (kept {survive}/{len(node.unsynced)} unsynced writes, "
                 f"disk last {node.disk.last_index()} term {node.disk.hard_state.term})")
        node.unsynced = []
        node.up = False
        node.incarnation += 1
        for handle in node.handles():
            handle.cancel()
        node.fsync_handle = node.apply_handle = node.tick_handle = node.installing = None
        node.streams = {}
        self.net.unregister(nid)
        for pw in node.writes.values():
            self.history.unknown(pw.op)
        for pr in node.reads.values():
            self.history.discard(pr.op)
        node.writes, node.reads = {}, {}
        self.stats["crashes"] += 1

    def restart(self, nid: str) -> None:
        node = self.nodes[nid]
        if node.up:
            return
        self._boot(node)
        self.log(f"restart {nid} at term {node.core.term}, log {node.core.last_index()}, "
                 f"snapshot {node.core.snap_index}")
        self._process(node)

    # ------------------------------------------------------------------ the driver
    def _on_message(self, node: SimNode, msg: Message) -> None:
        if not node.up:
            return
        node.core.step(msg)
        self._process(node)

    def _process(self, node: SimNode) -> None:
        """Drain the core's Ready the way RaftNode does, checking invariants on the way."""
        if node.in_ready or not node.up:
            return
        node.in_ready = True
        try:
            core = node.core
            self._check_role(node)
            while node.up and core.has_ready():
                self._handle_ready(node, core.ready())
                self._check_role(node)
        finally:
            node.in_ready = False

    def _handle_ready(self, node: SimNode, rd: Ready) -> None:
        if rd.entries:
            self._check_new_entries(node, rd.entries)
        for msg in rd.messages:
            self._send(node, msg)
        writes, free = node.durability.track(rd)
        if writes:
            self._queue_write(node, WriteBatch(rd.hard_state, list(rd.entries)))
        for msg in free:
            self._send(node, msg)
        if rd.committed:
            self._hand_out_committed(node, rd.committed)
        for rs in rd.read_states:
            self._read_granted(node, rs.ctx, rs.index)
        for ctx in rd.failed_reads:
            pr = node.reads.pop(ctx, None)
            if pr is not None:
                self.history.discard(pr.op)
        for peer in rd.snapshot_sends:
            self._send_snapshot(node, peer)
        for chunk in rd.snapshot_chunks:
            self._stage_chunk(node, chunk)

    def _send(self, node: SimNode, msg: Message) -> None:
        self.stats["messages"] += 1
        if msg.type == MsgType.HEARTBEAT:
            self.stats["heartbeats"] += 1
        self.net.send(node.id, msg.dst, msg)

    def _queue_write(self, node: SimNode, batch: WriteBatch) -> None:
        node.unsynced.append(batch)
        if node.fsync_handle is None:
            delay = self.rng.uniform(*self.cfg.fsync_delay)
            node.fsync_handle = self._later(node, delay, lambda: self._fsync(node))

    def _write_batch(self, node: SimNode, batch: WriteBatch) -> None:
        if batch.hard_state is not None:
            node.disk.hard_state = batch.hard_state
        node.disk.write(batch.entries)

    def _flush(self, node: SimNode) -> None:
        """Every write queued so far reaches the disk (the fsync completes)."""
        if node.fsync_handle is not None:
            node.fsync_handle.cancel()
            node.fsync_handle = None
        batches, node.unsynced = node.unsynced, []
        for batch in batches:
            self._write_batch(node, batch)

    def _fsync(self, node: SimNode) -> None:
        """Every write queued so far is now durable: release what waited for it."""
        self._flush(node)
        self._synced(node, node.durability.sync_completed(node.durability.written))

    def _synced(self, node: SimNode, done: rules.Synced) -> None:
        if done.persisted is not None:
            node.core.persisted(*done.persisted)
        for msg in done.release:
            self._send(node, msg)
        self._resume_apply(node)
        self._process(node)

    # ------------------------------------------------------------------ applying
    def _hand_out_committed(self, node: SimNode, entries: list[Entry]) -> None:
        for entry in entries:
            self._record_committed(node, entry)
        leader = self.leader()
        if (entries and leader is not None and leader is not node and leader.core.term == node.core.term
                and entries[-1].index > leader.core.commit):
            self.stats["follower_commits_first"] += 1   # from the other voters' acks (core._commit_by_peers)
        node.apply_queue.push(entries)
        self._resume_apply(node)

    def _resume_apply(self, node: SimNode) -> None:
        """Apply what the rules allow, as RaftNode's applier: in order, durable entries only,
        a received snapshot at its place (the applier is busy while it installs)."""
        if node.installing is not None or node.apply_handle is not None or not node.up:
            return
        slow = self.cfg.apply_delay > 0
        while True:
            work = node.apply_queue.take(node.sm.applied, node.durability.durable_index,
                                         1 if slow else None)
            if work is None:
                return
            if isinstance(work, SnapshotMeta):
                self._start_install(node, work)
                return
            if slow:
                node.apply_handle = self._later(node, self.cfg.apply_delay,
                                                lambda work=work: self._apply_later(node, work))
                return
            for entry in work:
                self._apply_one(node, entry)
            self._after_apply(node)

    def _apply_later(self, node: SimNode, entries: list[Entry]) -> None:
        node.apply_handle = None
        for entry in entries:
            self._apply_one(node, entry)
        self._after_apply(node)
        self._resume_apply(node)

    def _apply_one(self, node: SimNode, entry: Entry) -> None:
        if not node.disk.holds(entry.index, entry.term):
            self.fail(f"{node.id} applies entry {entry.index} (term {entry.term}) that its own "
                      f"disk does not hold: the state machine got ahead of the local log")
        node.sm.apply(entry)
        self.max_applied = max(self.max_applied, entry.index)
        known = self.digests.setdefault(entry.index, node.sm.digest)
        if known != node.sm.digest:
            self.fail(f"state machine safety: {node.id} applied a different history up to "
                      f"{entry.index} (entry term {entry.term}, {entry.data!r})")
        pw = node.writes.pop(entry.index, None)
        if pw is not None:
            if entry.term == pw.term and entry.data == pw.data:
                self.history.ok(pw.op, entry.index)
                self.max_acked = max(self.max_acked, entry.index)
                self.stats["writes_ok"] += 1
            else:
                self.history.fail(pw.op)

    def _after_apply(self, node: SimNode) -> None:
        self._serve_reads(node)
        target = rules.compaction_index(node.sm.applied, node.core.snap_index, 0,
                                        self.cfg.compact_every)
        if target is not None:
            self._compact(node, target)

    def compact(self, nid: str) -> None:
        """Compact the node's log to its applied index (after syncing its state machine)."""
        node = self.nodes[nid]
        if node.up:
            self._compact(node, node.sm.applied)

    def _compact(self, node: SimNode, index: int) -> None:
        def sync_state_machine() -> None:
            node.disk.save_state(DiskSnapshot(node.sm.meta(), node.sm.encode()))

        if rules.compact(node.core, index, sync_state_machine, node.disk.compact):
            self.log(f"{node.id} compacts to {index}")
            self._process(node)

    # ------------------------------------------------------------------ snapshots
    def _send_snapshot(self, node: SimNode, peer: str) -> None:
        """Stream the state machine to peer, one chunk per chunk_interval, as RaftNode's sender."""
        if peer in node.streams:
            return   # a stream to it is under way
        meta, data = node.sm.meta(), node.sm.encode()
        size, term = self.cfg.chunk_size, node.core.term
        offsets = list(range(0, len(data), size)) or [0]
        self.stats["snapshots_sent"] += 1
        self.log(f"{node.id} streams snapshot {meta.index} to {peer} in {len(offsets)} chunks")

        def send(n: int) -> None:
            node.streams.pop(peer, None)
            if not rules.snapshot_sending_allowed(node.core, term):
                return
            offset, done = offsets[n], n == len(offsets) - 1
            self._send(node, Message(MsgType.SNAPSHOT, node.id, peer, term=term, snapshot=meta,
                                     offset=offset, data=data[offset:offset + size], done=done))
            self.stats["snapshot_chunks"] += 1
            if not done:
                node.streams[peer] = self._later(node, self.cfg.chunk_interval, lambda: send(n + 1))
                return
            node.core.snapshot_send_done(peer, True)
            self._process(node)
        send(0)

    def _stage_chunk(self, node: SimNode, msg: Message) -> None:
        step = node.staging.chunk(msg)
        if step is None:
            return
        if step.restart:
            node.staged = bytearray()
        node.staged += step.data
        if step.complete is not None and node.staging.received(node.core, step.complete, msg.src):
            node.apply_queue.push_snapshot(step.complete)
            self._resume_apply(node)

    def _start_install(self, node: SimNode, meta: SnapshotMeta) -> None:
        data = bytes(node.staged)
        delay = self.rng.uniform(*self.cfg.install_delay)
        node.installing = self._later(node, delay, lambda: self._install(node, meta, data))

    def _install(self, node: SimNode, meta: SnapshotMeta, data: bytes) -> None:
        """The install finishes: the core decides whether the snapshot replaces the log."""
        node.installing = None
        sm = StateMachine.decode(data)
        if sm.applied != meta.index:
            self.fail(f"{node.id}: snapshot data at {sm.applied} but meta says {meta.index}")
        if node.sm.applied > meta.index:
            self.fail(f"{node.id}: a snapshot at {meta.index} would rewind a state machine "
                      f"at {node.sm.applied}")
        known = self.digests.get(meta.index)
        if known is not None and known != sm.digest:
            self.fail(f"{node.id}: installed a snapshot whose state differs at {meta.index}")
        node.sm = sm
        node.disk.save_state(DiskSnapshot(meta, data))   # a restore is durable when it returns
        for index in [i for i in node.writes if i <= meta.index]:
            # skipped over by the snapshot: this node can't tell whether its entry made it
            self.history.unknown(node.writes.pop(index).op)
        replaced: list[bool] = []

        def compact_log(index: int, term: int, drop_newer: bool) -> None:
            self._flush(node)   # as WAL.compact: every earlier write is durable with the marker
            node.disk.compact(index, term, drop_newer)
            replaced.append(drop_newer)

        done = rules.finish_install(node.core, node.staging, node.durability, meta, compact_log)
        self.stats["snapshots_installed"] += 1
        self.log(f"{node.id} installs snapshot {meta.index} (term {meta.term})"
                 f"{'' if replaced[0] else ', keeping the log after it'}")
        self._serve_reads(node)
        self._synced(node, done)

    # ------------------------------------------------------------------ client workload
    def write(self, nid: str, key: str, value: str | None = None, client: int = 0) -> Op | None:
        """A client write sent to node nid; None when it is not the leader."""
        node = self.nodes[nid]
        if not node.up or not node.core.is_leader:
            return None
        op = self.history.invoke(client, key, "write", value or f"v{len(self.history)}")
        data = write_command(op)
        try:
            index, term = node.core.propose([data])
        except NotLeader:
            self.history.discard(op)
            return None
        node.writes[index] = PendingWrite(op, term, data)
        self._process(node)
        return op

    def read(self, nid: str, key: str, client: int = 0, process: bool = True) -> Op | None:
        """A linearizable read through ReadIndex on node nid.

        With process=False the node's Ready is left for the caller to drain, so reads
        issued together share one heartbeat round (as in a real driver's loop).
        """
        node = self.nodes[nid]
        if not node.up:
            return None
        op = self.history.invoke(client, key, "read")
        ctx = self.next_ctx
        self.next_ctx += 1
        node.reads[ctx] = PendingRead(op, max(self.max_acked, self.max_applied))
        node.core.read_index(ctx)
        if process:
            self._process(node)
        return op

    def read_batch(self, nid: str, keys: list[str], client: int = 0) -> list[Op]:
        ops = [self.read(nid, key, client, process=False) for key in keys]
        self._process(self.nodes[nid])
        return [op for op in ops if op is not None]

    def _read_granted(self, node: SimNode, ctx: int, index: int) -> None:
        pr = node.reads.get(ctx)
        if pr is None:
            return
        if index < pr.must_see:
            self.fail(f"stale read index: {node.id} granted ctx {ctx} at {index} but a write at "
                      f"{pr.must_see} was acknowledged or applied somewhere before the read started")
        pr.index = index
        self._serve_reads(node)

    def _serve_reads(self, node: SimNode) -> None:
        if not node.reads:
            return
        applied = node.sm.applied
        for ctx in [c for c, pr in node.reads.items() if 0 <= pr.index <= applied]:
            pr = node.reads.pop(ctx)
            if applied < pr.must_see:
                self.fail(f"stale read: {node.id} served {pr.op.key!r} at applied {applied} < "
                          f"{pr.must_see}, acknowledged or applied somewhere before the read started")
            found = node.sm.kv.get(pr.op.key)
            self.history.ok(pr.op, found)
            self.stats["reads_ok"] += 1

    # ------------------------------------------------------------------ invariants
    def _check_role(self, node: SimNode) -> None:
        core = node.core
        seen = (core.role, core.term)
        if seen == node.role_seen:
            return
        node.role_seen = seen
        if core.role != Role.LEADER:
            return
        other = self.leaders.setdefault(core.term, node.id)
        if other != node.id:
            self.fail(f"two leaders in term {core.term}: {other} and {node.id}")
        self.stats["elections"] += 1
        self.log(f"{node.id} becomes leader of term {core.term} (last {core.last_index()}, "
                 f"commit {core.commit})")
        for index in range(core.snap_index + 1, self.max_committed + 1):
            self._check_leader_has(node, index)

    def _check_leader_has(self, node: SimNode, index: int) -> None:
        """Leader completeness: an entry committed in a term is in every leader of a later term.

        A leader of an earlier term may still win after it (votes granted before, delivered
        late) and rightly lack it; it steps down at the first message of the later term.
        """
        entry = self.committed.get(index)
        if entry is None or self.commit_terms[index] >= node.core.term:
            return
        if node.core.term_at(index) != entry.term and index > node.core.snap_index:
            self.fail(f"leader completeness: leader {node.id} of term {node.core.term} lacks "
                      f"committed entry {index} (term {entry.term}); has {node.core.term_at(index)}")

    def _check_new_entries(self, node: SimNode, entries: list[Entry]) -> None:
        """Log matching: one (index, term) names one entry and one predecessor term."""
        core = node.core
        for entry in entries:
            prev = core.term_at(entry.index - 1)
            ident = (prev, int(entry.kind), entry.data)
            known = self.entry_ids.setdefault((entry.index, entry.term), ident)
            if known != ident and not (prev is None or known[0] is None):
                self.fail(f"log matching: {node.id} has a different entry at index {entry.index} "
                          f"term {entry.term}: {ident} vs {known}")

    def _record_committed(self, node: SimNode, entry: Entry) -> None:
        known = self.committed.setdefault(entry.index, entry)
        self.commit_terms.setdefault(entry.index, node.core.term)
        if known != entry:
            self.fail(f"two different entries committed at {entry.index}: {known} on some node, "
                      f"{entry} on {node.id}")
        if entry.index > self.max_committed:
            self.max_committed = entry.index
            for other in self.nodes.values():
                if other.up and other.core.is_leader:
                    self._check_leader_has(other, entry.index)
        if entry.kind == EntryKind.CONFIG and entry.index > self.committed_config_index:
            self.committed_config = decode_config_bytes(entry.data)
            self.committed_config_index = entry.index

    def check_durability(self) -> None:
        """Committed entries are never lost: every quorum of the committed config holds the last one on disk."""
        index = self.max_committed
        if not index:
            return
        term = self.committed[index].term
        config = self.committed_config
        holders = [nid for nid in config.voters
                   if nid in self.nodes and self.nodes[nid].disk.holds(index, term)]
        if len(holders) < len(config.voters) - config.quorum() + 1:
            self.fail(f"committed entry {index} (term {term}) is durable only on {holders} of "
                      f"voters {sorted(config.voters)}: a crash can lose it")

    def check_invariants(self) -> None:
        for node in self.nodes.values():
            if node.up:
                self._check_role(node)
        self.check_durability()

    # ------------------------------------------------------------------ nemesis
    def leader(self) -> SimNode | None:
        best = None
        for node in self.nodes.values():
            if node.up and node.core.is_leader and (best is None or node.core.term > best.core.term):
                best = node
        return best

    def _nemesis(self) -> None:
        r = self.rng
        if r.random() >= self.cfg.nemesis_rate:
            return
        kind = r.choices(["loss", "delay", "partition", "heal", "crash", "restart", "member",
                          "transfer", "compact"], weights=[2, 2, 2, 2, 3, 0, 2, 1, 2])[0]
        ids = sorted(self.nodes)
        if kind == "loss":
            loss = r.choice([0.0, 0.0, 0.02, 0.1, 0.3])
            self.net.set_loss(loss)
            self.log(f"nemesis: loss {loss}")
        elif kind == "delay":
            nid, extra = r.choice(ids), r.choice([0.0, 0.0, 0.05, 0.2, 0.6])
            self.net.set_node_delay(nid, extra)
            self.log(f"nemesis: {nid} extra delay {extra}")
        elif kind == "partition":
            shuffled = ids[:]
            r.shuffle(shuffled)
            cut = r.randrange(1, len(shuffled))
            groups = (shuffled[:cut], shuffled[cut:])
            self.net.partition(*groups)
            self.log(f"nemesis: partition {groups[0]} | {groups[1]}")
        elif kind == "heal":
            self.net.heal()
            self.log("nemesis: heal")
        elif kind == "crash":
            up = [nid for nid in ids if self.nodes[nid].up]
            if up:
                # at a random instant inside the tick, so that writes are caught unsynced
                victim, at = r.choice(up), r.uniform(0, self.cfg.tick)
                downtime = r.uniform(0.2, 4.0)
                self.clock.call_later(at, lambda: self.crash(victim))
                self.clock.call_later(at + downtime, lambda: self.restart(victim))
        elif kind == "member":
            self._nemesis_member()
        elif kind == "transfer":
            lead = self.leader()
            if lead is not None:
                target = r.choice(sorted(lead.core.config.voters))
                try:
                    lead.core.transfer_leadership(target)
                    self.stats["transfers"] += 1
                    self.log(f"nemesis: {lead.id} transfers leadership to {target}")
                except RaftError:
                    pass
                self._process(lead)
        elif kind == "compact":
            self.compact(r.choice(ids))

    def _nemesis_member(self) -> None:
        lead = self.leader()
        if lead is None:
            return
        voters = sorted(lead.core.config.voters)
        r = self.rng
        try:
            if (len(voters) > 3 or r.random() < 0.3) and len(voters) > 2:
                victim = r.choice(voters)
                lead.core.propose_conf_change(ConfChange("remove", victim))
                self.log(f"nemesis: {lead.id} removes {victim}")
            elif self.next_node <= self.cfg.nodes + self.cfg.max_extra_nodes:
                nid = self.add_node()
                lead.core.propose_conf_change(ConfChange("add_learner", nid, Member(nid, "")))
                self.log(f"nemesis: {lead.id} adds learner {nid}")
            else:
                return
            self.stats["conf_changes"] += 1
        except RaftError as e:   # another change in flight, a transfer going on, ...
            self.log(f"nemesis: membership change refused: {e}")
        self._process(lead)

    def add_node(self) -> str:
        """Start a new empty node (not yet a member: it waits to be added as a learner)."""
        nid = f"n{self.next_node}"
        self.next_node += 1
        self.nodes[nid] = SimNode(nid, Disk(HardState(), []))
        self._boot(self.nodes[nid])
        return nid

    # ------------------------------------------------------------------ workload and steps
    def _workload(self) -> None:
        r = self.rng
        up = [n for n in self.nodes.values() if n.up]
        if not up:
            return
        leaders = [n for n in up if n.core.is_leader]

        def pick() -> SimNode:
            # mostly a node claiming leadership (maybe a stale one), sometimes any node
            return r.choice(leaders) if leaders and r.random() < 0.8 else r.choice(up)

        for _ in range(self._count(self.cfg.write_rate)):
            self.write(pick().id, r.choice(KEYS), client=r.randrange(8))
        touched = {}
        for _ in range(self._count(self.cfg.read_rate)):
            node = pick()
            if node.up:
                self.read(node.id, r.choice(KEYS), client=r.randrange(8), process=False)
                touched[node.id] = node
        for node in touched.values():
            self._process(node)

    def _count(self, rate: float) -> int:
        return int(rate) + (1 if self.rng.random() < rate - int(rate) else 0)

    def step(self, nemesis: bool | None = None, workload: bool = True) -> None:
        """One tick of simulated time, then the invariants."""
        self.step_no += 1
        if self.cfg.nemesis if nemesis is None else nemesis:
            self._nemesis()
        if workload:
            self._workload()
        self.clock.advance(self.cfg.tick)
        self.check_invariants()

    def run_ticks(self, n: int, **kw) -> None:
        for _ in range(n):
            self.step(**kw)

    def wait_for(self, predicate: Callable[[], bool], ticks: int, **kw) -> bool:
        """Step (without nemesis by default) until predicate holds; False after ticks steps."""
        kw.setdefault("nemesis", False)
        for _ in range(ticks):
            if predicate():
                return True
            self.step(**kw)
        return predicate()

    def members(self) -> list[str]:
        return sorted(self.committed_config.members())

    def settle(self) -> None:
        """Heal everything and demand progress: a leader, and every member catching up."""
        self.net.heal()
        self.net.set_loss(0.0)
        for nid in self.nodes:
            self.net.set_node_delay(nid, 0.0)
            self.restart(nid)
        self.log("settle: healed, all nodes up")
        marker: list[tuple[Op, str, int]] = []   # (write, leader it went to, its term)

        def progressed() -> bool:
            lead = self.leader()
            if lead is None or lead.id not in self.committed_config.voters:
                return False
            if marker and marker[-1][0].status == "ok":
                target = marker[-1][0].result
            else:
                # like a client: retry at the current leader when the last attempt is lost
                if not marker or marker[-1][1:] != (lead.id, lead.core.term) or \
                        marker[-1][0].status != "pending":
                    op = self.write(lead.id, "settle", "done")
                    if op is not None:
                        marker.append((op, lead.id, lead.core.term))
                return False
            return all(self.nodes[nid].sm.applied >= target for nid in self.members()
                       if nid in self.nodes)
        if not self.wait_for(progressed, self.cfg.settle_ticks, workload=False):
            states = {nid: (n.up, n.core.role.value, n.core.term, n.core.commit, n.sm.applied)
                      for nid, n in self.nodes.items()}
            self.fail(f"no progress after healing: members {self.members()}, nodes {states}")

    def run(self) -> "Simulation":
        try:
            self.run_ticks(self.cfg.steps)
            if self.cfg.settle:
                self.settle()
        except SimFailure:
            raise
        except Exception as e:   # a crash of the core is a failure of the seed too
            self.fail(f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
        return self


def run_seed(seed: int, nodes: int = 3, steps: int = DEFAULT_STEPS, **overrides) -> Simulation:
    """Run one seed; raises SimFailure (with the replay command) on any violation."""
    return Simulation(SimConfig(seed=seed, nodes=nodes, steps=steps, **overrides)).run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Replay one seed of the Raft simulation.")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--nodes", type=int, choices=(3, 5), default=3)
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("-v", "--verbose", action="store_true", help="print the event trace")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        sim = run_seed(args.seed, args.nodes, args.steps, verbose=args.verbose)
    except SimFailure as e:
        print(f"FAILED: {e}", file=sys.stderr)
        return 1
    took = time.perf_counter() - started
    print(f"seed {args.seed} ok in {took:.3f}s: {sim.stats}, max committed {sim.max_committed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

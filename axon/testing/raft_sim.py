"""Deterministic simulation of a Raft cluster built on the pure core.

A whole cluster runs in one process on a ``FakeClock`` and a lossy ``SimNetwork``,
everything driven by one seed: message loss, delay, reordering and duplication,
partitions, crashes that lose unsynced writes, restarts, membership changes,
leadership transfers and compaction.  A workload of writes and ReadIndex reads is
recorded as a ``History``.  After every event the Raft safety invariants are
checked; a violation raises ``SimFailure`` whose message says how to replay it:

    python -m axon.testing.raft_sim --seed N --nodes 3 [--steps S] [-v]

Model of a node (``SimNode``): its durable ``Disk`` (hard state, log, snapshot of
the state machine) changes only when a simulated fsync completes; a crash keeps a
random prefix of the unsynced writes and loses the rest together with the
in-memory state machine, which is rebuilt from the snapshot on restart.  Installing a
received snapshot takes simulated time during which the node keeps taking messages,
as ``RaftNode`` does while its store restores in a worker thread.
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

from axon.raft.core import (ConfChange, NotLeader, RaftCore, RaftError,
                            RaftOptions, Role, decode_config_bytes, encode_config_bytes)
from axon.raft.types import (ClusterConfig, Entry, EntryKind, HardState, Member, Message, MsgType,
                             SnapshotMeta)
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
    install_delay: tuple[float, float] = (0.0, 0.5)   # seconds a snapshot install takes; the
                                          # core keeps taking messages meanwhile, as in RaftNode
    settle: bool = True                   # heal everything at the end and demand progress
    settle_ticks: int = 400
    unsafe_ack_before_fsync: bool = False  # a deliberately broken driver, to prove the checks bite
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
    """What survives a crash: hard state, log after the snapshot, the snapshot itself."""

    def __init__(self, hard_state: HardState, entries: list[Entry]) -> None:
        self.hard_state = hard_state
        self.snapshot = DiskSnapshot(SnapshotMeta(), StateMachine().encode())
        self.log: list[Entry] = list(entries)

    @property
    def snap_index(self) -> int:
        return self.snapshot.meta.index

    def last_index(self) -> int:
        return self.log[-1].index if self.log else self.snap_index

    def term_at(self, index: int) -> int | None:
        if index == self.snap_index:
            return self.snapshot.meta.term
        pos = index - self.snap_index - 1
        if 0 <= pos < len(self.log):
            return self.log[pos].term
        return None

    def holds(self, index: int, term: int) -> bool:
        """True when the entry (index, term) survives a crash here."""
        return index <= self.snap_index or self.term_at(index) == term

    def write(self, entries: list[Entry]) -> None:
        """Append entries; one at index <= last replaces that index and everything after."""
        for entry in entries:
            if entry.index <= self.snap_index:
                continue   # already covered by a newer snapshot
            pos = entry.index - self.snap_index - 1
            if pos > len(self.log):
                raise SimFailure(f"gap in the durable log: {entry.index} after {self.last_index()}")
            del self.log[pos:]
            self.log.append(entry)

    def install(self, snapshot: DiskSnapshot, keep_log: bool) -> None:
        """Store a snapshot; the log keeps only entries after it (none if not keep_log)."""
        self.snapshot = snapshot
        self.log = [e for e in self.log if e.index > snapshot.meta.index] if keep_log else []
        if self.log and self.log[0].index != snapshot.meta.index + 1:
            self.log = []


@dataclass
class WriteBatch:
    """One Ready's writes, durable only after the next fsync."""
    hard_state: HardState | None
    entries: list[Entry]
    messages: list[Message]


# ---------------------------------------------------------------------- state machine

class StateMachine:
    """A key-value map; ``digest`` chains every applied entry so prefixes compare in O(1)."""

    def __init__(self) -> None:
        self.kv: dict[str, tuple[str, int]] = {}
        self.applied = 0
        self.digest = 0

    def apply(self, entry: Entry) -> None:
        if entry.index != self.applied + 1:
            raise SimFailure(f"applied {entry.index} after {self.applied}")
        self.applied = entry.index
        self.digest = hash((self.digest, entry.index, entry.term, int(entry.kind), entry.data))
        if entry.kind == EntryKind.NORMAL:
            _, key, value = entry.data.decode().split("|")
            self.kv[key] = (value, entry.index)

    def encode(self) -> bytes:
        return msgpack.packb({"kv": {k: list(v) for k, v in self.kv.items()},
                              "applied": self.applied, "digest": self.digest})

    @classmethod
    def decode(cls, data: bytes) -> "StateMachine":
        raw = msgpack.unpackb(data)
        sm = cls()
        sm.kv = {k: (v[0], v[1]) for k, v in raw["kv"].items()}
        sm.applied, sm.digest = raw["applied"], raw["digest"]
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
    must_see: int      # highest index of a write acknowledged before the read was invoked
    index: int = -1    # from the ReadState, once granted


class SimNode:
    def __init__(self, node_id: str, disk: Disk) -> None:
        self.id = node_id
        self.disk = disk
        self.up = False
        self.incarnation = 0
        self.core: RaftCore | None = None
        self.sm = StateMachine()
        self.unsynced: list[WriteBatch] = []
        self.fsync_handle: Handle | None = None
        self.tick_handle: Handle | None = None
        self.apply_handle: Handle | None = None
        self.apply_queue: deque[Entry] = deque()
        self.writes: dict[int, PendingWrite] = {}
        self.reads: dict[int, PendingRead] = {}
        self.staged: tuple | None = None       # (key, {offset: data}, total or None)
        self.installing: Handle | None = None  # a received snapshot being installed
        self.in_ready = False
        self.role_seen: tuple[Role, int] | None = None


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
        self.max_committed = 0
        self.committed_config: ClusterConfig = ClusterConfig()
        self.committed_config_index = 0
        self.digests: dict[int, int] = {}                  # index -> state machine digest
        self.max_acked = 0                                  # highest index of an acknowledged write
        self.next_ctx = 1
        self.next_node = cfg.nodes + 1
        self.partitioned_until = -1
        self.stats = {"writes_ok": 0, "reads_ok": 0, "elections": 0, "crashes": 0,
                      "snapshots_sent": 0, "snapshot_chunks": 0, "snapshots_installed": 0, "conf_changes": 0,
                      "transfers": 0, "heartbeats": 0, "messages": 0}
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
        """Start a node from its disk (first start or restart after a crash)."""
        disk = node.disk
        node.incarnation += 1
        node.sm = StateMachine.decode(disk.snapshot.data)
        node.core = RaftCore(node.id, hard_state=disk.hard_state, snapshot=disk.snapshot.meta,
                             entries=disk.log, applied=disk.snap_index, options=self.options,
                             rng=random.Random(self.rng.getrandbits(64)))
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
        for handle in (node.fsync_handle, node.tick_handle, node.apply_handle, node.installing):
            if handle is not None:
                handle.cancel()
        node.fsync_handle = node.apply_handle = node.tick_handle = node.installing = None
        node.apply_queue.clear()
        node.staged = None
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
        """Drain the core's Ready the way a real driver does, checking invariants on the way."""
        if node.in_ready or not node.up:
            return
        node.in_ready = True
        try:
            core = node.core
            self._check_role(node)
            while node.up and core.has_ready():
                rd = core.ready()
                if rd.entries:
                    self._check_new_entries(node, rd.entries)
                if rd.hard_state or rd.entries or rd.persist_messages:
                    self._queue_writes(node, rd.hard_state, rd.entries, rd.persist_messages)
                for msg in rd.messages:
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
                self._check_role(node)
        finally:
            node.in_ready = False

    def _send(self, node: SimNode, msg: Message) -> None:
        self.stats["messages"] += 1
        if msg.type == MsgType.HEARTBEAT:
            self.stats["heartbeats"] += 1
        self.net.send(node.id, msg.dst, msg)

    def _queue_writes(self, node: SimNode, hs: HardState | None, entries: list[Entry],
                      held: list[Message]) -> None:
        if self.cfg.unsafe_ack_before_fsync:
            for msg in held:
                self._send(node, msg)
            held = []
        if hs is None and not entries:
            if not node.unsynced:
                for msg in held:
                    self._send(node, msg)
                return
            if not held:
                return
        node.unsynced.append(WriteBatch(hs, list(entries), list(held)))
        if node.fsync_handle is None:
            inc = node.incarnation
            delay = self.rng.uniform(*self.cfg.fsync_delay)
            node.fsync_handle = self.clock.call_later(
                delay, lambda: self._fsync(node) if node.up and node.incarnation == inc else None)

    def _write_batch(self, node: SimNode, batch: WriteBatch) -> None:
        if batch.hard_state is not None:
            node.disk.hard_state = batch.hard_state
        node.disk.write(batch.entries)

    def _fsync(self, node: SimNode) -> None:
        """Every write queued so far is now durable: release the messages that waited for it."""
        node.fsync_handle = None
        batches, node.unsynced = node.unsynced, []
        for batch in batches:
            self._write_batch(node, batch)
        for batch in batches:
            for msg in batch.messages:
                self._send(node, msg)
        last = node.disk.last_index()
        node.core.persisted(last, node.disk.term_at(last))
        self._process(node)

    def _sync_now(self, node: SimNode) -> None:
        if node.fsync_handle is not None:
            node.fsync_handle.cancel()
        if node.unsynced:
            self._fsync(node)
        node.fsync_handle = None

    # ------------------------------------------------------------------ applying
    def _hand_out_committed(self, node: SimNode, entries: list[Entry]) -> None:
        for entry in entries:
            self._record_committed(node, entry)
        node.apply_queue.extend(entries)
        self._resume_apply(node)

    def _resume_apply(self, node: SimNode) -> None:
        if node.installing is not None:
            return   # as in RaftNode: the applier is busy installing the snapshot
        if self.cfg.apply_delay <= 0:
            self._apply_all(node)
        elif node.apply_handle is None and node.apply_queue:
            self._schedule_apply(node)

    def _schedule_apply(self, node: SimNode) -> None:
        inc = node.incarnation

        def fire() -> None:
            if not node.up or node.incarnation != inc:
                return
            node.apply_handle = None
            if node.installing is not None:
                return   # the install resumes applying when it is done
            if node.apply_queue:
                self._apply_one(node, node.apply_queue.popleft())
                self._after_apply(node)
            if node.apply_queue:
                self._schedule_apply(node)
        node.apply_handle = self.clock.call_later(self.cfg.apply_delay, fire)

    def _apply_all(self, node: SimNode) -> None:
        while node.apply_queue:
            self._apply_one(node, node.apply_queue.popleft())
        self._after_apply(node)

    def _apply_one(self, node: SimNode, entry: Entry) -> None:
        if entry.index <= node.sm.applied:
            return   # covered by an installed snapshot
        node.sm.apply(entry)
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
        if node.sm.applied - node.disk.snap_index >= self.cfg.compact_every:
            self.compact(node.id)

    def compact(self, nid: str) -> None:
        """Take a durable snapshot at the node's applied index and compact its log to it."""
        node = self.nodes[nid]
        index = node.sm.applied
        if not node.up or index <= node.disk.snap_index or index < node.core.snap_index:
            return
        meta = node.core.snapshot_meta(index)
        node.disk.install(DiskSnapshot(meta, node.sm.encode()), keep_log=True)
        node.core.compact(index)
        self.log(f"{nid} compacts to {index}")
        self._process(node)

    # ------------------------------------------------------------------ snapshots
    def _send_snapshot(self, node: SimNode, peer: str) -> None:
        index = node.sm.applied
        meta = node.core.snapshot_meta(index)
        data = node.sm.encode()
        size = self.cfg.chunk_size
        chunks = [data[i:i + size] for i in range(0, len(data), size)] or [b""]
        for n, chunk in enumerate(chunks):
            done = n == len(chunks) - 1
            self._send(node, Message(MsgType.SNAPSHOT, node.id, peer, term=node.core.term,
                                     snapshot=meta, offset=n * size, data=chunk, done=done))
        self.stats["snapshots_sent"] += 1
        self.stats["snapshot_chunks"] += len(chunks)
        self.log(f"{node.id} streams snapshot {index} to {peer} in {len(chunks)} chunks")
        node.core.snapshot_send_done(peer, True)

    def _stage_chunk(self, node: SimNode, msg: Message) -> None:
        if node.installing is not None:
            return   # as in RaftNode: a new stream must wait until the install is done
        key = (msg.src, msg.term, msg.snapshot.index, msg.snapshot.term)
        if node.staged is None or node.staged[0] != key:
            node.staged = (key, {}, None)
        _, parts, total = node.staged
        parts[msg.offset] = msg.data
        if msg.done:
            total = msg.offset + len(msg.data)
            node.staged = (key, parts, total)
        if total is None:
            return
        data, pos = b"", 0
        while pos < total and pos in parts:
            data += parts[pos]
            pos += len(parts[pos]) or total
        if pos < total or len(data) != total:
            return
        node.staged = None
        meta = msg.snapshot
        if not node.core.snapshot_received(meta, msg.src):
            return
        inc = node.incarnation
        delay = self.rng.uniform(*self.cfg.install_delay)
        node.installing = self.clock.call_later(
            delay, lambda: self._install(node, meta, data, msg.src)
            if node.up and node.incarnation == inc else None)

    def _install(self, node: SimNode, meta: SnapshotMeta, data: bytes, leader: str) -> None:
        """The install finishes: the core decides whether the snapshot replaces the log."""
        node.installing = None
        self._sync_now(node)   # the WAL marker is written after, and synced with, earlier writes
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
        for index in [i for i in node.writes if i <= meta.index]:
            # skipped over by the snapshot: this node can't tell whether its entry made it
            self.history.unknown(node.writes.pop(index).op)
        replaced = node.core.snapshot_installed(meta, leader)
        node.disk.install(DiskSnapshot(meta, data), keep_log=not replaced)
        self.stats["snapshots_installed"] += 1
        self.log(f"{node.id} installs snapshot {meta.index} (term {meta.term}) from {leader}"
                 f"{'' if replaced else ', keeping the log after it'}")
        self._resume_apply(node)
        self._serve_reads(node)
        self._process(node)

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
        node.reads[ctx] = PendingRead(op, self.max_acked)
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
                      f"{pr.must_see} was acknowledged before the read started")
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
                          f"{pr.must_see}, a write acknowledged before the read started")
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
        entry = self.committed.get(index)
        if entry is None:
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
        if known != entry:
            self.fail(f"two different entries committed at {entry.index}: {known} on some node, "
                      f"{entry} on {node.id}")
        if entry.index > self.max_committed:
            self.max_committed = entry.index
            for other in self.nodes.values():
                if (other.up and other.core.is_leader and other.core.term >= entry.term):
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

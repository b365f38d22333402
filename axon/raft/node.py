"""The gevent driver: ties the pure Raft core to the WAL, the transport and the state machine.

What to do with the core's output is decided by ``axon.raft.rules`` (shared with the
simulation); this module does the I/O with four greenlets, each with one job:
- ticker: advances the core's logical clock, and fails client waits past their deadline
  (``deadlines``: one sweep a tick instead of a timer per wait);
- loop: turns core output (``Ready``) into sends and WAL writes, queues committed entries,
  answers reads, stages received snapshot chunks, starts snapshot streams;
- syncer: group commit — one fdatasync covers every write queued meanwhile (on the hub's
  thread while syncs are quick, in a worker thread when slow: ``wal_sync``), then the
  messages that had to wait for durability go out;
- applier: applies committed entries that are durable here, answers proposals, installs
  received snapshots, syncs the store every few MiB applied and compacts the log.
Start-up lives in ``startup``, client bookkeeping in ``proposals`` and ``reads``, snapshot
streams in ``snapshot_send`` and ``snapshot_receive``.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any, Callable

import gevent
from gevent.event import AsyncResult, Event

from axon.raft import rules, startup
from axon.raft.core import ConfChange, RaftOptions, Ready, decode_config_bytes
from axon.raft.deadlines import Deadlines
from axon.raft.errors import NotLeader, Stopped, Timeout
from axon.raft.interfaces import StateMachine, Transport
from axon.raft.proposals import Proposals
from axon.raft.reads import Reads
from axon.raft.snapshot_receive import SnapshotReceiver
from axon.raft.snapshot_send import SnapshotSender
from axon.raft.types import ClusterConfig, Entry, EntryKind, Member, Message, SnapshotMeta
from axon.raft.wal import WAL
from axon.raft.wal_sync import WalSyncer

log = logging.getLogger("axon.raft")

# Work done in a worker thread (a slow fdatasync, a store sync, a snapshot's restore or read)
# needs the GIL to hand its result back, and by default waits up to 5 ms for the busy hub
# thread to let go of it: when every fdatasync ran in a worker, one such wait per commit on
# leader and follower doubled write latency.
GIL_SWITCH_INTERVAL = 0.0002
# While rounds of proposals come from several clients at once, a follower owed the commit
# index learns it from the next round's APPEND, or from an empty APPEND once this process
# has nothing else to do (libev's idle watcher): under load one message less per round, and
# what a follower serves (watches, stale reads) is late only while the leader is saturated.
# A lone client's commit is told at once.
HOLD_NOTICES_FROM_CLIENTS = 2
# A local write that failed for lack of space is tried again this often, backing off
STORAGE_RETRY_FIRST, STORAGE_RETRY_MAX = 0.1, 2.0
# The store is synced once this many bytes of entries were applied since its last sync.
# LevelDB's log is not synced on each apply, so a compaction's sync used to flush tens of MiB
# at once: with large values that took 20-100 ms, during which no entry was applied and the
# disk made every node's WAL fdatasync wait as long (they share it on one host).
STORE_SYNC_BYTES = 4 << 20


class RaftNode:
    """One Raft member on gevent. Thread-unsafe by design: everything runs on the hub's thread."""

    def __init__(self, node_id: str, member: Member, wal_dir: str, state_machine: StateMachine,
                 make_transport: Callable[[Callable[[Message], None]], Transport], *,
                 encode_batch: Callable[[list], bytes], item_size: Callable[[Any], int],
                 bootstrap: bool = False,
                 options: RaftOptions | None = None, tick_interval: float = 0.05,
                 snapshot_entries: int = 20000, keep_entries: int = 1000, snapshot_rate: float = 0.0,
                 snapshot_bytes: int = 64 << 20, staging_path: str | None = None) -> None:
        self.id = node_id
        self.member = member
        self.sm = state_machine
        self.tick_interval = tick_interval
        self.snapshot_entries = snapshot_entries
        self.snapshot_bytes = snapshot_bytes   # 0: no byte bound, counts only
        self.keep_entries = keep_entries
        self.wal = WAL.open(wal_dir)
        self.wal.delete_in = _in_background
        self.bootstrapped = startup.bootstrap(self.wal, self.sm, node_id, member, bootstrap)
        self.core = startup.recover_core(node_id, self.wal, self.sm, options or RaftOptions())
        self.transport = make_transport(self.receive)
        self.durability = rules.Durability(self.wal.last_index())
        self.apply_queue = rules.ApplyQueue()
        self.wal_syncer = WalSyncer()
        self.proposals = Proposals(encode_batch, item_size)
        self.reads = Reads()
        self.deadlines = Deadlines(tick_interval)
        self.snapshot_sender = SnapshotSender(node_id, self.core, self.sm, self.transport,
                                              snapshot_rate, self._wake_loop)
        self.snapshot_receiver = SnapshotReceiver(
            self.core, self.sm, self.wal, self.durability,
            staging_path or os.path.join(wal_dir, "snapshot.incoming"))
        self._applied = self.sm.applied_index
        self._unsynced_bytes = 0   # entry bytes applied since the store's last sync
        self._wake = Event()
        self._sync_wake = Event()
        self._apply_wake = Event()
        self._notice_idle = gevent.get_hub().loop.idle()
        self._notices_due = False
        self._peer_hints: dict[str, str] = {}
        self._greenlets: list[gevent.Greenlet] = []
        self._last_seen = (self.core.role, self.core.leader, self.core.term)
        self._config_seen: ClusterConfig | None = None
        self.stopped = False
        self.fatal: Callable[[BaseException], None] = self._default_fatal
        # for the node's metrics: plain counts, and each write's seconds from proposal to applied
        self.counts = {"leader_changes": 0, "proposals": 0, "snapshots_sent": 0,
                       "snapshots_installed": 0, "compactions": 0}
        self.on_commit: Callable[[float], None] = _ignore
        # Whether a failed local write will succeed once the operator frees space (the node's
        # disk alarm decides, and raises itself): the driver then waits as for a slow disk,
        # sending nothing the write should have preceded, instead of stopping the node.
        self.storage_full: Callable[[BaseException], bool] = lambda exc: False

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
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
        self._notice_idle.stop()
        self.snapshot_sender.stop()
        gevent.killall(self._greenlets, timeout=2)
        self.transport.stop()
        self.snapshot_receiver.close()
        try:
            self.wal.begin_sync().run()
        finally:
            self.wal.close()
        err = Stopped("node is shutting down")
        self.proposals.fail_all(err)
        self.reads.fail_all(err)

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

    def _wake_loop(self) -> None:
        self._wake.set()

    def _ticker(self) -> None:
        while True:
            gevent.sleep(self.tick_interval)
            self.core.tick()
            self._wake.set()
            for result, (what, timeout) in self.deadlines.expire(gevent.get_hub().loop.now()):
                result.set_exception(Timeout(f"{what} timed out after {timeout:g}s (no quorum?); "
                                             "outcome unknown", self.core.leader))

    def propose(self, items: list, timeout: float) -> list:
        """Replicate items (state-machine commands) and return their results once applied."""
        self._require_leader()
        started = time.perf_counter()
        self.counts["proposals"] += 1
        result = self.proposals.queue(items)
        self._wake.set()
        results = self._wait(result, timeout, "write")
        self.on_commit(time.perf_counter() - started)
        return results

    def read_barrier(self, timeout: float) -> None:
        """Return once a linearizable read may be served from the local state machine."""
        deadline = gevent.get_hub().loop.now() + timeout
        index = self.read_index(timeout)
        self.wait_applied(index, max(0.0, deadline - gevent.get_hub().loop.now()))

    def read_index(self, timeout: float) -> int:
        """The index a linearizable read must see applied (ReadIndex), once the leader confirmed it leads."""
        self._require_leader()
        result = self.reads.queue()
        self._wake.set()
        return self._wait(result, timeout, "read")

    def wait_applied(self, index: int, timeout: float) -> None:
        """Return once the state machine has applied ``index``."""
        if self._applied >= index:
            return
        self._wait(self.reads.wait_applied(index), timeout, "read")

    def change_membership(self, change: ConfChange, timeout: float) -> None:
        """Propose one membership change and wait until it is applied."""
        self._require_leader()
        try:
            index, term = self.core.propose_conf_change(change)
        except NotLeader:
            self._require_leader()
            raise
        result = self.proposals.track(index, term)
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
            raise self._not_leader()

    def _not_leader(self) -> NotLeader:
        return NotLeader(self.core.leader, self.leader_http())

    def _wait(self, result: AsyncResult, timeout: float, what: str) -> Any:
        """``result``'s value, or Timeout once ``timeout`` has passed (the ticker's Deadlines)."""
        if result.ready():
            return result.get()
        entry = self.deadlines.add(gevent.get_hub().loop.now(), timeout, result, (what, timeout))
        try:
            return result.get()
        finally:
            self.deadlines.remove(entry)

    # ------------------------------------------------------------------ main loop
    def _loop(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            clients = self.proposals.flush(self.core, self._not_leader)
            if clients:
                self.core.hold_commit_notices = clients >= HOLD_NOTICES_FROM_CLIENTS
            if self._notices_due:
                self._notices_due = False
                self.core.send_commit_notices()
            self.reads.flush(self.core)
            while True:
                rd = self.core.ready()
                if rd.empty():
                    break
                self._handle_ready(rd)
            if self.core.commit_notices_held and not self._notice_idle.active:
                self._notice_idle.start(self._commit_notices_due)
            self._observe()

    def _commit_notices_due(self) -> None:
        self._notice_idle.stop()   # an idle watcher fires on every idle turn until stopped
        self._notices_due = True
        self._wake.set()

    def _handle_ready(self, rd: Ready) -> None:
        send = self.transport.send
        for msg in rd.messages:   # before the local write: see rules.Durability
            send(msg)
        writes, free = self.durability.track(rd)
        if writes:
            # a failed append is cut off again (axon/raft/wal.py), so the same one can be retried
            self._until_written("append to the log", lambda: self.wal.append(rd.entries, rd.hard_state))
            self._sync_wake.set()
        for msg in free:
            send(msg)
        if rd.committed:
            self.apply_queue.push(rd.committed)
            self._apply_wake.set()
        if rd.read_states or rd.failed_reads:
            self.reads.answered(rd.read_states, rd.failed_reads, self._not_leader)
        for peer in rd.snapshot_sends:
            self.counts["snapshots_sent"] += 1
            self.snapshot_sender.start(peer)
        for chunk in rd.snapshot_chunks:
            meta = self.snapshot_receiver.chunk(chunk)
            if meta is not None:
                self.apply_queue.push_snapshot(meta)
                self._apply_wake.set()

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
            if leader and leader != self._last_seen[1]:
                self.counts["leader_changes"] += 1
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
            if not self.durability.unsynced:
                continue
            upto = self.durability.written
            self.wal_syncer.run(self.wal)
            self._synced(self.durability.sync_completed(upto))

    def _synced(self, done: rules.Synced) -> None:
        """Tell the core how far its log is durable, send what waited for it, apply what it allows."""
        if done.persisted is not None:
            self.core.persisted(*done.persisted)
        for msg in done.release:
            self.transport.send(msg)
        self._apply_wake.set()
        self._wake.set()

    # ------------------------------------------------------------------ applying
    def _applier(self) -> None:
        while True:
            self._apply_wake.wait()
            self._apply_wake.clear()
            while (work := self.apply_queue.take(self._applied,
                                                 self.durability.durable_index)) is not None:
                if isinstance(work, SnapshotMeta):
                    self._install_snapshot(work)
                else:
                    self._apply(work)
            self._maybe_sync_store()
            self._maybe_compact()

    def _apply(self, entries: list[Entry]) -> None:
        # a state machine's apply is atomic: after a failure the same entries are applied again
        results = self._until_written("apply", lambda: self.sm.apply(entries), self.sm.reopen)
        self.proposals.applied(entries, results)
        for entry in entries:
            if entry.kind == EntryKind.CONFIG:
                config = decode_config_bytes(entry.data)
                log.info("membership applied at %d: voters=%s learners=%s", entry.index,
                         sorted(config.voters), sorted(config.learners))
        self._applied = entries[-1].index
        self._unsynced_bytes += sum(len(entry.data) for entry in entries)
        self.reads.applied(self._applied)

    def _install_snapshot(self, meta: SnapshotMeta) -> None:
        done = self.snapshot_receiver.install(meta)
        self.counts["snapshots_installed"] += 1
        self._applied = max(self._applied, meta.index)
        self._synced(done)
        self.reads.applied(self._applied)

    def _maybe_sync_store(self) -> None:
        """Sync the store once STORE_SYNC_BYTES were applied since its last sync, so that no
        sync (a compaction's included) has more than that to flush."""
        if self._unsynced_bytes < STORE_SYNC_BYTES:
            return
        try:
            self._sync_store()
        except Exception as exc:
            if not self.storage_full(exc):
                raise
            log.warning("store sync put off: %s", exc)   # a compaction's sync waits for space

    def _maybe_compact(self) -> None:
        target = rules.compaction_index(self._applied, self.core.snap_index, self.keep_entries,
                                        self.snapshot_entries)
        why = "entries"
        if target is None:
            target = rules.byte_compaction_index(self.core, self._applied, self.keep_entries,
                                                 self.snapshot_bytes)
            why = "bytes"
        if target is None:
            return
        try:
            compacted = rules.compact(self.core, target, self._sync_store, self.wal.compact)
        except Exception as exc:
            if not self.storage_full(exc):
                raise
            log.warning("log compaction to %d put off: %s", target, exc)   # the next apply tries again
            return
        if compacted:
            self.counts["compactions"] += 1
            log.info("log compacted to index %d (%s bound), %d bytes held", target, why,
                     self.core.log_bytes)

    def _until_written(self, what: str, write: Callable[[], Any],
                       reopen: Callable[[], None] | None = None) -> Any:
        """``write()``, waited out and tried again while it fails for lack of space.

        ``reopen`` runs before each retry (LevelDB refuses every write after a failed one
        until it is opened again).  Any other failure is raised, and stops the node.
        """
        delay = STORAGE_RETRY_FIRST
        while True:
            try:
                return write()
            except Exception as exc:
                if not self.storage_full(exc):
                    raise
                if delay == STORAGE_RETRY_FIRST:
                    log.error("cannot %s: %s; waiting for space", what, exc)
            gevent.sleep(delay)
            delay = min(delay * 2, STORAGE_RETRY_MAX)
            if reopen is not None:
                try:
                    reopen()
                except Exception as exc:
                    if not self.storage_full(exc):
                        raise

    def _sync_store(self) -> None:
        self._unsynced_bytes = 0   # what is applied from here on is not covered
        self.sm.sync()

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


def _in_background(delete: Callable[[], None]) -> None:
    """Compacted WAL segments are deleted from a worker thread: unlinking one holds the loop
    for tens of ms.  A failure is logged; the files left are deleted after the next compaction."""
    done = gevent.get_hub().threadpool.spawn(delete)
    done.rawlink(lambda result: result.successful()
                 or log.warning("cannot delete compacted WAL segments: %s", result.exception))


def _ignore(seconds: float) -> None:
    pass

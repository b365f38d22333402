"""The Raft consensus algorithm as a pure, deterministic state machine.

No sockets, no clocks, no disk.  The driver feeds events in (``tick``, ``step``,
``propose``, ``read_index``, ``persisted``, ...) and collects what must happen
next with ``ready()``: entries and hard state to make durable, messages to send
(some only once that write is durable), committed entries to apply, reads that
may proceed, and snapshots to send.  Layout follows the Raft dissertation:
pre-vote, check-quorum, single-server membership changes with learners that
catch up before they vote, leadership transfer and ReadIndex.
"""
from __future__ import annotations

import enum
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Sequence

import msgpack

from axon.raft.types import (ClusterConfig, Entry, EntryKind, HardState, Member, Message, MsgType,
                    SnapshotMeta, decode_config, encode_config)

from axon.raft.errors import ConfChangeError, NotLeader, RaftError  # noqa: F401  (raised here; callers import them from errors)

TRANSFER_CONTEXT = b"transfer"


class Role(str, enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass
class RaftOptions:
    election_ticks: int = 10          # election timeout is randomized in [election_ticks, 2*election_ticks)
    heartbeat_ticks: int = 2
    max_append_entries: int = 1024
    max_append_bytes: int = 1 << 20
    max_inflight: int = 256           # pipelined APPENDs per follower
    max_committed_per_ready: int = 8192
    pre_vote: bool = True
    check_quorum: bool = True
    auto_promote: bool = True         # promote a learner once it has caught up
    promote_lag: int = 64             # "caught up" = match within this many entries of our last index
    snapshot_timeout_ticks: int = 600  # give up on a snapshot send nobody acknowledged


@dataclass(frozen=True)
class ConfChange:
    op: str                           # "add_learner" | "promote" | "remove"
    node_id: str
    member: Member | None = None


@dataclass(frozen=True, slots=True)
class ReadState:
    """A linearizable read may proceed once the state machine has applied ``index``."""
    ctx: int
    index: int


@dataclass
class Ready:
    hard_state: HardState | None = None
    entries: list[Entry] = field(default_factory=list)         # append to the WAL (may overwrite a suffix)
    messages: list[Message] = field(default_factory=list)      # send now
    persist_messages: list[Message] = field(default_factory=list)  # send after every earlier write is durable
    committed: list[Entry] = field(default_factory=list)       # apply in order
    read_states: list[ReadState] = field(default_factory=list)
    failed_reads: list[int] = field(default_factory=list)      # ctx of reads this node can no longer serve
    snapshot_sends: list[str] = field(default_factory=list)    # peers to stream the current snapshot to
    snapshot_chunks: list[Message] = field(default_factory=list)  # received chunks to stage

    def empty(self) -> bool:
        return not (self.hard_state or self.entries or self.messages or self.persist_messages
                    or self.committed or self.read_states or self.failed_reads or self.snapshot_sends
                    or self.snapshot_chunks)


class ProgressState(enum.Enum):
    PROBE = 0
    REPLICATE = 1
    SNAPSHOT = 2


@dataclass
class Progress:
    """What the leader knows of one follower's log."""
    match: int = 0
    next: int = 1
    state: ProgressState = ProgressState.PROBE
    probe_sent: bool = False
    inflight: deque = field(default_factory=deque)   # last index of each APPEND in flight
    recent_active: bool = False
    snapshot_index: int = 0
    snapshot_elapsed: int = 0
    read_ack: int = 0                                # highest read-barrier sequence acknowledged
    commit_sent: int = 0                             # the commit index the last APPEND carried
    durable_told: int = 0                            # how far we told it our log is durable
    counts_durable: bool = False                     # its acks say it commits by our word on our disk

    def become_probe(self) -> None:
        if self.state == ProgressState.SNAPSHOT:
            self.next = max(self.match + 1, self.snapshot_index + 1)
        else:
            self.next = self.match + 1
        self.state = ProgressState.PROBE
        self.probe_sent = False
        self.inflight.clear()
        self.snapshot_index = 0

    def become_replicate(self) -> None:
        self.state = ProgressState.REPLICATE
        self.next = self.match + 1
        self.probe_sent = False
        self.inflight.clear()

    def become_snapshot(self, index: int) -> None:
        self.state = ProgressState.SNAPSHOT
        self.snapshot_index = index
        self.snapshot_elapsed = 0
        self.inflight.clear()

    def update_match(self, index: int) -> bool:
        """Record an acknowledged index; False when the response is stale (reordered/duplicated)."""
        if index <= self.match:
            return False
        self.match = index
        self.next = max(self.next, index + 1)
        self.probe_sent = False
        while self.inflight and self.inflight[0] <= index:
            self.inflight.popleft()
        return True

    def paused(self, max_inflight: int) -> bool:
        if self.state == ProgressState.PROBE:
            return self.probe_sent
        if self.state == ProgressState.SNAPSHOT:
            return True
        return len(self.inflight) >= max_inflight


def bootstrap_entry(node_id: str, member: Member) -> Entry:
    """The first entry of a new one-node cluster."""
    config = ClusterConfig(voters={node_id: member})
    return Entry(index=1, term=1, kind=EntryKind.CONFIG, data=encode_config_bytes(config))


def encode_config_bytes(config: ClusterConfig) -> bytes:
    return msgpack.packb(encode_config(config), use_bin_type=True)


def decode_config_bytes(data: bytes) -> ClusterConfig:
    return decode_config(msgpack.unpackb(data, raw=False))


class RaftCore:
    """One member's Raft state machine. See the module docstring for the protocol of use."""

    def __init__(self, node_id: str, *, hard_state: HardState = HardState(),
                 snapshot: SnapshotMeta = SnapshotMeta(), entries: Sequence[Entry] = (),
                 applied: int = 0, options: RaftOptions | None = None,
                 rng: random.Random | None = None) -> None:
        self.id = node_id
        self.opts = options or RaftOptions()
        self.rng = rng or random.Random()
        self.term = hard_state.term
        self.vote = hard_state.vote
        self._persisted_hs = hard_state
        self.snap_index = snapshot.index
        self.snap_term = snapshot.term
        self.snap_config = snapshot.config
        self.log: list[Entry] = [e for e in entries if e.index > self.snap_index]
        self._check_contiguous()
        # Bytes of entry data held in self.log: the driver compacts on it as well as on counts.
        self.log_bytes = sum(len(e.data) for e in self.log)
        self.commit = max(self.snap_index, min(applied, self.last_index()))
        self.applied = self.commit       # highest index handed out as committed
        self.stable = self.last_index()  # everything recovered is durable
        self.config = self._config_from_log()
        self.pending_conf_index = self._last_config_index()
        self.role = Role.FOLLOWER
        self.leader: str | None = None
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_timeout = 0
        self._reset_randomized_timeout()
        self.votes: dict[str, bool] = {}
        self.progress: dict[str, Progress] = {}
        self.transferee: str | None = None
        self.transfer_elapsed = 0
        self.read_seq = 0
        self._read_seq_sent = 0
        self.pending_reads: list[tuple[int, int, int]] = []   # (ctx, index, seq)
        self.waiting_reads: list[int] = []                     # ctx, until an entry of this term commits
        # Set by the driver while clients keep it busy: a follower owed the commit index then
        # learns it from the next APPEND with entries, or from send_commit_notices(), instead
        # of from an empty APPEND of its own (see _owes_commit).
        self.hold_commit_notices = False
        self.commit_notices_held = False
        # Follower side: how far other voters hold this term's leader's log durably, as they
        # told us (the leader does after its syncs: _tell_followers_durable; _commit_by_peers).
        self.peer_durable: dict[str, int] = {}
        self.durable_told = 0   # leader side: the most we told followers of our disk this term
        self._ready = Ready()

    # ------------------------------------------------------------------ log helpers
    def _check_contiguous(self) -> None:
        for pos, entry in enumerate(self.log):
            if entry.index != self.snap_index + 1 + pos:
                raise ValueError(f"log not contiguous at {entry.index} (snapshot {self.snap_index})")

    def last_index(self) -> int:
        return self.snap_index + len(self.log)

    def last_term(self) -> int:
        return self.log[-1].term if self.log else self.snap_term

    def term_at(self, index: int) -> int | None:
        """Term of the entry at index; None when compacted away or beyond the end."""
        if index == self.snap_index:
            return self.snap_term
        if index < self.snap_index or index > self.last_index():
            return None
        return self.log[index - self.snap_index - 1].term

    def entries_from(self, lo: int, max_count: int, max_bytes: int) -> list[Entry]:
        start = lo - self.snap_index - 1
        out: list[Entry] = []
        size = 0
        for entry in self.log[start:start + max_count]:
            size += len(entry.data) + 16
            if out and size > max_bytes:
                break
            out.append(entry)
        return out

    def _config_from_log(self) -> ClusterConfig:
        for entry in reversed(self.log):
            if entry.kind == EntryKind.CONFIG:
                return decode_config_bytes(entry.data)
        return self.snap_config

    def _last_config_index(self) -> int:
        for entry in reversed(self.log):
            if entry.kind == EntryKind.CONFIG:
                return entry.index
        return self.snap_index

    # ------------------------------------------------------------------ public state
    @property
    def is_leader(self) -> bool:
        return self.role == Role.LEADER

    def promotable(self) -> bool:
        return self.id in self.config.voters

    def hard_state(self) -> HardState:
        return HardState(self.term, self.vote)

    def status(self) -> dict:
        return {
            "node_id": self.id, "state": self._state_name(), "leader": self.leader,
            "term": self.term, "commit_index": self.commit, "applied_index": self.applied,
            "last_index": self.last_index(), "snapshot_index": self.snap_index,
            "log_bytes": self.log_bytes,
            "voters": sorted(self.config.voters), "learners": sorted(self.config.learners),
        }

    def _state_name(self) -> str:
        if self.role == Role.FOLLOWER and self.id in self.config.learners:
            return "learner"
        return "candidate" if self.role == Role.PRE_CANDIDATE else self.role.value

    def peer_progress(self) -> dict[str, dict]:
        return {pid: {"match": p.match, "next": p.next, "state": p.state.name.lower(),
                      "recent_active": p.recent_active}
                for pid, p in self.progress.items()}

    # ------------------------------------------------------------------ output
    def ready(self) -> Ready:
        """Everything the driver must do now; clears the core's output buffers."""
        if self.is_leader and self.read_seq > self._read_seq_sent:
            self._read_seq_sent = self.read_seq
            self._broadcast_heartbeat()
        hs = self.hard_state()
        if hs != self._persisted_hs:
            self._ready.hard_state = hs
            self._persisted_hs = hs
        if self.commit > self.applied:
            hi = min(self.commit, self.applied + self.opts.max_committed_per_ready)
            lo_pos = self.applied - self.snap_index
            self._ready.committed.extend(self.log[lo_pos:hi - self.snap_index])
            self.applied = hi
        out, self._ready = self._ready, Ready()
        return out

    def has_ready(self) -> bool:
        return (not self._ready.empty() or self.hard_state() != self._persisted_hs
                or self.commit > self.applied
                or (self.is_leader and self.read_seq > self._read_seq_sent))

    def _send(self, msg: Message, after_persist: bool = False) -> None:
        (self._ready.persist_messages if after_persist else self._ready.messages).append(msg)

    def _msg(self, mtype: MsgType, to: str, **kw) -> Message:
        return Message(type=mtype, src=self.id, dst=to, term=self.term, **kw)

    # ------------------------------------------------------------------ role changes
    def _reset(self, term: int) -> None:
        if term != self.term:
            self.term = term
            self.vote = None
            self.peer_durable = {}
        self.leader = None
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self._reset_randomized_timeout()
        self.votes = {}
        self.transferee = None
        self._fail_reads()

    def _reset_randomized_timeout(self) -> None:
        et = self.opts.election_ticks
        self.randomized_timeout = et + self.rng.randrange(et)

    def _fail_reads(self) -> None:
        self._ready.failed_reads.extend(ctx for ctx, _, _ in self.pending_reads)
        self._ready.failed_reads.extend(self.waiting_reads)
        self.pending_reads = []
        self.waiting_reads = []

    def become_follower(self, term: int, leader: str | None) -> None:
        self._reset(term)
        self.role = Role.FOLLOWER
        self.leader = leader
        self.progress = {}

    def _become_pre_candidate(self) -> None:
        # Pre-vote changes neither term nor vote: a partitioned node can't disrupt the cluster.
        self.role = Role.PRE_CANDIDATE
        self.leader = None
        self.votes = {}
        self.election_elapsed = 0
        self._reset_randomized_timeout()

    def _become_candidate(self) -> None:
        self._reset(self.term + 1)
        self.role = Role.CANDIDATE
        self.vote = self.id

    def _become_leader(self) -> None:
        self._reset(self.term)
        self.role = Role.LEADER
        self.leader = self.id
        self.durable_told = 0
        last = self.last_index()
        self.progress = {}
        for pid in self.config.members():
            if pid != self.id:
                self.progress[pid] = Progress(match=0, next=last + 1, recent_active=True)
        self.pending_conf_index = max(self.pending_conf_index, self._last_config_index())
        self._append([Entry(last + 1, self.term, EntryKind.NOOP)])
        self._broadcast_append()

    # ------------------------------------------------------------------ ticks
    def tick(self) -> None:
        if self.role == Role.LEADER:
            self._tick_leader()
        else:
            self._tick_election()

    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self.promotable() and self.election_elapsed >= self.randomized_timeout:
            self.election_elapsed = 0
            self.campaign()

    def _tick_leader(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        for pr in self.progress.values():
            if pr.state == ProgressState.SNAPSHOT:
                pr.snapshot_elapsed += 1
                if pr.snapshot_elapsed >= self.opts.snapshot_timeout_ticks:
                    pr.become_probe()
        if self.election_elapsed >= self.opts.election_ticks:
            self.election_elapsed = 0
            if self.opts.check_quorum and not self._quorum_active():
                self.become_follower(self.term, None)
                return
            if self.transferee is not None:
                self.transferee = None   # transfer did not finish within an election timeout
        if self.heartbeat_elapsed >= self.opts.heartbeat_ticks:
            self.heartbeat_elapsed = 0
            self._broadcast_heartbeat()

    def _quorum_active(self) -> bool:
        active = sum(1 for pid in self.config.voters
                     if pid == self.id or (pid in self.progress and self.progress[pid].recent_active))
        for pr in self.progress.values():
            pr.recent_active = False
        return active >= self.config.quorum()

    # ------------------------------------------------------------------ elections
    def campaign(self, transfer: bool = False) -> None:
        """Start an election (with pre-vote unless this is a leadership transfer)."""
        if not self.promotable():
            return
        if self.opts.pre_vote and not transfer:
            self._become_pre_candidate()
            vote_type, term = MsgType.PREVOTE, self.term + 1
        else:
            self._become_candidate()
            vote_type, term = MsgType.VOTE, self.term
        self.votes = {self.id: True}
        if self._tally() == "won":
            self._win_election()
            return
        ctx = TRANSFER_CONTEXT if transfer else b""
        for pid in self.config.voters:
            if pid != self.id:
                msg = Message(type=vote_type, src=self.id, dst=pid, term=term,
                              index=self.last_index(), log_term=self.last_term(), context=ctx)
                self._send(msg, after_persist=True)

    def _tally(self) -> str:
        granted = sum(1 for pid, ok in self.votes.items() if ok and pid in self.config.voters)
        rejected = sum(1 for pid, ok in self.votes.items() if not ok and pid in self.config.voters)
        quorum = self.config.quorum()
        if granted >= quorum:
            return "won"
        if rejected >= quorum:
            return "lost"
        return "pending"

    def _win_election(self) -> None:
        if self.role == Role.PRE_CANDIDATE:
            self.campaign(transfer=True)  # real election now, without another pre-vote round
        else:
            self._become_leader()

    def _log_up_to_date(self, index: int, term: int) -> bool:
        return term > self.last_term() or (term == self.last_term() and index >= self.last_index())

    def _in_lease(self) -> bool:
        """True while we recently heard from a live leader (check-quorum stickiness)."""
        return (self.opts.check_quorum and self.leader is not None
                and self.election_elapsed < self.opts.election_ticks)

    def _handle_vote_request(self, msg: Message) -> None:
        pre = msg.type == MsgType.PREVOTE
        resp_type = MsgType.PREVOTE_RESP if pre else MsgType.VOTE_RESP
        can_vote = (self.vote == msg.src
                    or (self.vote is None and self.leader is None)
                    or (pre and msg.term > self.term))
        if can_vote and self._log_up_to_date(msg.index, msg.log_term):
            # A granted pre-vote answers with the candidate's term, so the candidate counts it.
            self._send(Message(type=resp_type, src=self.id, dst=msg.src, term=msg.term),
                       after_persist=True)
            if not pre:
                self.election_elapsed = 0
                self.vote = msg.src
        else:
            self._send(Message(type=resp_type, src=self.id, dst=msg.src, term=self.term,
                               reject=True), after_persist=True)

    def _handle_vote_response(self, msg: Message) -> None:
        if self.role not in (Role.PRE_CANDIDATE, Role.CANDIDATE):
            return   # a late answer from an election that is already decided
        expected = MsgType.PREVOTE_RESP if self.role == Role.PRE_CANDIDATE else MsgType.VOTE_RESP
        if msg.type != expected:
            return
        self.votes.setdefault(msg.src, not msg.reject)
        result = self._tally()
        if result == "won":
            self._win_election()
        elif result == "lost":
            self.become_follower(self.term, None)

    # ------------------------------------------------------------------ message entry point
    def step(self, msg: Message) -> None:
        """Handle one message from a peer."""
        if msg.term > self.term:
            if not self._accept_higher_term(msg):
                return
        elif msg.term < self.term:
            self._handle_stale_term(msg)
            return
        handler = {
            MsgType.APPEND: self._handle_append,
            MsgType.HEARTBEAT: self._handle_heartbeat,
            MsgType.SNAPSHOT: self._handle_snapshot_chunk,
            MsgType.VOTE: self._handle_vote_request,
            MsgType.PREVOTE: self._handle_vote_request,
            MsgType.VOTE_RESP: self._handle_vote_response,
            MsgType.PREVOTE_RESP: self._handle_vote_response,
            MsgType.APPEND_RESP: self._handle_append_response,
            MsgType.HEARTBEAT_RESP: self._handle_heartbeat_response,
            MsgType.SNAPSHOT_RESP: self._handle_snapshot_response,
            MsgType.TIMEOUT_NOW: self._handle_timeout_now,
        }.get(msg.type)
        if handler is not None:
            handler(msg)

    def _accept_higher_term(self, msg: Message) -> bool:
        """Decide whether a message with a higher term moves us to it; False = ignore it."""
        if msg.type in (MsgType.VOTE, MsgType.PREVOTE):
            if msg.context != TRANSFER_CONTEXT and self._in_lease():
                return False
        if msg.type == MsgType.PREVOTE or (msg.type == MsgType.PREVOTE_RESP and not msg.reject):
            return True   # pre-vote traffic never changes our term
        leader = msg.src if msg.type in (MsgType.APPEND, MsgType.HEARTBEAT, MsgType.SNAPSHOT) else None
        self.become_follower(msg.term, leader)
        return True

    def _handle_stale_term(self, msg: Message) -> None:
        if msg.type in (MsgType.APPEND, MsgType.HEARTBEAT, MsgType.SNAPSHOT):
            # Tell a deposed leader about the newer term so it steps down.
            self._send(self._msg(MsgType.APPEND_RESP, msg.src, index=self.last_index()))
        elif msg.type == MsgType.PREVOTE:
            self._send(self._msg(MsgType.PREVOTE_RESP, msg.src, reject=True))

    # ------------------------------------------------------------------ follower side
    def _follow(self, msg: Message) -> None:
        if self.role != Role.FOLLOWER:
            self.become_follower(self.term, msg.src)
        self.leader = msg.src
        self.election_elapsed = 0

    def _handle_append(self, msg: Message) -> None:
        self._follow(msg)
        if msg.index < self.commit:
            self._send(self._msg(MsgType.APPEND_RESP, msg.src, index=self.commit, done=True),
                       after_persist=True)
            return
        if self.term_at(msg.index) != msg.log_term:
            hint = min(msg.index, self.last_index())
            self._send(self._msg(MsgType.APPEND_RESP, msg.src, index=msg.index, reject=True,
                                 reject_hint=hint))
            return
        last_new = msg.index + len(msg.entries)
        self._merge(msg.entries)
        self._advance_follower_commit(min(msg.commit, last_new))
        if msg.done and not msg.entries:
            return   # a commit notice: the leader knows we hold its index, an answer tells it nothing
        # done: we commit by what the leader tells us of its disk, so it may spare us notices
        self._send(self._msg(MsgType.APPEND_RESP, msg.src, index=last_new, done=True), after_persist=True)

    def _note_peer_durable(self, msg: Message) -> None:
        """A voter's word on how far its log is durable: the leader's (_tell_followers_durable)."""
        if self.role != Role.FOLLOWER or msg.reject or msg.src not in self.config.voters:
            return
        if msg.index > self.peer_durable.get(msg.src, 0):
            self.peer_durable[msg.src] = msg.index
            self._commit_by_peers()

    def _commit_by_peers(self) -> None:
        """Commit what a quorum of voters holds durably, counting ourselves and what they told us.

        The rule is the leader's own (_quorum_commit): an entry of the current term on a quorum
        is committed.  A report says its sender's log matches the leader's through its index
        and is on its disk (the leader's own log trivially matches); our entry at the
        candidate index having this term means ours matches too.  A voter that told us
        nothing counts as nothing, so of more than three voters a follower still needs the
        leader's commit index.  A follower a membership change behind counts by a
        configuration at most one change from the leader's, whose quorums overlap the
        leader's; two changes behind, the leader has committed the first change, which lies
        after the candidate.
        """
        candidate = self._quorum_commit(self._told_durable)
        if candidate:
            self.commit = candidate

    def _merge(self, entries: Sequence[Entry]) -> None:
        """Append entries, cutting a conflicting uncommitted suffix first."""
        for pos, entry in enumerate(entries):
            existing = self.term_at(entry.index)
            if existing == entry.term:
                continue
            if entry.index <= self.commit:
                raise AssertionError(f"{self.id}: conflict at committed index {entry.index}")
            if entry.index <= self.last_index():
                self._truncate_from(entry.index)
            self._append(list(entries[pos:]))
            return

    def _truncate_from(self, index: int) -> None:
        cut = index - self.snap_index - 1
        self.log_bytes -= sum(len(e.data) for e in self.log[cut:])
        del self.log[cut:]
        # Entries appended since the last ready() and cut now were never handed out: the
        # driver must not write them, or its append would hold one index twice.
        if self._ready.entries and self._ready.entries[-1].index >= index:
            self._ready.entries = [e for e in self._ready.entries if e.index < index]
        self.stable = min(self.stable, index - 1)
        self.config = self._config_from_log()
        self.pending_conf_index = self._last_config_index()

    def _append(self, entries: list[Entry]) -> None:
        self.log.extend(entries)
        self.log_bytes += sum(len(e.data) for e in entries)
        self._ready.entries.extend(entries)
        for entry in entries:
            if entry.kind == EntryKind.CONFIG:
                # Single-server changes take effect as soon as they are in the log.
                self._apply_config(decode_config_bytes(entry.data), entry.index)

    def _advance_follower_commit(self, index: int) -> None:
        if index > self.commit:
            self.commit = min(index, self.last_index())

    def _handle_heartbeat(self, msg: Message) -> None:
        self._follow(msg)
        self._advance_follower_commit(msg.commit)
        self._send(self._msg(MsgType.HEARTBEAT_RESP, msg.src, context=msg.context))

    def _handle_snapshot_chunk(self, msg: Message) -> None:
        self._follow(msg)
        self._ready.snapshot_chunks.append(msg)

    def snapshot_received(self, meta: SnapshotMeta, leader: str) -> bool:
        """All chunks are staged; True if the driver should install it (then call snapshot_installed)."""
        if meta.index <= self.commit:
            self._send(self._msg(MsgType.SNAPSHOT_RESP, leader, index=self.commit))
            return False
        if self.term_at(meta.index) == meta.term:
            # We already hold that entry: installing would drop the suffix after it, which we
            # may have acknowledged (a snapshot racing a delayed APPEND_RESP).  Keep the log.
            self.commit = meta.index
            self._send(self._msg(MsgType.SNAPSHOT_RESP, leader, index=meta.index), after_persist=True)
            return False
        return True

    def snapshot_installed(self, meta: SnapshotMeta, leader: str | None = None) -> bool:
        """The store now holds the snapshot.  True: the log is replaced by it (the driver drops
        its whole log); False: the log is kept after it (the driver compacts up to it)."""
        if meta.index <= self.commit or self.term_at(meta.index) == meta.term:
            # Appends that arrived while the snapshot was installing already hold its last
            # entry; what follows may have been acknowledged, so it must stay.
            self.commit = max(self.commit, meta.index)
            self.applied = max(self.applied, meta.index)
            self.stable = max(self.stable, meta.index)
            self.compact(meta.index)
            replaced = False
        else:
            self.snap_index, self.snap_term, self.snap_config = meta.index, meta.term, meta.config
            self.log = []
            self.log_bytes = 0
            self._ready.entries = []   # not written yet, and no longer in the log
            self.commit = self.applied = self.stable = meta.index
            self.config = meta.config
            self.pending_conf_index = meta.index
            replaced = True
        if leader is not None:
            self._send(self._msg(MsgType.SNAPSHOT_RESP, leader, index=meta.index))
        return replaced

    def _handle_timeout_now(self, msg: Message) -> None:
        if self.promotable():
            self.campaign(transfer=True)

    # ------------------------------------------------------------------ leader side
    def propose(self, datas: Sequence[bytes], kind: EntryKind = EntryKind.NORMAL) -> tuple[int, int]:
        """Append entries; returns (first index, term). The driver waits for them to commit."""
        if not self.is_leader:
            raise NotLeader(self.leader)
        if self.transferee is not None:
            raise NotLeader(None)
        first = self.last_index() + 1
        self._append([Entry(first + i, self.term, kind, data) for i, data in enumerate(datas)])
        self._broadcast_append()
        self._maybe_commit()   # a single-voter cluster commits once persisted
        return first, self.term

    def propose_conf_change(self, change: ConfChange) -> tuple[int, int]:
        """Append one membership change; refused while another is uncommitted."""
        if not self.is_leader:
            raise NotLeader(self.leader)
        if self.pending_conf_index > self.commit:
            raise ConfChangeError("another membership change is in progress")
        if self.term_at(self.commit) != self.term:
            raise ConfChangeError("leader has not committed an entry in its term yet")
        new = self._changed_config(change)
        return self.propose([encode_config_bytes(new)], EntryKind.CONFIG)

    def _changed_config(self, change: ConfChange) -> ClusterConfig:
        voters, learners = dict(self.config.voters), dict(self.config.learners)
        nid = change.node_id
        if change.op == "add_learner":
            if nid in voters:
                raise ConfChangeError(f"{nid} is already a voter")
            learners[nid] = change.member or Member()
        elif change.op == "promote":
            if nid not in learners:
                raise ConfChangeError(f"{nid} is not a learner")
            voters[nid] = learners.pop(nid)
        elif change.op == "remove":
            if nid not in voters and nid not in learners:
                raise ConfChangeError(f"{nid} is not a member")
            voters.pop(nid, None)
            learners.pop(nid, None)
            if not voters:
                raise ConfChangeError("refusing to remove the last voter")
        else:
            raise ConfChangeError(f"unknown membership change {change.op!r}")
        return ClusterConfig(voters=voters, learners=learners)

    def _apply_config(self, config: ClusterConfig, index: int) -> None:
        self.config = config
        self.pending_conf_index = index
        if not self.is_leader:
            return
        last = self.last_index()
        for pid in config.members():
            if pid != self.id and pid not in self.progress:
                self.progress[pid] = Progress(match=0, next=last + 1, recent_active=True)
        for pid in list(self.progress):
            if not config.is_member(pid):
                del self.progress[pid]

    def transfer_leadership(self, target: str) -> None:
        if not self.is_leader:
            raise NotLeader(self.leader)
        if target == self.id:
            return
        if target not in self.config.voters:
            raise ConfChangeError(f"{target} is not a voter")
        self.transferee = target
        self.election_elapsed = 0
        pr = self.progress[target]
        if pr.match == self.last_index():
            self._send(self._msg(MsgType.TIMEOUT_NOW, target))
        else:
            self._send_append(target)

    def _broadcast_append(self) -> None:
        for pid in self.progress:
            self._send_append(pid)

    def _broadcast_heartbeat(self) -> None:
        ctx = str(self.read_seq).encode() if self.read_seq else b""
        for pid, pr in self.progress.items():
            self._send(self._msg(MsgType.HEARTBEAT, pid, commit=min(pr.match, self.commit), context=ctx))

    def _send_append(self, pid: str, allow_empty: bool = False, notice: bool = False) -> None:
        """Send pid the entries it lacks; with nothing to send, an empty APPEND if
        ``allow_empty`` (a probe) or ``notice`` (a commit notice, which wants no answer unless
        it is refused)."""
        pr = self.progress[pid]
        if pr.paused(self.opts.max_inflight):
            return
        prev = pr.next - 1
        prev_term = self.term_at(prev)
        if prev_term is None:
            self._start_snapshot(pid, pr)
            return
        entries = self.entries_from(pr.next, self.opts.max_append_entries, self.opts.max_append_bytes)
        if not entries and not (allow_empty or notice) and pr.state == ProgressState.REPLICATE:
            return
        self._send(self._msg(MsgType.APPEND, pid, index=prev, log_term=prev_term,
                             entries=tuple(entries), commit=self.commit,
                             done=notice and not entries and pr.state == ProgressState.REPLICATE))
        pr.commit_sent = self.commit
        if pr.state == ProgressState.REPLICATE and entries:
            pr.next = entries[-1].index + 1
            pr.inflight.append(entries[-1].index)
        elif pr.state == ProgressState.PROBE:
            pr.probe_sent = True

    def _start_snapshot(self, pid: str, pr: Progress) -> None:
        pr.become_snapshot(self.snap_index)
        self._ready.snapshot_sends.append(pid)

    def snapshot_send_done(self, pid: str, ok: bool) -> None:
        """The driver finished (or gave up) streaming a snapshot to pid."""
        pr = self.progress.get(pid)
        if pr is None or pr.state != ProgressState.SNAPSHOT:
            return
        pr.become_probe()
        if ok:
            # The SNAPSHOT_RESP may be lost: probe after the next heartbeat answer instead of
            # waiting for it (and not before, so the probe does not overtake the install).
            pr.probe_sent = True

    def _handle_append_response(self, msg: Message) -> None:
        if not self.is_leader:
            self._note_peer_durable(msg)
            return
        pr = self.progress.get(msg.src)
        if pr is None:
            return
        pr.recent_active = True
        if msg.reject:
            self._handle_append_reject(msg, pr)
            return
        pr.counts_durable = msg.done
        # In PROBE an ack of exactly match confirms the probe (the follower is caught up);
        # treating it as stale would re-send empty probes forever.
        confirmed = pr.state == ProgressState.PROBE and msg.index == pr.match
        if pr.update_match(msg.index) or confirmed:
            if pr.state == ProgressState.PROBE:
                pr.become_replicate()
            elif pr.state == ProgressState.SNAPSHOT and pr.match >= pr.snapshot_index:
                pr.become_probe()
                pr.become_replicate()
            self._maybe_commit()
            if not self.is_leader:
                return   # that commit was our own removal: we stepped down
            self._maybe_promote(msg.src, pr)
            if msg.src == self.transferee and pr.match == self.last_index():
                self._send(self._msg(MsgType.TIMEOUT_NOW, msg.src))
        elif pr.state == ProgressState.PROBE:
            pr.probe_sent = False
        self._send_append(msg.src, notice=self._owes_commit(pr))

    def _handle_append_reject(self, msg: Message, pr: Progress) -> None:
        rejected = msg.index
        if pr.state == ProgressState.REPLICATE and rejected <= pr.match:
            return   # stale rejection of something acknowledged since
        if pr.state == ProgressState.PROBE and rejected != pr.next - 1:
            return   # stale rejection of an earlier probe
        if pr.state == ProgressState.SNAPSHOT:
            return
        pr.become_probe()
        pr.next = max(min(rejected, msg.reject_hint + 1), pr.match + 1)
        self._send_append(msg.src)

    def _handle_heartbeat_response(self, msg: Message) -> None:
        pr = self.progress.get(msg.src) if self.is_leader else None
        if pr is None:
            return
        pr.recent_active = True
        pr.probe_sent = False
        if pr.state == ProgressState.REPLICATE and len(pr.inflight) >= self.opts.max_inflight:
            pr.inflight.popleft()   # a lost APPEND must not stall the pipeline forever
        if pr.match < self.last_index():
            self._send_append(msg.src, allow_empty=True)
        if msg.context:
            self._ack_read(msg.src, pr, msg.context)

    def _handle_snapshot_response(self, msg: Message) -> None:
        pr = self.progress.get(msg.src) if self.is_leader else None
        if pr is None:
            return
        pr.recent_active = True
        if msg.reject:
            pr.become_probe()
        else:
            pr.update_match(msg.index)
            pr.become_probe()
        self._send_append(msg.src)

    def persisted(self, index: int, term: int) -> None:
        """The WAL made entries up to index (whose term is term) durable here."""
        if self.term_at(index) == term and index > self.stable:
            self.stable = index
            if self.is_leader:
                self._maybe_commit()
                self._tell_followers_durable()
            elif self.peer_durable:
                self._commit_by_peers()

    def _tell_followers_durable(self) -> None:
        """Tell the voters how far our log is durable, once our sync is done and before the
        acks that commit it come in.

        With its own write durable, a follower of three then knows a quorum holds the entry
        without waiting for the leader to step an ack and send the commit (_owes_commit then
        spares it the notice).  Not while clients keep us busy: the next APPEND carries the
        commit index anyway.
        """
        if self.hold_commit_notices or self.stable <= self.commit:
            return
        for pid in self.config.voters:
            pr = self.progress.get(pid)
            if pr is not None:
                self._send(self._msg(MsgType.APPEND_RESP, pid, index=self.stable))
                pr.durable_told = self.stable
        self.durable_told = self.stable

    def _maybe_commit(self) -> None:
        candidate = self._quorum_commit(self._match_of)
        if candidate:
            self.commit = candidate
            self._on_commit_advanced()

    def _match_of(self, pid: str) -> int:
        pr = self.progress.get(pid)
        return pr.match if pr is not None else 0

    def _told_durable(self, pid: str) -> int:
        return self.peer_durable.get(pid, 0)

    def _quorum_commit(self, durable_of: Callable[[str], int]) -> int:
        """The new commit index that a quorum of voters holding their logs durably gives, or 0.

        ``durable_of(peer)`` says how far a peer's log matches ours and is on its disk; ours
        is ``stable``.  Raft's rule: only an entry of the current term commits by counting
        (Figure 8); the earlier ones commit with it.
        """
        voters = self.config.voters
        if not voters:
            return 0
        matches = sorted(self.stable if pid == self.id else durable_of(pid) for pid in voters)
        candidate = min(matches[len(matches) - self.config.quorum()], self.last_index())
        if candidate > self.commit and self.term_at(candidate) == self.term:
            return candidate
        return 0

    def _on_commit_advanced(self) -> None:
        if self.waiting_reads:
            waiting, self.waiting_reads = self.waiting_reads, []
            for ctx in waiting:
                self.read_index(ctx)
        if self.id not in self.config.voters and self.pending_conf_index <= self.commit:
            self.become_follower(self.term, None)   # we committed our own removal
            return
        for pid, pr in self.progress.items():
            self._send_append(pid, notice=self._owes_commit(pr))
            self._maybe_promote(pid, pr)

    def _owes_commit(self, pr: Progress) -> bool:
        """Whether a follower must be told the commit index by an empty APPEND now.

        Without it a follower would learn it at the next heartbeat, and what it serves
        (watches, stale reads) would be a heartbeat late.  A follower whose APPEND is still
        in flight is told too: it applies once its own write is durable instead of a round
        trip later.  While the driver holds notices (many clients: the next entries, which
        carry the commit index, are on their way), the follower waits for those entries or
        for send_commit_notices(), whichever comes first.
        """
        if pr.commit_sent >= self.commit:
            return False
        if pr.counts_durable and pr.durable_told >= self.commit and self.config.quorum() <= 2:
            return False   # our word on our disk and its own write make a quorum: it commits alone
        if self.hold_commit_notices:
            self.commit_notices_held = True
            return False
        return True

    def send_commit_notices(self) -> None:
        """Tell every follower still owed the commit index (notices held meanwhile) now."""
        self.commit_notices_held = False
        if not self.is_leader:
            return
        for pid, pr in self.progress.items():
            if pr.commit_sent < self.commit:
                self._send_append(pid, notice=True)

    def _maybe_promote(self, pid: str, pr: Progress) -> None:
        if (self.opts.auto_promote and pid in self.config.learners and self.transferee is None
                and self.pending_conf_index <= self.commit
                and pr.match >= self.pending_conf_index   # it has acknowledged being added
                and pr.match + self.opts.promote_lag >= self.last_index()
                and self.term_at(self.commit) == self.term):
            self.propose_conf_change(ConfChange("promote", pid))

    # ------------------------------------------------------------------ ReadIndex
    def read_index(self, ctx: int) -> None:
        """Ask for a linearizable read barrier; answered via Ready.read_states / failed_reads."""
        if not self.is_leader:
            self._ready.failed_reads.append(ctx)
            return
        if self.term_at(self.commit) != self.term:
            self.waiting_reads.append(ctx)   # commit index is only safe once our no-op commits
            return
        if len(self.config.voters) == 1 and self.id in self.config.voters:
            self._ready.read_states.append(ReadState(ctx, self.commit))
            return
        if self.read_seq == self._read_seq_sent:
            self.read_seq += 1   # one new heartbeat round serves every read queued until ready()
        # Not just our commit index: a follower may already have committed (and served) what we
        # told it is on our disk (_commit_by_peers) before we heard its ack.
        self.pending_reads.append((ctx, max(self.commit, self.durable_told), self.read_seq))

    def _ack_read(self, pid: str, pr: Progress, context: bytes) -> None:
        try:
            seq = int(context)
        except ValueError:
            return
        if pid not in self.config.voters or seq <= pr.read_ack:
            return
        pr.read_ack = seq
        acks = sorted((self._read_seq_sent if v == self.id else
                       (self.progress[v].read_ack if v in self.progress else 0))
                      for v in self.config.voters)
        confirmed = acks[len(acks) - self.config.quorum()]
        still = []
        for ctx, index, rseq in self.pending_reads:
            if rseq <= confirmed:
                self._ready.read_states.append(ReadState(ctx, index))
            else:
                still.append((ctx, index, rseq))
        self.pending_reads = still

    # ------------------------------------------------------------------ compaction
    def compact(self, index: int) -> None:
        """Drop log entries up to index (the driver holds them in a durable snapshot)."""
        if index <= self.snap_index or index > self.applied:
            return
        term = self.term_at(index)
        config = self._config_at(index)
        cut = index - self.snap_index
        self.log_bytes -= sum(len(e.data) for e in self.log[:cut])
        self.log = self.log[cut:]
        self.snap_index, self.snap_term, self.snap_config = index, term, config

    def _config_at(self, index: int) -> ClusterConfig:
        for entry in reversed(self.log[:index - self.snap_index]):
            if entry.kind == EntryKind.CONFIG:
                return decode_config_bytes(entry.data)
        return self.snap_config

    def snapshot_meta(self, index: int) -> SnapshotMeta:
        """Meta for a snapshot of the state machine at an applied index."""
        return SnapshotMeta(index=index, term=self.term_at(index) or 0, config=self._config_at(index))

"""Unit tests of the pure Raft core, with messages stepped by hand.

The harness keeps every node's durable log in memory, persists each Ready at
once (unless told not to) and queues messages; tests decide what gets delivered.
"""
from __future__ import annotations

import dataclasses
import random

import pytest

from axon.raft.core import (ConfChange, ProgressState, RaftCore, RaftOptions, ReadState, Role,
                            bootstrap_entry, encode_config_bytes)
from axon.raft.errors import ConfChangeError, NotLeader
from axon.raft.types import (ClusterConfig, Entry, EntryKind, HardState, Member, Message, MsgType,
                             SnapshotMeta)


def initial_entry(ids) -> Entry:
    config = ClusterConfig(voters={i: Member(i, "") for i in ids})
    return Entry(1, 1, EntryKind.CONFIG, encode_config_bytes(config))


class Harness:
    """A few cores, a message queue between them, and an instantly durable disk each."""

    def __init__(self, ids=("a", "b", "c"), learners=(), **opts) -> None:
        self.opts = RaftOptions(**opts)
        self.cores: dict[str, RaftCore] = {}
        self.queue: list[Message] = []
        self.applied: dict[str, list[Entry]] = {}
        self.reads: dict[str, list[ReadState]] = {}
        self.failed: dict[str, list[int]] = {}
        self.snapshot_sends: dict[str, list[str]] = {}
        self.chunks: dict[str, list[Message]] = {}
        for seed, nid in enumerate(ids):
            self.add(nid, [initial_entry(ids)], HardState(1, None), seed)
        for seed, nid in enumerate(learners, len(ids)):
            self.add(nid, [], HardState(), seed)

    def add(self, nid: str, entries, hard_state: HardState, seed: int = 99) -> RaftCore:
        core = RaftCore(nid, hard_state=hard_state, entries=entries, options=self.opts,
                        rng=random.Random(seed))
        self.cores[nid] = core
        for book in (self.applied, self.reads, self.failed, self.snapshot_sends, self.chunks):
            book[nid] = []
        return core

    def flush(self, nid: str, persist: bool = True) -> None:
        """Collect the node's Ready; when persist, make it durable and release held messages."""
        core = self.cores[nid]
        while core.has_ready():
            rd = core.ready()
            self.queue.extend(rd.messages)
            self.applied[nid].extend(rd.committed)
            self.reads[nid].extend(rd.read_states)
            self.failed[nid].extend(rd.failed_reads)
            self.snapshot_sends[nid].extend(rd.snapshot_sends)
            self.chunks[nid].extend(rd.snapshot_chunks)
            if persist:
                self.queue.extend(rd.persist_messages)
                core.persisted(core.last_index(), core.last_term())

    def flush_all(self) -> None:
        for nid in self.cores:
            self.flush(nid)

    def take(self, mtype: MsgType | None = None, src: str | None = None,
             dst: str | None = None) -> list[Message]:
        """Remove and return queued messages matching the filter."""
        def hit(m: Message) -> bool:
            return ((mtype is None or m.type == mtype) and (src is None or m.src == src)
                    and (dst is None or m.dst == dst))
        taken = [m for m in self.queue if hit(m)]
        self.queue = [m for m in self.queue if not hit(m)]
        return taken

    def deliver(self, msgs) -> None:
        for m in msgs:
            if m.dst in self.cores:
                self.cores[m.dst].step(m)
                self.flush(m.dst)

    def run(self, drop=lambda m: False, rounds: int = 50) -> None:
        """Deliver everything (except dropped messages) until the queue is empty."""
        for _ in range(rounds):
            self.flush_all()
            if not self.queue:
                return
            msgs, self.queue = self.queue, []
            self.deliver(m for m in msgs if not drop(m))
        raise AssertionError("messages kept flowing")

    def tick(self, nid: str, n: int = 1) -> None:
        for _ in range(n):
            self.cores[nid].tick()
            self.flush(nid)

    def elect(self, nid: str) -> RaftCore:
        core = self.cores[nid]
        core.campaign()
        self.run()
        assert core.is_leader, core.status()
        return core

    def lease_expires(self, *nids: str) -> None:
        """An election timeout passes without news from the leader (its lease is over)."""
        for nid in nids:
            self.cores[nid].election_elapsed = self.opts.election_ticks

    def leader_propose(self, nid: str, *datas: bytes) -> int:
        first, _ = self.cores[nid].propose(list(datas))
        self.run()
        return first + len(datas) - 1


# ---------------------------------------------------------------------- elections

def test_election_with_pre_vote_elects_one_leader_in_next_term():
    h = Harness()
    a = h.cores["a"]
    for _ in range(2 * h.opts.election_ticks):
        h.tick("a")
        if a.role != Role.FOLLOWER:
            break
    assert a.role == Role.PRE_CANDIDATE and a.term == 1   # pre-vote does not bump the term
    prevotes = h.take(MsgType.PREVOTE)
    assert {m.dst for m in prevotes} == {"b", "c"} and all(m.term == 2 for m in prevotes)
    h.deliver(prevotes)
    h.run()
    assert a.is_leader and a.term == 2
    assert all(h.cores[n].leader == "a" and h.cores[n].term == 2 for n in "bc")
    # the new leader's no-op commits and everybody applies the config entry and the no-op
    assert a.commit == 2
    h.tick("a", h.opts.heartbeat_ticks)
    h.run()
    assert [e.index for e in h.applied["b"]] == [1, 2]


def test_vote_denied_to_candidate_with_shorter_log():
    h = Harness(check_quorum=False)   # no leader lease, so the request is considered
    h.elect("a")
    h.leader_propose("a", b"x")
    h.cores["c"].step(Message(MsgType.VOTE, "b", "c", term=9, index=1, log_term=1))
    h.flush("c")
    (resp,) = h.take(MsgType.VOTE_RESP)
    assert resp.reject and h.cores["c"].vote is None


def test_late_vote_responses_do_not_make_a_leader_again():
    h = Harness(ids=("a", "b", "c", "d", "e"))
    a = h.cores["a"]
    a.campaign()
    h.run(drop=lambda m: m.type == MsgType.VOTE_RESP and m.src in "de")
    assert a.is_leader
    noop_index = a.last_index()
    for src in "de":
        a.step(Message(MsgType.VOTE_RESP, src, "a", term=a.term))
        a.step(Message(MsgType.VOTE_RESP, src, "a", term=a.term))   # duplicated
    assert a.is_leader and a.last_index() == noop_index


def test_partitioned_node_rejoining_does_not_bump_term_or_depose_leader():
    h = Harness()
    a = h.elect("a")
    term = a.term
    h.tick("c", 10 * h.opts.election_ticks)      # c is cut off: its pre-votes go nowhere
    h.take(src="c")
    assert h.cores["c"].term == term
    h.cores["c"].campaign()                       # rejoins and tries again
    h.run()
    assert a.is_leader and a.term == term and h.cores["c"].term == term


def test_prevote_ignored_while_follower_hears_from_leader():
    h = Harness()
    a = h.elect("a")
    b = h.cores["b"]
    b.step(Message(MsgType.PREVOTE, "c", "b", term=a.term + 1, index=99, log_term=99))
    h.flush("b")
    assert h.take(MsgType.PREVOTE_RESP) == [] and b.term == a.term


def test_check_quorum_leader_steps_down_when_cut_off():
    h = Harness()
    a = h.elect("a")
    ticks = 0
    while a.is_leader:
        h.tick("a")
        h.take(src="a")                            # nothing reaches the followers
        ticks += 1
        assert ticks <= 2 * h.opts.election_ticks, "cut-off leader kept leading"
    assert a.role == Role.FOLLOWER and a.leader is None


def test_check_quorum_leader_stays_while_followers_answer():
    h = Harness()
    a = h.elect("a")
    for _ in range(5 * h.opts.election_ticks):
        h.tick("a")
        h.run()
    assert a.is_leader


def test_stale_term_message_deposes_old_leader():
    h = Harness()
    a = h.elect("a")
    b = h.cores["b"]
    b.step(Message(MsgType.APPEND, "c", "b", term=a.term + 5, index=0, log_term=0))
    h.flush("b")
    h.take()
    a.propose([b"x"])
    h.run()
    assert not a.is_leader and a.term == b.term


# ---------------------------------------------------------------------- log replication

def test_conflicting_uncommitted_suffix_is_replaced():
    h = Harness()
    a = h.elect("a")                               # term 2, log [1 cfg, 2 noop]
    # a appends entries only it has, then loses leadership to b
    a.propose([b"lost1", b"lost2", b"lost3"])
    h.take(src="a")
    b = h.cores["b"]
    h.lease_expires("b", "c")
    b.campaign()
    h.run(drop=lambda m: m.dst == "a" or m.src == "a")
    assert b.is_leader
    h.leader_propose("b", b"kept")
    h.tick("b", h.opts.heartbeat_ticks)
    h.run()
    assert a.role == Role.FOLLOWER and a.leader == "b"
    assert [e.data for e in a.log] == [e.data for e in b.log]
    assert b"lost1" not in {e.data for e in h.applied["a"]}
    assert a.last_index() == b.last_index() and a.commit == b.commit


def test_long_conflicting_suffix_converges_without_livelock():
    h = Harness()
    a = h.elect("a")
    a.propose([b"junk%d" % i for i in range(40)])
    h.take(src="a")
    b = h.cores["b"]
    h.lease_expires("b", "c")
    b.campaign()
    h.run(drop=lambda m: "a" in (m.src, m.dst))
    h.leader_propose("b", b"kept")
    for _ in range(30):
        h.tick("b")
        h.run()
        if a.last_index() == b.last_index() and a.log[-1] == b.log[-1]:
            break
    assert a.log == b.log


def test_stale_and_duplicated_append_responses_do_not_move_progress_back():
    h = Harness()
    a = h.elect("a")
    last = h.leader_propose("a", b"1", b"2", b"3")
    pr = a.progress["b"]
    assert pr.match == last and pr.state == ProgressState.REPLICATE
    # an old success, an old rejection and a duplicate arrive late
    for msg in (Message(MsgType.APPEND_RESP, "b", "a", term=a.term, index=2),
                Message(MsgType.APPEND_RESP, "b", "a", term=a.term, index=2, reject=True,
                        reject_hint=1),
                Message(MsgType.APPEND_RESP, "b", "a", term=a.term, index=last)):
        a.step(msg)
        assert pr.match == last and pr.next == last + 1 and pr.state == ProgressState.REPLICATE
    h.flush("a")


def test_pipelined_appends_with_reordered_responses():
    h = Harness()
    a = h.elect("a")
    for i in range(5):
        a.propose([b"p%d" % i])
    h.flush("a")
    appends = h.take(MsgType.APPEND, dst="b")
    assert len(appends) == 5                       # pipelined, not one at a time
    h.deliver(reversed(appends))                   # reordered: all but the first are rejected
    resps = h.take(MsgType.APPEND_RESP, src="b")
    h.deliver(reversed(resps))
    h.run()
    assert h.cores["b"].log == a.log
    assert a.progress["b"].match == a.last_index()
    assert a.commit == a.last_index()


def test_follower_never_truncates_committed_entries_on_old_append():
    h = Harness()
    a = h.elect("a")
    h.leader_propose("a", b"x")
    h.tick("a", h.opts.heartbeat_ticks)
    h.run()
    b = h.cores["b"]
    committed = b.commit
    assert committed == a.last_index()
    # an APPEND from before the last entries, duplicated by the network
    b.step(Message(MsgType.APPEND, "a", "b", term=a.term, index=1, log_term=1,
                   entries=(Entry(2, a.term, EntryKind.NOOP),), commit=1))
    h.flush("b")
    assert b.last_index() == committed and b.commit == committed
    (resp,) = h.take(MsgType.APPEND_RESP, src="b")
    assert resp.index == committed and not resp.reject


def test_append_needs_durable_write_before_ack():
    h = Harness()
    a = h.elect("a")
    a.propose([b"x"])
    h.flush("a")
    h.deliver(h.take(MsgType.APPEND, dst="b"))     # b's flush persists: ack goes out
    assert h.take(MsgType.APPEND_RESP, src="b")
    h.deliver(h.take(MsgType.APPEND, dst="c"))
    c = h.cores["c"]
    a.propose([b"y"])
    h.flush("a")
    c.step(h.take(MsgType.APPEND, dst="c")[0])
    rd = c.ready()
    assert rd.entries and not [m for m in rd.messages if m.type == MsgType.APPEND_RESP]
    assert [m for m in rd.persist_messages if m.type == MsgType.APPEND_RESP]


# ---------------------------------------------------------------------- Figure 8

def test_figure8_entry_of_older_term_not_committed_by_replication_count():
    """Raft paper Figure 8: s1 (re-elected in term 4) holds an entry of term 2 at index 3.

    Once s1, s2 and s3 hold it, a majority of five has it, yet it must not be
    committed by counting replicas; only the term-4 entry after it commits both.
    """
    ids = ("s1", "s2", "s3", "s4", "s5")
    h = Harness(ids=ids)
    cfg = initial_entry(ids)
    old = [cfg, Entry(2, 2, EntryKind.NOOP), Entry(3, 2, EntryKind.NORMAL, b"term2")]
    s1 = h.add("s1", old, HardState(3, None), seed=1)
    h.add("s2", old, HardState(3, None), seed=2)
    h.add("s3", old[:2], HardState(3, None), seed=3)
    h.add("s5", [cfg, Entry(2, 3, EntryKind.NORMAL, b"term3")], HardState(3, "s5"), seed=5)
    s1.campaign()
    h.run(drop=lambda m: m.type in (MsgType.APPEND, MsgType.APPEND_RESP, MsgType.HEARTBEAT))
    assert s1.is_leader and s1.term == 4 and s1.term_at(3) == 2 and s1.last_index() == 4
    # s3 receives the term-2 entry: s1, s2, s3 (a majority of five) now hold index 3
    h.cores["s3"].step(Message(MsgType.APPEND, "s1", "s3", term=4, index=2, log_term=2,
                               entries=(old[2],)))
    h.flush("s3")
    h.deliver(h.take(MsgType.APPEND_RESP, src="s3"))
    s1.step(Message(MsgType.APPEND_RESP, "s2", "s1", term=4, index=3))
    h.flush("s1")
    assert s1.progress["s3"].match == 3 and s1.progress["s2"].match == 3
    assert s1.commit < 3, "an entry of an older term was committed by counting replicas"
    assert h.applied["s1"] == []
    h.take()
    h.tick("s1", h.opts.heartbeat_ticks)
    h.run(drop=lambda m: m.dst in ("s4", "s5"))
    assert s1.commit == 4
    assert [e.index for e in h.applied["s1"]] == [1, 2, 3, 4]
    # s5 (whose term-3 entry at index 2 conflicts) can't win: its log is not up to date
    h.lease_expires("s2", "s3", "s4")
    s5 = h.cores["s5"]
    s5.campaign()
    h.run(drop=lambda m: "s1" in (m.src, m.dst))
    assert not s5.is_leader


# ---------------------------------------------------------------------- membership

def test_conf_change_one_at_a_time():
    h = Harness(learners=("d",))
    a = h.elect("a")
    h.tick("a", h.opts.heartbeat_ticks)
    h.run()
    a.propose_conf_change(ConfChange("add_learner", "d", Member("d", "")))
    with pytest.raises(ConfChangeError):
        a.propose_conf_change(ConfChange("add_learner", "e", Member("e", "")))
    h.run()
    h.tick("a", h.opts.heartbeat_ticks)
    h.run()
    assert "d" in a.config.voters                    # auto-promoted once caught up
    assert h.cores["d"].log == a.log


def test_conf_change_refusals():
    h = Harness()
    a = h.elect("a")
    with pytest.raises(NotLeader):
        h.cores["b"].propose_conf_change(ConfChange("remove", "c"))
    with pytest.raises(ConfChangeError):
        a.propose_conf_change(ConfChange("promote", "b"))       # not a learner
    with pytest.raises(ConfChangeError):
        a.propose_conf_change(ConfChange("remove", "zz"))       # not a member
    with pytest.raises(ConfChangeError):
        a.propose_conf_change(ConfChange("add_learner", "b"))   # already a voter
    with pytest.raises(ConfChangeError):
        a.propose_conf_change(ConfChange("frobnicate", "b"))


def test_conf_change_refused_before_leader_commits_in_its_term():
    h = Harness()
    a = h.cores["a"]
    a.campaign()
    h.run(drop=lambda m: m.type == MsgType.APPEND_RESP)
    assert a.is_leader and a.commit < a.last_index()
    with pytest.raises(ConfChangeError):
        a.propose_conf_change(ConfChange("remove", "c"))


def test_remove_voter_and_leader_removing_itself_steps_down():
    h = Harness()
    a = h.elect("a")
    h.tick("a", h.opts.heartbeat_ticks)
    h.run()
    a.propose_conf_change(ConfChange("remove", "a"))
    h.run()
    h.tick("a", h.opts.heartbeat_ticks)
    h.run()
    assert not a.is_leader and not a.promotable()
    assert set(h.cores["b"].config.voters) == {"b", "c"}
    h.tick("a", 5 * h.opts.election_ticks)          # a removed node never campaigns
    assert h.take(src="a", mtype=MsgType.PREVOTE) == []


def test_learner_does_not_vote_count_or_campaign():
    h = Harness(learners=("d",))
    d = h.cores["d"]
    h.tick("d", 5 * h.opts.election_ticks)
    assert d.role == Role.FOLLOWER and not h.queue


def test_single_node_bootstrap_and_joiner():
    h = Harness(ids=())
    solo = h.add("a", [bootstrap_entry("a", Member("a", ""))], HardState(1, None))
    h.add("b", [], HardState())
    h.tick("a", 3 * h.opts.election_ticks)
    assert solo.is_leader
    h.leader_propose("a", b"x")
    assert solo.commit == solo.last_index()
    solo.propose_conf_change(ConfChange("add_learner", "b", Member("b", "")))
    h.run()
    for _ in range(5):
        h.tick("a", h.opts.heartbeat_ticks)
        h.run()
    assert set(solo.config.voters) == {"a", "b"} and h.cores["b"].log == solo.log


# ---------------------------------------------------------------------- transfer

def test_leadership_transfer():
    h = Harness()
    a = h.elect("a")
    h.leader_propose("a", b"x")
    a.transfer_leadership("c")
    with pytest.raises(NotLeader):
        a.propose([b"refused during transfer"])
    h.run()
    c = h.cores["c"]
    assert c.is_leader and c.term == a.term and not a.is_leader


def test_transfer_waits_for_target_to_catch_up():
    h = Harness()
    a = h.elect("a")
    a.propose([b"x"])
    h.run(drop=lambda m: m.dst == "c")
    a.transfer_leadership("c")
    h.flush("a")
    assert not h.take(MsgType.TIMEOUT_NOW)
    h.tick("a", h.opts.heartbeat_ticks)
    h.run()
    assert h.cores["c"].is_leader


def test_transfer_to_non_voter_refused():
    h = Harness()
    a = h.elect("a")
    with pytest.raises(ConfChangeError):
        a.transfer_leadership("zz")
    with pytest.raises(NotLeader):
        h.cores["b"].transfer_leadership("c")


# ---------------------------------------------------------------------- ReadIndex

def test_read_index_batches_reads_into_one_heartbeat_round():
    h = Harness()
    a = h.elect("a")
    h.tick("a", h.opts.heartbeat_ticks)
    h.run()
    for ctx in range(1, 11):
        a.read_index(ctx)
    h.flush("a")
    beats = h.take(MsgType.HEARTBEAT, src="a")
    assert len(beats) == 2 and len({m.context for m in beats}) == 1 and beats[0].context
    h.deliver(beats[:1])                             # one follower + leader = quorum
    h.deliver(h.take(MsgType.HEARTBEAT_RESP))
    assert sorted(r.ctx for r in h.reads["a"]) == list(range(1, 11))
    assert all(r.index == a.commit for r in h.reads["a"])


def test_read_index_waits_for_quorum_and_fails_when_deposed():
    h = Harness()
    a = h.elect("a")
    h.tick("a", h.opts.heartbeat_ticks)
    h.run()
    a.read_index(7)
    h.flush("a")
    h.take(src="a")                                  # isolated: no heartbeat arrives
    assert h.reads["a"] == []
    for _ in range(2 * h.opts.election_ticks):
        h.tick("a")
        h.take(src="a")
    assert not a.is_leader
    assert h.reads["a"] == [] and 7 in h.failed["a"]


def test_read_index_on_follower_fails():
    h = Harness()
    h.elect("a")
    h.cores["b"].read_index(3)
    h.flush("b")
    assert h.failed["b"] == [3]


def test_read_index_waits_for_leaders_first_commit():
    h = Harness()
    a = h.cores["a"]
    a.campaign()
    h.run(drop=lambda m: m.type == MsgType.APPEND_RESP)
    assert a.is_leader and a.term_at(a.commit) != a.term
    a.read_index(5)
    h.flush("a")
    assert h.reads["a"] == []
    h.tick("a", h.opts.heartbeat_ticks)
    h.run()
    assert [r.ctx for r in h.reads["a"]] == [5] and h.reads["a"][0].index >= 2


def test_stale_heartbeat_ack_does_not_confirm_newer_read():
    h = Harness()
    a = h.elect("a")
    a.read_index(1)
    h.flush("a")
    first = h.take(MsgType.HEARTBEAT, src="a")
    a.read_index(2)
    h.flush("a")
    h.take(MsgType.HEARTBEAT, src="a")               # the second round is lost
    h.deliver(first)
    h.deliver(h.take(MsgType.HEARTBEAT_RESP))
    assert [r.ctx for r in h.reads["a"]] == [1]


# ---------------------------------------------------------------------- snapshots

def compacted_leader(h: Harness, behind: str) -> RaftCore:
    a = h.elect("a")
    for i in range(20):
        a.propose([b"v%d" % i])
        h.run(drop=lambda m: behind in (m.src, m.dst))
    h.tick("a", h.opts.heartbeat_ticks)
    h.run(drop=lambda m: behind in (m.src, m.dst))
    a.compact(a.applied)
    return a


def install_chunks(h: Harness, nid: str) -> SnapshotMeta | None:
    """Play the driver on the receiving side for staged snapshot chunks."""
    core = h.cores[nid]
    for chunk in h.chunks[nid]:
        if chunk.done:
            if core.snapshot_received(chunk.snapshot, chunk.src):
                core.snapshot_installed(chunk.snapshot, chunk.src)
            h.flush(nid)
            h.chunks[nid] = []
            return chunk.snapshot
    return None


def test_follower_far_behind_gets_snapshot_in_chunks():
    h = Harness()
    a = compacted_leader(h, "c")
    c = h.cores["c"]
    h.tick("a", h.opts.heartbeat_ticks)
    h.run()
    assert h.snapshot_sends["a"] == ["c"]
    assert a.progress["c"].state == ProgressState.SNAPSHOT
    meta = a.snapshot_meta(a.applied)
    for off, last in ((0, False), (10, False), (20, True)):
        h.deliver([Message(MsgType.SNAPSHOT, "a", "c", term=a.term, snapshot=meta, offset=off,
                           data=b"x" * 10, done=last)])
    assert len(h.chunks["c"]) == 3
    assert install_chunks(h, "c") == meta
    a.snapshot_send_done("c", True)
    h.run()
    h.tick("a", h.opts.heartbeat_ticks)
    h.run()
    assert c.snap_index == meta.index and c.last_index() == a.last_index()
    assert a.progress["c"].state == ProgressState.REPLICATE


def test_lost_snapshot_response_does_not_wedge_follower():
    h = Harness()
    a = compacted_leader(h, "c")
    h.tick("a", h.opts.heartbeat_ticks)
    h.run()
    meta = a.snapshot_meta(a.applied)
    h.deliver([Message(MsgType.SNAPSHOT, "a", "c", term=a.term, snapshot=meta, data=b"s",
                       done=True)])
    install_chunks(h, "c")
    h.take(MsgType.SNAPSHOT_RESP)                    # lost
    a.snapshot_send_done("c", True)
    for _ in range(3):
        h.tick("a", h.opts.heartbeat_ticks)
        h.run()
    assert a.progress["c"].match == a.last_index()   # recovered within a few heartbeats


def replicated(writes: int) -> tuple[Harness, RaftCore, RaftCore]:
    """Leader a and follower c after writes that every member holds and knows committed."""
    h = Harness()
    a = h.elect("a")
    for i in range(writes):
        h.leader_propose("a", b"v%d" % i)
    h.tick("a", h.opts.heartbeat_ticks)
    h.run()
    return h, a, h.cores["c"]


def snapshot_response(h: Harness, nid: str) -> Message:
    h.flush(nid)
    (resp,) = h.take(MsgType.SNAPSHOT_RESP)
    return resp


def test_snapshot_racing_acked_suffix_keeps_the_suffix():
    """A snapshot older than what the follower acknowledged must not cut its log back."""
    h, a, c = replicated(5)
    meta = a.snapshot_meta(a.applied - 2)            # an older snapshot, still in flight
    assert c.term_at(meta.index) == meta.term and c.last_index() > meta.index
    c.commit = meta.index - 1                        # c had not yet learnt that commit
    before = list(c.log)
    install = c.snapshot_received(meta, "a")
    assert install is False and c.log == before
    assert c.commit == meta.index
    assert snapshot_response(h, "c").index == meta.index


def test_appends_during_an_install_keep_their_entries():
    """Found by the chaos suite: a follower finished installing a snapshot after appends had
    carried it past the snapshot; replacing the log then dropped acknowledged entries."""
    h, a, c = replicated(6)
    behind = c.last_index()
    for i in range(4):
        a.propose([b"w%d" % i])
        h.run(drop=lambda m: "c" in (m.src, m.dst))
    h.tick("a", h.opts.heartbeat_ticks)
    h.run(drop=lambda m: "c" in (m.src, m.dst))
    meta = a.snapshot_meta(behind + 2)
    assert c.snapshot_received(meta, "a")            # staged; the install starts
    h.tick("a", h.opts.heartbeat_ticks)              # meanwhile appends catch c up
    h.run()
    assert c.last_index() == a.last_index() and c.commit > meta.index
    tail = [e for e in c.log if e.index > meta.index]
    assert c.snapshot_installed(meta, "a") is False
    assert c.snap_index == meta.index and c.log == tail
    assert c.last_index() == a.last_index()
    assert snapshot_response(h, "c").index == meta.index


def test_install_replaces_a_log_that_lacks_the_snapshot():
    h = Harness()
    a = compacted_leader(h, "c")
    c = h.cores["c"]
    meta = a.snapshot_meta(a.applied)
    assert c.snapshot_received(meta, "a")
    assert c.snapshot_installed(meta, "a") is True
    assert c.log == [] and c.snap_index == c.commit == meta.index


def test_snapshot_older_than_commit_is_not_installed():
    h = Harness()
    a = h.elect("a")
    h.leader_propose("a", b"x")
    h.tick("a", h.opts.heartbeat_ticks)
    h.run()
    c = h.cores["c"]
    assert not c.snapshot_received(SnapshotMeta(1, 1, a.config), "a")
    assert snapshot_response(h, "c").index == c.commit


def test_restart_from_durable_state():
    h = Harness()
    h.elect("a")
    h.leader_propose("a", b"x", b"y")
    h.tick("a", h.opts.heartbeat_ticks)
    h.run()
    b = h.cores["b"]
    revived = RaftCore("b", hard_state=b.hard_state(), entries=list(b.log), applied=0,
                       options=h.opts, rng=random.Random(5))
    assert revived.last_index() == b.last_index() and revived.commit == 0
    assert revived.term == b.term


def test_not_leader_propose_and_bad_message_type():
    h = Harness()
    h.elect("a")
    with pytest.raises(NotLeader) as info:
        h.cores["b"].propose([b"x"])
    assert info.value.leader == "a"
    h.cores["b"].step(Message(MsgType.SNAPSHOT_RESP, "c", "b", term=h.cores["b"].term))
    assert h.cores["b"].role == Role.FOLLOWER


def test_caught_up_follower_in_probe_state_does_not_ping_pong():
    h = Harness()
    a = h.elect("a")
    h.tick("a", h.opts.heartbeat_ticks)
    h.run()
    pr = a.progress["b"]
    # a (late) snapshot answer puts b back in PROBE although it is fully caught up
    a.step(Message(MsgType.SNAPSHOT_RESP, "b", "a", term=a.term, index=pr.match))
    assert pr.state == ProgressState.PROBE
    h.flush("a")
    (probe,) = h.take(MsgType.APPEND, dst="b")
    assert not probe.done   # a probe is not a commit notice: it wants its answer
    h.deliver([probe])
    h.deliver(h.take(MsgType.APPEND_RESP, src="b"))  # acks exactly pr.match
    assert pr.state == ProgressState.REPLICATE
    assert h.take(MsgType.APPEND, dst="b") == []


def test_a_conflicting_append_before_the_write_replaces_the_unwritten_entries():
    """Two appends between ready() calls, the second cutting what the first added: the Ready
    must hold only the surviving entries (a WAL append of [6, 6] stopped a node in the chaos suite)."""
    h = Harness()
    a = h.elect("a")
    h.run()
    b = h.cores["b"]
    h.flush("b")
    last, term = b.last_index(), b.term
    b.step(Message(MsgType.APPEND, "a", "b", term=term, index=last, log_term=b.term_at(last),
                   entries=(Entry(last + 1, term, EntryKind.NOOP),), commit=b.commit))
    b.step(Message(MsgType.APPEND, "c", "b", term=term + 1, index=last, log_term=b.term_at(last),
                   entries=(Entry(last + 1, term + 1, EntryKind.NOOP),), commit=b.commit))
    entries = b.ready().entries
    assert [(e.index, e.term) for e in entries] == [(last + 1, term + 1)]
    assert a.term == term


# ---------------------------------------------------------------------- commit notices

FIVE = ("a", "b", "c", "d", "e")


def _round_trip_of_one_entry(h: Harness) -> None:
    """The leader a proposes an entry; the followers take it and answer; the leader commits it."""
    h.cores["a"].propose([b"x"])
    h.flush("a")
    h.deliver(h.take(MsgType.APPEND, src="a"))
    h.deliver(h.take(MsgType.APPEND_RESP))


def test_a_follower_is_told_a_new_commit_at_once_by_default():
    """Of five, a follower cannot count a quorum from its own disk and the leader's word alone."""
    h = Harness(ids=FIVE)
    a = h.elect("a")
    _round_trip_of_one_entry(h)
    notices = h.take(MsgType.APPEND, src="a")
    assert {m.dst for m in notices} == {"b", "c", "d", "e"}
    assert all(not m.entries and m.commit == a.commit for m in notices)


def test_of_three_a_follower_told_of_the_leaders_disk_gets_no_notice():
    """The leader's word that its write is durable and the follower's own make a quorum of
    three: each follower commits alone, and no empty APPEND follows the answers."""
    h = Harness()
    a = h.elect("a")
    _round_trip_of_one_entry(h)
    assert h.take(MsgType.APPEND, src="a") == []
    assert all(h.cores[n].commit == a.commit for n in "bc")


def test_the_commit_goes_at_once_to_a_follower_whose_append_is_unanswered():
    """b and c answer first and the entry commits: d and e, whose answers are still on their
    way, are told the commit at once (they apply when their own writes are durable, not a
    round trip later)."""
    h = Harness(ids=FIVE)
    a = h.elect("a")
    a.propose([b"x"])
    h.flush("a")
    h.deliver(h.take(MsgType.APPEND, src="a"))
    answers = [m for m in h.take(MsgType.APPEND_RESP) if m.dst == "a"]
    h.deliver([m for m in answers if m.src in "bc"])
    notices = h.take(MsgType.APPEND, src="a")
    assert sorted(m.dst for m in notices) == ["b", "c", "d", "e"]
    assert all(not m.entries and m.done and m.commit == a.commit for m in notices)
    h.deliver(notices)
    assert all(h.cores[n].commit == a.commit for n in "bcde")
    h.deliver([m for m in answers if m.src in "de"])
    assert h.take(MsgType.APPEND, src="a") == []   # d and e were told already: nothing more is sent


def test_an_accepted_commit_notice_is_not_answered():
    """A lone write costs the leader one answer per follower: a notice tells it nothing back."""
    h = Harness(ids=FIVE)
    a = h.elect("a")
    _round_trip_of_one_entry(h)
    notices = h.take(MsgType.APPEND, src="a")
    assert notices and all(m.done for m in notices)
    h.deliver(notices)
    assert [m for m in h.take(MsgType.APPEND_RESP) if m.dst == "a"] == []
    assert all(h.cores[n].commit == a.commit for n in "bcde")


def test_a_refused_commit_notice_is_answered_and_repaired():
    """A follower that lacks the notice's previous entry (its APPEND was lost) says so, and the
    leader sends it the entry again."""
    h = Harness(ids=FIVE)
    a = h.elect("a")
    a.propose([b"x"])
    h.flush("a")
    appends = h.take(MsgType.APPEND, src="a")
    h.deliver([m for m in appends if m.dst in "bde"])       # c's APPEND is lost
    h.deliver([m for m in h.take(MsgType.APPEND_RESP) if m.dst == "a"])
    (notice,) = h.take(MsgType.APPEND, dst="c")
    assert notice.done and not notice.entries
    h.deliver([notice])
    (refusal,) = [m for m in h.take(MsgType.APPEND_RESP, src="c") if m.dst == "a"]
    assert refusal.reject
    h.deliver([refusal])
    h.run()
    assert h.cores["c"].last_index() == a.last_index() and h.cores["c"].commit == a.commit


def test_held_notices_ride_on_the_next_entries_or_go_out_when_asked():
    h = Harness()
    a = h.elect("a")
    a.hold_commit_notices = True
    _round_trip_of_one_entry(h)
    assert h.take(MsgType.APPEND, src="a") == [] and a.commit_notices_held
    # the next entries carry the commit index: no empty APPEND is owed any more
    a.propose([b"y"])
    h.flush("a")
    carried = h.take(MsgType.APPEND, src="a")
    assert all(m.entries and m.commit == a.commit for m in carried)
    h.deliver(carried)
    h.deliver(h.take(MsgType.APPEND_RESP))
    assert h.take(MsgType.APPEND, src="a") == []
    # nothing more to send: the driver asks, and each follower owed the commit is told
    a.send_commit_notices()
    h.flush("a")
    notices = h.take(MsgType.APPEND, src="a")
    assert {m.dst for m in notices} == {"b", "c"}
    assert all(not m.entries and m.commit == a.commit for m in notices)
    assert not a.commit_notices_held
    a.send_commit_notices()
    h.flush("a")
    assert h.take(MsgType.APPEND, src="a") == []   # told once


# ---------------------------------------------------------------------- the leader's word on its disk

def _entry_on_both_followers(h: Harness) -> int:
    """The leader a proposes one entry (durable on a at once) and b and c take it; nothing is
    answered yet."""
    index, _ = h.cores["a"].propose([b"x"])
    h.flush("a")
    for m in h.take(MsgType.APPEND, src="a"):
        h.cores[m.dst].step(m)
        h.flush(m.dst)
    return index


def test_the_leader_tells_the_followers_its_own_write_is_durable():
    """A lone write: the leader's word that the entry is on its disk reaches b, which then knows
    a quorum of three holds it as soon as its own write is durable."""
    h = Harness()
    a = h.elect("a")
    index, _ = a.propose([b"x"])
    h.flush("a")                                     # durable on a at once
    told = h.take(MsgType.APPEND_RESP, src="a")
    assert sorted(m.dst for m in told) == ["b", "c"] and all(m.index == index for m in told)
    b = h.cores["b"]
    b.step(h.take(MsgType.APPEND, dst="b")[0])
    h.flush("b", persist=False)
    h.deliver([m for m in told if m.dst == "b"])
    assert b.commit < index                          # b's own write is not durable yet
    b.persisted(index, b.term)
    assert b.commit == index and a.commit < index
    h.flush("b")
    assert h.applied["b"][-1].index == index


def test_the_leader_says_nothing_of_its_disk_while_clients_keep_it_busy():
    h = Harness()
    a = h.elect("a")
    a.hold_commit_notices = True
    a.propose([b"x"])
    h.flush("a")
    assert h.take(MsgType.APPEND_RESP, src="a") == []


def test_a_follower_answers_only_the_leader_and_says_it_counts_the_leaders_word():
    h = Harness()
    h.elect("a")
    index = _entry_on_both_followers(h)
    acks = h.take(MsgType.APPEND_RESP, src="b") + h.take(MsgType.APPEND_RESP, src="c")
    assert sorted((m.src, m.dst) for m in acks) == [("b", "a"), ("c", "a")]
    assert all(m.index == index and m.done and not m.reject for m in acks)


def test_the_leaders_word_commits_no_entry_of_an_older_term():
    """Raft's Figure 8 for followers: a quorum holding an entry of an older term proves nothing."""
    entries = [initial_entry("abc"), Entry(2, 1, EntryKind.NORMAL, b"x")]
    c = RaftCore("c", hard_state=HardState(2, None), entries=entries, applied=1)
    c.become_follower(2, "a")
    c.step(Message(type=MsgType.APPEND_RESP, src="a", dst="c", term=2, index=2))
    assert c.commit == 1


def test_words_from_another_term_from_a_non_voter_or_refusals_count_for_nothing():
    h = Harness(learners=("d",))
    h.elect("a")
    index = _entry_on_both_followers(h)
    c = h.cores["c"]
    h.take(MsgType.APPEND_RESP)
    word = dict(type=MsgType.APPEND_RESP, dst="c", index=index)
    c.step(Message(src="a", term=c.term - 1, **word))    # an older term's
    c.step(Message(src="d", term=c.term, **word))        # a learner's
    c.step(Message(src="a", term=c.term, reject=True, **word))
    assert c.commit < index
    c.step(Message(src="a", term=c.term, **word))
    assert c.commit == index


def test_a_leaders_read_covers_what_a_follower_committed_before_the_leader_heard_an_ack():
    """A watcher on b may have seen the entry: a read on the leader after that must see it too."""
    h = Harness()
    a = h.elect("a")
    h.tick("a", h.opts.heartbeat_ticks)
    h.run()
    index = _entry_on_both_followers(h)
    h.deliver(h.take(MsgType.APPEND_RESP, src="a", dst="b"))
    assert h.cores["b"].commit == index and a.commit < index
    a.read_index(9)
    h.flush("a")
    h.deliver(h.take(MsgType.HEARTBEAT, src="a"))
    h.deliver(h.take(MsgType.HEARTBEAT_RESP))
    assert [(r.ctx, r.index) for r in h.reads["a"]] == [(9, index)]


def test_a_follower_whose_acks_lack_the_mark_still_gets_notices():
    """An older follower does not count the leader's word on its disk: its acks do not say it
    does, and the leader goes on telling it each commit."""
    h = Harness()
    a = h.elect("a")
    a.propose([b"x"])
    h.flush("a")
    h.deliver(h.take(MsgType.APPEND, src="a"))
    acks = [m for m in h.take(MsgType.APPEND_RESP) if m.dst == "a"]
    assert acks and all(m.done for m in acks)
    h.deliver([dataclasses.replace(m, done=False) if m.src == "b" else m for m in acks])
    notices = h.take(MsgType.APPEND, src="a")
    assert [m.dst for m in notices] == ["b"] and notices[0].commit == a.commit

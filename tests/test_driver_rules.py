"""The driver's rules (axon.raft.rules), shared by RaftNode and the simulation.

First each rule on its own, then the proof that the simulation runs them: break one rule in
the shared module and seeds that pass with the real rule fail.
"""
from __future__ import annotations

import pytest

from axon.raft import rules
from axon.raft.core import RaftCore, Ready
from axon.raft.types import ClusterConfig, Entry, HardState, Member, Message, MsgType, SnapshotMeta
from axon.testing.raft_sim import SimFailure, run_seed


def entries(lo: int, hi: int, term: int = 1) -> list[Entry]:
    return [Entry(i, term) for i in range(lo, hi + 1)]


def ack(index: int) -> Message:
    return Message(MsgType.APPEND_RESP, "n2", "n1", 1, index=index)


# ---------------------------------------------------------------------- Durability

def test_messages_needing_durability_wait_for_the_sync_of_every_earlier_write() -> None:
    d = rules.Durability(0)
    writes, free = d.track(Ready(entries=entries(1, 3), persist_messages=[ack(3)]))
    assert writes and free == [] and d.unsynced
    assert d.durable_index == 0
    upto = d.written
    # a write after the sync began is not covered by it; neither is the ack waiting for it
    writes, free = d.track(Ready(entries=entries(4, 4), persist_messages=[ack(4)]))
    assert writes and free == []
    done = d.sync_completed(upto)
    assert done.release == [ack(3)] and done.persisted == (3, 1)
    assert d.durable_index == 3 and d.unsynced
    done = d.sync_completed(d.written)
    assert done.release == [ack(4)] and done.persisted == (4, 1) and d.durable_index == 4
    assert d.sync_completed(d.written) == rules.Synced([], None)   # a late duplicate: nothing


def test_held_messages_go_at_once_when_nothing_is_unsynced() -> None:
    d = rules.Durability(5)
    writes, free = d.track(Ready(persist_messages=[ack(5)]))
    assert not writes and free == [ack(5)]


def test_a_hard_state_alone_is_a_write_to_wait_for() -> None:
    d = rules.Durability(0)
    vote = Message(MsgType.VOTE_RESP, "n2", "n1", 2)
    writes, free = d.track(Ready(hard_state=HardState(2, "n1"), persist_messages=[vote]))
    assert writes and free == []
    done = d.sync_completed(d.written)
    assert done.release == [vote] and done.persisted is None


def test_a_rewritten_suffix_is_not_durable_until_its_own_sync() -> None:
    d = rules.Durability(0)
    d.track(Ready(entries=entries(1, 10, term=1)))
    d.sync_completed(d.written)
    assert d.durable_index == 10
    d.track(Ready(entries=entries(8, 9, term=2)))   # a new leader's entries replace 8..10
    assert d.durable_index == 7
    d.sync_completed(d.written)
    assert d.durable_index == 9


def test_a_sync_of_older_writes_does_not_cover_a_newer_rewrite() -> None:
    d = rules.Durability(0)
    d.track(Ready(entries=entries(1, 10)))
    older = d.written
    d.track(Ready(entries=entries(8, 9, term=2)))
    d.sync_completed(older)
    assert d.durable_index == 7


def test_everything_is_durable_after_an_install_compacts_the_log() -> None:
    d = rules.Durability(0)
    d.track(Ready(entries=entries(1, 4), persist_messages=[ack(4)]))
    done = d.all_synced(20, 3)
    assert done.release == [ack(4)] and done.persisted == (20, 3)
    assert d.durable_index == 20 and not d.unsynced
    assert d.sync_completed(1).release == []   # the sync that was under way meanwhile


# ---------------------------------------------------------------------- ApplyQueue

def test_only_durable_entries_are_applied() -> None:
    q = rules.ApplyQueue()
    q.push(entries(1, 5))
    assert len(q) == 5
    assert q.take(applied=0, durable_index=0) is None
    assert [e.index for e in q.take(applied=0, durable_index=3)] == [1, 2, 3]
    assert q.take(applied=3, durable_index=3) is None
    assert [e.index for e in q.take(applied=3, durable_index=9)] == [4, 5]
    assert len(q) == 0 and q.take(5, 9) is None


def test_entries_an_installed_snapshot_covers_are_skipped_and_order_is_kept() -> None:
    q = rules.ApplyQueue()
    q.push(entries(1, 2))
    meta = SnapshotMeta(6, 1, ClusterConfig())
    q.push_snapshot(meta)
    q.push(entries(3, 8))
    assert [e.index for e in q.take(0, 8)] == [1, 2]
    assert q.take(2, 8) is meta
    assert [e.index for e in q.take(6, 8)] == [7, 8]


def test_take_with_a_limit_hands_out_one_entry_at_a_time() -> None:
    q = rules.ApplyQueue()
    q.push(entries(1, 3))
    assert [e.index for e in q.take(0, 3, limit=1)] == [1]
    assert [e.index for e in q.take(1, 3, limit=1)] == [2]
    assert len(q) == 1


# ---------------------------------------------------------------------- SnapshotStaging

META = SnapshotMeta(10, 2, ClusterConfig(voters={"n1": Member()}))


def chunk(offset: int, data: bytes, done: bool = False, src: str = "n1",
          meta: SnapshotMeta = META) -> Message:
    return Message(MsgType.SNAPSHOT, src, "n2", 2, snapshot=meta, offset=offset, data=data, done=done)


def test_a_stream_in_order_is_staged_and_completes() -> None:
    st = rules.SnapshotStaging()
    first = st.chunk(chunk(0, b"abc"))
    assert first == rules.ChunkStep(True, b"abc", None)
    assert st.chunk(chunk(3, b"de")) == rules.ChunkStep(False, b"de", None)
    assert st.chunk(chunk(5, b"", done=True)) == rules.ChunkStep(False, b"", META)


def test_a_gap_is_ignored_until_the_leader_starts_over() -> None:
    st = rules.SnapshotStaging()
    st.chunk(chunk(0, b"abc"))
    assert st.chunk(chunk(6, b"gh")) is None            # 3..5 went missing
    assert st.chunk(chunk(3, b"de", src="n3")) is None   # another sender's stream
    assert st.chunk(chunk(0, b"xyz")).restart


def test_a_new_stream_while_installing_is_ignored() -> None:
    core = RaftCore("n2", options=None)
    st = rules.SnapshotStaging()
    st.chunk(chunk(0, b"abc"))
    step = st.chunk(chunk(3, b"", done=True))
    assert st.received(core, step.complete, "n1") and st.installing
    assert st.chunk(chunk(0, b"abc")) is None


# ---------------------------------------------------------------------- start-up and compaction

def test_compaction_waits_for_enough_entries_and_keeps_some() -> None:
    assert rules.compaction_index(applied=150, snap_index=0, keep_entries=100, snapshot_entries=100) is None
    assert rules.compaction_index(applied=200, snap_index=0, keep_entries=100, snapshot_entries=100) == 100
    assert rules.compaction_index(applied=5, snap_index=5, keep_entries=0, snapshot_entries=0) is None


def test_compact_syncs_the_state_machine_before_the_log_drops_entries() -> None:
    core = RaftCore("n1", hard_state=HardState(1, None), entries=entries(1, 5), applied=5)
    calls: list[str] = []
    assert rules.compact(core, 4, lambda: calls.append("sync"),
                         lambda index, term: calls.append(f"log {index} {term}"))
    assert calls == ["sync", "log 4 1"] and core.snap_index == 4
    assert not rules.compact(core, 4, lambda: calls.append("sync"), lambda i, t: None)


def test_restart_drops_a_log_older_than_the_store_and_refuses_a_log_newer_than_it() -> None:
    assert not rules.log_behind_store(store_index=5, compacted_index=0, log_last=9)
    assert rules.log_behind_store(store_index=12, compacted_index=0, log_last=9)
    with pytest.raises(RuntimeError, match="damaged"):
        rules.log_behind_store(store_index=3, compacted_index=8, log_last=9)


# ---------------------------------------------------------------------- the simulation runs these rules

def _compact_without_syncing(core, index, sync_state_machine, compact_log):
    term = core.term_at(index)
    if term is None or index <= core.snap_index or index > core.applied:
        return False
    compact_log(index, term)
    core.compact(index)
    return True


# Each broken rule, and the seeds it is tried on.  The simulation is deterministic, so these
# numbers are exact for this code; the seed counts leave a wide margin (scanned over 100
# seeds: acks before the fsync fail ~35 % of seeds, applying undurable entries ~95 %,
# compacting before the state machine is synced ~65 %).
BROKEN_RULES = {
    "acks released before the fsync": ("must_wait_for_sync", lambda written, synced: False, 20),
    "committed entries applied before they are durable here": ("apply_limit", lambda durable, committed: committed, 5),
    "log compacted without syncing the state machine": ("compact", _compact_without_syncing, 10),
}


def failing_seeds(seeds: range) -> list[int]:
    failed = []
    for seed in seeds:
        try:
            run_seed(seed, 3)
        except SimFailure:
            failed.append(seed)
    return failed


@pytest.mark.parametrize("broken", sorted(BROKEN_RULES))
def test_breaking_a_shared_rule_makes_simulation_seeds_fail(broken, monkeypatch) -> None:
    name, replacement, count = BROKEN_RULES[broken]
    seeds = range(count)
    assert failing_seeds(seeds) == [], "the seeds must pass with the real rules"
    monkeypatch.setattr(rules, name, replacement)
    assert failing_seeds(seeds), f"no seed noticed: {broken}"

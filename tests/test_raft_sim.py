"""Deterministic simulation of whole Raft clusters: seed sweeps and named scenarios.

A failing seed's message holds the command that replays it with a trace:
``python -m axon.testing.raft_sim --seed N --nodes K -v``.
"""
from __future__ import annotations

import pytest

from axon.raft import rules
from axon.raft.core import ConfChange, Role
from axon.raft.errors import ConfChangeError
from axon.raft.types import Member
from axon.testing.linearizability import check_history
from axon.testing.raft_sim import SimConfig, SimFailure, Simulation, run_seed, write_command

QUICK_SEEDS = 50          # per cluster size, unmarked
SWEEP_SEEDS = 1000        # per cluster size, @slow: 2,000 seeds in all
CHUNK = 100


def sweep(seeds: range, nodes: int) -> None:
    failures = []
    for seed in seeds:
        try:
            run_seed(seed, nodes)
        except SimFailure as e:
            failures.append(str(e))
    assert not failures, f"{len(failures)} failing seed(s); first:\n{failures[0]}"


@pytest.mark.parametrize("nodes", [3, 5])
@pytest.mark.parametrize("start", range(0, QUICK_SEEDS, 25))
def test_quick_seed_sweep(nodes, start):
    sweep(range(start, start + 25), nodes)


@pytest.mark.slow
@pytest.mark.parametrize("nodes", [3, 5])
@pytest.mark.parametrize("start", range(QUICK_SEEDS, QUICK_SEEDS + SWEEP_SEEDS, CHUNK))
def test_seed_sweep(nodes, start):
    sweep(range(start, start + CHUNK), nodes)


def test_same_seed_same_run():
    a, b = run_seed(11, 5), run_seed(11, 5)
    assert a.stats == b.stats and a.max_committed == b.max_committed
    assert [op.describe() for op in a.history.ops()] == [op.describe() for op in b.history.ops()]


def test_seeds_exercise_the_nemesis():
    totals: dict[str, int] = {}
    for seed in range(20):
        for key, value in run_seed(seed, 3).stats.items():
            totals[key] = totals.get(key, 0) + value
    for key in ("crashes", "elections", "snapshots_installed", "conf_changes", "transfers",
                "writes_ok", "reads_ok", "follower_commits_first"):
        assert totals[key] > 0, (key, totals)


@pytest.mark.parametrize("seed", [3, 17, 29])
def test_history_is_linearizable(seed):
    sim = run_seed(seed, 5)
    result = check_history(sim.history)
    assert result.ok, result.explanation


def test_failure_message_names_the_replay_command(monkeypatch):
    """The checks bite: a driver that acks APPENDs before its fsync loses committed data."""
    monkeypatch.setattr(rules, "must_wait_for_sync", lambda written, synced: False)
    cfg = SimConfig(seed=4, nodes=3, nemesis=False, fsync_delay=(0.3, 0.5))
    sim = Simulation(cfg)
    with pytest.raises(SimFailure) as info:
        sim.run()
    text = str(info.value)
    assert "python -m axon.testing.raft_sim --seed 4 --nodes 3" in text
    assert "durable only on" in text


def test_cli_replays_a_seed(capsys):
    from axon.testing.raft_sim import main
    assert main(["--seed", "5", "--nodes", "3", "--steps", "60"]) == 0
    assert "seed 5 ok" in capsys.readouterr().out


# ---------------------------------------------------------------------- helpers

def quiet(seed: int, nodes: int = 3, **kw) -> Simulation:
    """A cluster without random faults; the test injects its own."""
    kw.setdefault("write_rate", 0.0)
    kw.setdefault("read_rate", 0.0)
    return Simulation(SimConfig(seed=seed, nodes=nodes, nemesis=False, **kw))


def wait_leader(sim: Simulation, ticks: int = 100):
    assert sim.wait_for(lambda: sim.leader() is not None, ticks), "no leader elected"
    return sim.leader()


def acked_writes(sim: Simulation):
    return [op for op in sim.history.ops() if op.kind == "write" and op.status == "ok"]


def terms_seen(sim: Simulation) -> set[int]:
    return set(sim.leaders)


# ---------------------------------------------------------------------- pysyncobj regressions

@pytest.mark.parametrize("seed", range(6))
def test_a_crash_of_every_node_loses_no_acknowledged_write(seed):
    """(a) journal never fsynced: every node crashes at once, mid-fsync, again and again."""
    sim = quiet(seed, write_rate=3.0, read_rate=1.0, fsync_delay=(0.02, 0.15))
    wait_leader(sim)
    for _ in range(6):
        sim.run_ticks(sim.rng.randrange(5, 25))
        for nid in list(sim.nodes):
            sim.crash(nid)
        for nid in list(sim.nodes):
            sim.restart(nid)
    sim.settle()
    acked = acked_writes(sim)
    assert acked
    lead = sim.leader()
    for op in acked:
        entry = sim.committed[op.result]
        assert entry.data == write_command(op)
        assert op.result <= lead.core.snap_index or lead.core.term_at(op.result) == entry.term
    assert check_history(sim.history).ok


@pytest.mark.parametrize("seed", range(4))
def test_b_pipelining_under_load_with_reordering_and_duplicates(seed):
    """(b) under load with pipelined batches, reordering, duplication and loss nobody is
    cut back below what it applied, and every follower catches up afterwards."""
    sim = quiet(seed, nodes=5, write_rate=6.0, read_rate=1.0, duplicate=0.2, loss=0.05,
                min_delay=0.001, max_delay=0.25, compact_every=40)
    wait_leader(sim)
    sim.run_ticks(120, workload=True)
    assert len(acked_writes(sim)) > 200
    sim.settle()       # asserts every member applied the final write within the deadline


@pytest.mark.parametrize("seed", range(4))
def test_b_snapshot_racing_log_rewind_does_not_wedge_follower(seed):
    """(b) a slow follower gets snapshots while delayed acks and probes race them."""
    sim = quiet(seed, write_rate=4.0, compact_every=5, duplicate=0.1, chunk_size=16)
    lead = wait_leader(sim)
    slow = next(nid for nid in sim.nodes if nid != lead.id)
    sim.net.set_node_delay(slow, 0.35)
    sim.run_ticks(80)
    sim.net.set_node_delay(slow, 0.0)
    sim.run_ticks(10)
    assert sim.stats["snapshots_installed"] >= 1
    assert sim.stats["snapshot_chunks"] > sim.stats["snapshots_sent"]   # streamed in chunks
    final = sim.leader()
    assert sim.wait_for(lambda: all(n.sm.applied >= final.sm.applied for n in sim.nodes.values()),
                        60, workload=False), {nid: n.sm.applied for nid, n in sim.nodes.items()}


@pytest.mark.parametrize("seed", range(3))
def test_b_long_conflicting_uncommitted_suffix_converges(seed):
    """(b) a deposed leader with a long uncommitted suffix is brought back into line."""
    sim = quiet(seed)
    old = wait_leader(sim)
    others = [nid for nid in sim.nodes if nid != old.id]
    sim.net.partition([old.id], others)
    for i in range(300):
        old.core.propose([b"0|x|junk%d" % i])
    sim._process(old)
    assert sim.wait_for(lambda: sim.leader() is not None and sim.leader().id != old.id, 100)
    new = sim.leader()
    for i in range(20):
        sim.write(new.id, "k", f"kept{i}")
    sim.run_ticks(5)
    sim.net.heal()
    assert sim.wait_for(lambda: old.core.last_index() == new.core.last_index()
                        and old.core.commit == new.core.commit, 60)
    assert old.core.term_at(old.core.last_index()) == new.core.term
    assert all(b"junk" not in e.data for e in old.core.log)


@pytest.mark.parametrize("seed", range(3))
def test_c_slow_state_machine_keeps_terms_stable(seed):
    """(c) applying is slow and far behind, yet heartbeats flow: no election storm."""
    sim = quiet(seed, write_rate=8.0, read_rate=1.0, apply_delay=0.02)
    wait_leader(sim)
    terms_before = terms_seen(sim)
    sim.run_ticks(150)
    backlog = max(len(n.apply_queue) for n in sim.nodes.values())
    assert backlog > 100, "the state machine was not slow enough to matter"
    assert terms_seen(sim) == terms_before, f"new terms while applying slowly: {sim.leaders}"
    assert sim.stats["elections"] == 1


@pytest.mark.parametrize("seed", range(3))
def test_d_isolated_leader_never_serves_reads(seed):
    """(d) a leader cut off by a partition answers no read; reads elsewhere are never stale."""
    sim = quiet(seed, nodes=5, write_rate=1.0, read_rate=0.0)
    old = wait_leader(sim)
    sim.run_ticks(10)
    others = [nid for nid in sim.nodes if nid != old.id]
    sim.net.partition([old.id], others)
    cut_off_reads = []
    for _ in range(30):
        cut_off_reads += sim.read_batch(old.id, ["a", "b"])
        for nid in others:
            sim.read(nid, "a")
        sim.step()
    assert not old.core.is_leader
    assert all(op.status != "ok" for op in cut_off_reads)
    new = sim.leader()
    assert new is not None and new.id != old.id
    assert any(op.status == "ok" for op in sim.history.ops() if op.kind == "read")
    sim.net.heal()
    sim.run_ticks(30)
    assert check_history(sim.history).ok


# ---------------------------------------------------------------------- required features

def test_pre_vote_partitioned_follower_rejoins_without_disrupting():
    sim = quiet(1, nodes=5, write_rate=0.5)
    lead = wait_leader(sim)
    term = lead.core.term
    loner = next(nid for nid in sim.nodes if nid != lead.id)
    sim.net.partition([loner], [nid for nid in sim.nodes if nid != loner])
    sim.run_ticks(100)
    assert sim.nodes[loner].core.term == term        # pre-vote never bumped its term
    sim.net.heal()
    sim.run_ticks(60)
    assert sim.leader() is lead and lead.core.term == term
    assert terms_seen(sim) == {term}


def test_check_quorum_leader_steps_down_within_an_election_timeout():
    sim = quiet(2, nodes=3)
    lead = wait_leader(sim)
    sim.run_ticks(7)
    sim.net.partition([lead.id], [nid for nid in sim.nodes if nid != lead.id])
    ticks = 0
    while lead.core.is_leader:
        sim.step()
        ticks += 1
        assert ticks <= 2 * sim.options.election_ticks, "isolated leader did not step down"
    assert lead.core.role == Role.FOLLOWER


def test_learner_catches_up_by_snapshot_then_is_promoted():
    sim = quiet(3, write_rate=2.0, compact_every=8)
    lead = wait_leader(sim)
    sim.run_ticks(40)
    nid = sim.add_node()
    lead.core.propose_conf_change(ConfChange("add_learner", nid, Member(nid, "")))
    with pytest.raises(ConfChangeError):
        lead.core.propose_conf_change(ConfChange("remove", nid))   # one change at a time
    sim._process(lead)
    assert sim.wait_for(lambda: nid in sim.committed_config.voters, 100, workload=True)
    newbie = sim.nodes[nid]
    assert newbie.disk.snap_index > 0                           # it came in by snapshot
    assert sim.wait_for(lambda: newbie.sm.applied >= lead.sm.applied - 10, 50)


def test_remove_leader_then_cluster_goes_on():
    sim = quiet(4, nodes=5, write_rate=1.0)
    lead = wait_leader(sim)
    sim.run_ticks(10)
    lead.core.propose_conf_change(ConfChange("remove", lead.id))
    sim._process(lead)
    assert sim.wait_for(lambda: lead.id not in sim.committed_config.voters, 50, workload=True)
    assert sim.wait_for(lambda: sim.leader() not in (None, lead), 60)
    assert len(sim.committed_config.voters) == 4
    sim.settle()


def test_leadership_transfer():
    sim = quiet(5, nodes=3, write_rate=1.0)
    lead = wait_leader(sim)
    sim.run_ticks(10, workload=True)
    target = next(nid for nid in sim.nodes if nid != lead.id)
    lead.core.transfer_leadership(target)
    sim._process(lead)
    assert sim.wait_for(lambda: sim.leader() is sim.nodes[target], 30, workload=True)
    assert sim.nodes[target].core.term == lead.core.term


def test_read_index_batching_shares_one_heartbeat_round():
    sim = quiet(6, nodes=5, write_rate=1.0)
    lead = wait_leader(sim)
    sim.run_ticks(10, workload=True)
    before = sim.stats["heartbeats"]
    ops = sim.read_batch(lead.id, ["a", "b", "c", "d"] * 10)
    assert sim.stats["heartbeats"] - before == 4          # one round to the 4 followers
    assert sim.wait_for(lambda: all(op.status == "ok" for op in ops), 5)

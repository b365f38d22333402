"""The in-memory Raft log is bounded by bytes as well as entries: big entries compact it early."""
from __future__ import annotations

import gevent

from axon.kv.commands import Put, command_size, encode_commands
from axon.kv.machine import KVStateMachine
from axon.kv.store import Store
from axon.testing.fake_raft import NullTransport
from axon.raft import rules
from axon.raft.core import RaftCore
from axon.raft import node as node_module
from axon.raft.node import RaftNode
from axon.raft.types import Entry, HardState, Member, Message, MsgType
from axon.testing.cluster import Cluster
from axon.testing.polling import wait_until

MiB = 1 << 20


def sized(lo: int, hi: int, size: int, term: int = 1) -> list[Entry]:
    return [Entry(i, term, data=b"x" * size) for i in range(lo, hi + 1)]


# ---------------------------------------------------------------------- the core counts its bytes

def test_log_bytes_follow_appends_truncations_and_compaction() -> None:
    core = RaftCore("n2", hard_state=HardState(1, None), entries=sized(1, 4, 100))
    assert core.log_bytes == 400
    # a leader of term 2 overwrites entries 3 and 4 with one bigger entry
    core.step(Message(MsgType.APPEND, "n1", "n2", 2, index=2, log_term=1, entries=sized(3, 3, 1000, 2)))
    assert core.last_index() == 3 and core.log_bytes == 1200
    core.commit = core.applied = 3
    core.compact(2)
    assert core.log_bytes == 1000 and core.status()["log_bytes"] == 1000


def test_byte_compaction_waits_for_the_bound_then_keeps_a_quarter_of_it() -> None:
    core = RaftCore("n1", hard_state=HardState(1, None), entries=sized(1, 10, 100), applied=10)
    assert rules.byte_compaction_index(core, applied=10, keep_entries=1000, snapshot_bytes=2000) is None
    # bound 1000 reached: keep at most 250 bytes (two entries) behind the applied index
    assert rules.byte_compaction_index(core, applied=10, keep_entries=1000, snapshot_bytes=1000) == 8
    assert rules.byte_compaction_index(core, applied=10, keep_entries=1, snapshot_bytes=1000) == 9
    # never past what is applied, never for a log of unapplied entries
    assert rules.byte_compaction_index(core, applied=6, keep_entries=1000, snapshot_bytes=1000) == 4
    assert rules.byte_compaction_index(core, applied=0, keep_entries=0, snapshot_bytes=1000) is None
    assert rules.byte_compaction_index(core, applied=10, keep_entries=0, snapshot_bytes=0) is None


def test_a_log_of_mostly_unapplied_bytes_waits_to_free_a_quarter_of_the_bound() -> None:
    core = RaftCore("n1", hard_state=HardState(1, None), entries=sized(1, 10, 100), applied=10)
    # 1000 bytes held, 100 of them applied: compacting would free less than 250
    assert rules.byte_compaction_index(core, applied=1, keep_entries=0, snapshot_bytes=1000) is None
    assert rules.byte_compaction_index(core, applied=3, keep_entries=0, snapshot_bytes=1000) == 3


def test_one_entry_bigger_than_what_is_kept_is_compacted_too() -> None:
    core = RaftCore("n1", hard_state=HardState(1, None), entries=sized(1, 2, 5000), applied=2)
    assert rules.byte_compaction_index(core, applied=2, keep_entries=1000, snapshot_bytes=4000) == 2


# ---------------------------------------------------------------------- the driver compacts on it

def test_a_node_writing_big_entries_compacts_before_the_entry_count(tmp_path) -> None:
    bound = 256 << 10
    with Store.open(str(tmp_path / "store")) as store:
        machine = KVStateMachine(store)
        node = RaftNode("n1", Member("127.0.0.1:1", "127.0.0.1:2"), str(tmp_path / "raft"),
                        machine, lambda _cb: NullTransport(), encode_batch=encode_commands,
                        item_size=command_size, bootstrap=True, tick_interval=0.01,
                        snapshot_entries=20000, snapshot_bytes=bound)
        node.fatal = lambda exc: None
        node.start()
        try:
            wait_until(lambda: node.is_leader, 10, "a one-voter leader")
            held = []
            for i in range(40):   # 40 x 64 KiB = 10 bounds' worth
                node.propose([Put(f"k{i}", "v" * (64 << 10))], timeout=10)
                held.append(node.core.log_bytes)
            gevent.sleep(0)
            assert node.core.snap_index > 1, "no compaction on bytes"
            assert max(held) <= bound + (64 << 10) + 1024
            assert sum(len(e.data) for e in node.wal.entries()) <= bound + (64 << 10) + 1024
            assert store.get("k39")[0] == "v" * (64 << 10)
        finally:
            node.stop()
            machine.close()


def test_the_store_is_synced_every_few_mib_applied_not_only_at_compaction(tmp_path, monkeypatch) -> None:
    """Each sync then has at most that much of LevelDB's log to flush (see STORE_SYNC_BYTES)."""
    monkeypatch.setattr(node_module, "STORE_SYNC_BYTES", 256 << 10)
    with Store.open(str(tmp_path / "store")) as store:
        machine = KVStateMachine(store)
        synced_at: list[int] = []
        real_sync = machine.sync
        machine.sync = lambda: (synced_at.append(store.applied_index), real_sync())[1]
        node = RaftNode("n1", Member("127.0.0.1:1", "127.0.0.1:2"), str(tmp_path / "raft"),
                        machine, lambda _cb: NullTransport(), encode_batch=encode_commands,
                        item_size=command_size, bootstrap=True, tick_interval=0.01,
                        snapshot_entries=20000, snapshot_bytes=1 << 30)
        node.fatal = lambda exc: None
        node.start()
        try:
            wait_until(lambda: node.is_leader, 10, "a one-voter leader")
            first = node.applied_index
            for i in range(40):   # 40 x 64 KiB: ten times the sync bound, far below a compaction
                node.propose([Put(f"k{i}", "v" * (64 << 10))], timeout=10)
            assert node.core.snap_index == 0, "the test meant no compaction"
            # one sync per 256 KiB applied, each within four entries of the one before
            assert 8 <= len(synced_at) <= 10, synced_at
            gaps = [b - a for a, b in zip([first] + synced_at, synced_at)]
            assert max(gaps) <= 5, gaps
        finally:
            node.stop()
            machine.close()


# ---------------------------------------------------------------------- a real node stays bounded

def _memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in bytes."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                out[name] = int(rest.split()[0]) * 1024
    return out


def test_a_node_taking_1mib_writes_compacts_on_bytes_and_its_memory_stays_bounded(tmp_path) -> None:
    bound = 8 * MiB
    value = "v" * (MiB - 64)
    with Cluster(tmp_path, n=1, extra_args=["--snapshot-bytes", str(bound)]) as cluster:
        node = cluster.nodes[0]
        for i in range(16):   # warm up: LevelDB's buffers and the allocator's arenas fill first
            node.client.put(f"big/{i % 8}", value)
        before = _memory(node.proc.pid)["VmRSS"]
        for i in range(160):   # 20 bounds' worth; without the bound all of it stays in the log
            node.client.put(f"big/{i % 8}", value)
        after = _memory(node.proc.pid)
        status = cluster.wait_for(
            lambda: (st := node.status())["log_bytes"] <= bound + MiB and st,
            message="the log back under its byte bound")
        assert status["snapshot_index"] > 100, status
        assert "bytes bound" in node.log_text()
        grown = after["VmHWM"] - before
        print(f"RSS before {before / MiB:.0f} MiB, after {after['VmRSS'] / MiB:.0f} MiB, "
              f"peak {after['VmHWM'] / MiB:.0f} MiB, log {status['log_bytes'] / MiB:.1f} MiB")
        assert grown < 100 * MiB, f"peak RSS grew {grown / MiB:.0f} MiB over 160 MiB of writes"

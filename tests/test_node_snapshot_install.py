"""A follower installing a large snapshot while the leader goes on talking to it.

Both were found by real runs.  bench/scale.py with 1,000,000 keys: the leader re-sent a
snapshot while the joiner was still installing the first, the new stream's first chunk
truncated the staging file under the install, and the joiner stopped with "snapshot stream
is truncated".  The chaos suite (kill-all): appends carried the follower past the snapshot
during the install, and finishing it dropped acknowledged entries from the WAL.
"""
from __future__ import annotations

import gevent

from axon.kv.commands import Put, command_size, encode_commands
from axon.raft.core import encode_config_bytes
from axon.raft.node import RaftNode
from axon.raft.types import ClusterConfig, Entry, EntryKind, Member, Message, MsgType, SnapshotMeta
from axon.raft.wal import WAL
from axon.kv.machine import KVStateMachine
from axon.kv.store import Store
from axon.testing.polling import wait_until

LEADER = Member("127.0.0.1:1", "127.0.0.1:2")
FOLLOWER = Member("127.0.0.1:3", "127.0.0.1:4")


class _Sink:
    """A transport that only records what the node sends."""

    def __init__(self) -> None:
        self.sent: list[Message] = []

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def set_peers(self, peers: dict) -> None: ...
    def backlog(self, peer_id: str) -> int: return 0

    def send(self, msg: Message) -> None:
        self.sent.append(msg)


def _source_snapshot(tmp_path, keys: int) -> tuple[SnapshotMeta, list[bytes]]:
    config = ClusterConfig(voters={"n1": LEADER, "n2": FOLLOWER})
    with Store.open(str(tmp_path / "source")) as store:
        machine = KVStateMachine(store)
        machine.apply([Entry(1, 1, EntryKind.CONFIG, encode_config_bytes(config))])
        batch = [Put(f"k{i:07d}", "v" * 100) for i in range(keys)]
        machine.apply([Entry(2, 1, EntryKind.NORMAL, encode_commands(batch))])
        meta, stream = machine.snapshot_reader(64 * 1024)
        return meta, list(stream)


def _chunks(meta: SnapshotMeta, chunks: list[bytes]) -> list[Message]:
    out, offset = [], 0
    for data in chunks:
        out.append(Message(MsgType.SNAPSHOT, "n1", "n2", 1, snapshot=meta, offset=offset, data=data))
        offset += len(data)
    out.append(Message(MsgType.SNAPSHOT, "n1", "n2", 1, snapshot=meta, offset=offset, done=True))
    return out


def _follower(tmp_path) -> tuple[Store, RaftNode, list[BaseException]]:
    """A started follower node n2 with an empty store; fatal errors land in the list."""
    store = Store.open(str(tmp_path / "store"))
    failures: list[BaseException] = []
    node = RaftNode("n2", FOLLOWER, str(tmp_path / "raft"), KVStateMachine(store), lambda _cb: _Sink(),
                    encode_batch=encode_commands, item_size=command_size)
    node.fatal = failures.append
    node.start()
    return store, node, failures


def _deliver(node: RaftNode, msgs: list[Message]) -> None:
    for msg in msgs:
        node.receive(msg)
        gevent.sleep(0)


def test_a_second_stream_does_not_break_an_install_in_progress(tmp_path) -> None:
    meta, chunks = _source_snapshot(tmp_path, 100_000)
    store, node, failures = _follower(tmp_path)
    try:
        _deliver(node, _chunks(meta, chunks))
        # The leader starts over while the install (100,000 records) is still running.
        _deliver(node, _chunks(meta, chunks)[:3])
        wait_until(lambda: node.applied_index >= meta.index or failures, 60, "the install")
        assert failures == []
        assert store.get("k0099999") == ("v" * 100, 2)
        assert store.count() == 100_000
    finally:
        node.stop()
        store.close()


def test_appends_that_arrive_during_an_install_stay_in_the_log(tmp_path) -> None:
    """Before the fix the WAL was compacted as if the snapshot replaced the whole log; the
    next append then stopped the node with a WAL gap."""
    config = ClusterConfig(voters={"n1": LEADER, "n2": FOLLOWER})
    log = [Entry(1, 1, EntryKind.CONFIG, encode_config_bytes(config)),
           Entry(2, 1, EntryKind.NORMAL,
                 encode_commands([Put(f"k{i:07d}", "v" * 100) for i in range(100_000)])),
           Entry(3, 1, EntryKind.NORMAL, encode_commands([Put("three", "3")]))]
    log += [Entry(i, 1, EntryKind.NORMAL, encode_commands([Put(f"after{i}", str(i))]))
            for i in (4, 5, 6)]
    with Store.open(str(tmp_path / "source")) as source:
        machine = KVStateMachine(source)
        machine.apply(log[:3])
        meta, stream = machine.snapshot_reader(64 * 1024)
        chunks = list(stream)
    assert meta.index == 3
    store, node, failures = _follower(tmp_path)
    try:
        _deliver(node, _chunks(meta, chunks))
        # While the 100,000-record install runs, the leader's appends bring the log to 5.
        node.receive(Message(MsgType.APPEND, "n1", "n2", 1, index=0, log_term=0,
                             entries=tuple(log[:5]), commit=5))
        wait_until(lambda: node.core.last_index() == 5 or failures, 60, "the appends")
        assert node.applied_index < meta.index, "the install finished first: nothing was raced"
        wait_until(lambda: node.applied_index == 5 or failures, 60, "entries after the snapshot to apply")
        node.receive(Message(MsgType.APPEND, "n1", "n2", 1, index=5, log_term=1,
                             entries=(log[5],), commit=6))
        wait_until(lambda: node.applied_index == 6 or failures, 60, "the next append to apply")
        assert failures == []
        assert store.get("after6") == ("6", 6) and store.get("k0099999") == ("v" * 100, 2)
    finally:
        node.stop()
        store.close()
    with WAL.open(str(tmp_path / "raft")) as wal:
        assert [e.index for e in wal.entries()] == [4, 5, 6]


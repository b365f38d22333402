"""A follower installing a large snapshot while the leader starts streaming another one.

Found by bench/scale.py with 1,000,000 keys: the leader re-sent a snapshot while the joiner was
still installing the first, the new stream's first chunk truncated the staging file under
the install, and the joiner stopped with "snapshot stream is truncated".
"""
from __future__ import annotations

import gevent

from axon.commands import Put, command_size, encode_commands
from axon.raft.node import RaftNode
from axon.raft.types import ClusterConfig, Entry, EntryKind, Member, Message, MsgType, SnapshotMeta
from axon.store import Store

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
        from axon.raft.core import encode_config_bytes
        store.apply([Entry(1, 1, EntryKind.CONFIG, encode_config_bytes(config))])
        batch = [Put(f"k{i:07d}", "v" * 100) for i in range(keys)]
        store.apply([Entry(2, 1, EntryKind.NORMAL, encode_commands(batch))])
        meta, stream = store.snapshot_reader(64 * 1024)
        return meta, list(stream)


def _chunks(meta: SnapshotMeta, chunks: list[bytes]) -> list[Message]:
    out, offset = [], 0
    for data in chunks:
        out.append(Message(MsgType.SNAPSHOT, "n1", "n2", 1, snapshot=meta, offset=offset, data=data))
        offset += len(data)
    out.append(Message(MsgType.SNAPSHOT, "n1", "n2", 1, snapshot=meta, offset=offset, done=True))
    return out


def test_a_second_stream_does_not_break_an_install_in_progress(tmp_path) -> None:
    meta, chunks = _source_snapshot(tmp_path, 100_000)
    store = Store.open(str(tmp_path / "store"))
    failures: list[BaseException] = []
    node = RaftNode("n2", FOLLOWER, str(tmp_path / "raft"), store, lambda _cb: _Sink(),
                    encode_batch=encode_commands, item_size=command_size)
    node.fatal = failures.append
    node.start()
    try:
        for msg in _chunks(meta, chunks):
            node.receive(msg)
            gevent.sleep(0)
        # The leader starts over while the install (100,000 records) is still running.
        again = _chunks(meta, chunks)
        for msg in again[:3]:
            node.receive(msg)
            gevent.sleep(0)
        deadline = gevent.get_hub().loop.now() + 60
        while node.applied_index < meta.index and not failures:
            assert gevent.get_hub().loop.now() < deadline, "the snapshot was never installed"
            gevent.sleep(0.02)
        assert failures == []
        assert store.get("k0099999") == ("v" * 100, 2)
        assert store.count() == 100_000
    finally:
        node.stop()
        store.close()

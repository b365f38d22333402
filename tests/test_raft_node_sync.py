"""The driver's fdatasync placement (inline while syncs are quick, a worker thread once slow),
and its waits' deadlines."""
from __future__ import annotations

import threading
import time

import gevent.event
import pytest

from axon.kv.commands import command_size, encode_commands
from axon.raft.errors import Timeout
from axon.raft.node import RaftNode
from axon.raft.types import Member
from axon.raft.wal_sync import INLINE_SYNC_BELOW
from axon.kv.machine import KVStateMachine
from axon.kv.store import Store
from axon.testing.fake_raft import NullTransport


class _Log:
    """Stands in for the WAL: a sync (inline, or its token's run) records the thread it ran
    on and takes `seconds`."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.thread: int | None = None

    def sync(self) -> None:
        self.thread = threading.get_ident()
        time.sleep(self.seconds)

    def begin_sync(self) -> "_Log":
        return self

    run = sync


def _threads(node: RaftNode, seconds: float, count: int) -> list[bool]:
    """For each of `count` syncs taking `seconds`: did it run on the hub's own thread?"""
    inline = []
    for _ in range(count):
        log = _Log(seconds)
        node.wal_syncer.run(log)
        inline.append(log.thread == threading.get_ident())
    return inline


def test_slow_syncs_move_to_a_worker_and_quick_ones_come_back(tmp_path) -> None:
    with Store.open(str(tmp_path / "store")) as store:
        node = RaftNode("n1", Member("127.0.0.1:1", "127.0.0.1:2"), str(tmp_path / "raft"),
                        KVStateMachine(store), lambda _cb: NullTransport(),
                        encode_batch=encode_commands, item_size=command_size)
        try:
            assert _threads(node, 0.0, 3) == [True, True, True]
            slow = _threads(node, INLINE_SYNC_BELOW * 20, 6)
            assert slow[0] is True and slow[-1] is False   # one slow sync is enough to move
            quick = _threads(node, 0.0, 40)
            assert quick[0] is False and quick[-1] is True  # and the average brings it back
        finally:
            node.wal.close()


def test_a_wait_nobody_answers_ends_in_timeout_within_a_tick(tmp_path) -> None:
    """The driver's waits carry no timer of their own: the ticker fails them once overdue."""
    with Store.open(str(tmp_path / "store")) as store:
        node = RaftNode("n1", Member("127.0.0.1:1", "127.0.0.1:2"), str(tmp_path / "raft"),
                        KVStateMachine(store), lambda _cb: NullTransport(),
                        encode_batch=encode_commands, item_size=command_size, tick_interval=0.02)
        node.start()
        try:
            started = time.monotonic()
            with pytest.raises(Timeout, match="write timed out after 0.2s"):
                node._wait(gevent.event.AsyncResult(), 0.2, "write")
            assert 0.2 <= time.monotonic() - started < 1.0
            answered = gevent.event.AsyncResult()
            gevent.spawn_later(0.05, answered.set, "done")
            assert node._wait(answered, 0.2, "write") == "done"
            assert len(node.deadlines) == 0
        finally:
            node.stop()

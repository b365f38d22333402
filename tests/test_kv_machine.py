"""The Raft state machine adapter (axon.kv.machine) over a real LevelDB store, with its feed."""
from __future__ import annotations

import gevent
import msgpack
import plyvel
import pytest

from axon.kv.commands import Delete, Put, Result, encode_commands
from axon.kv.feed import Change, ChangeFeed, Compacted, Reset, SubscriptionClosed
from axon.kv.machine import KVStateMachine
from axon.kv.store import Store, StoreError
from axon.raft.core import encode_config_bytes
from axon.raft.types import ClusterConfig, Entry, EntryKind, Member, SnapshotMeta, encode_config
from axon.testing.polling import wait_until

THREE = ClusterConfig(voters={"n1": Member("127.0.0.1:7001", "127.0.0.1:8001"),
                              "n2": Member("127.0.0.1:7002", "127.0.0.1:8002")},
                      learners={"n3": Member("127.0.0.1:7003", "127.0.0.1:8003")})
TWO = ClusterConfig(voters={"n1": Member("127.0.0.1:7001", "127.0.0.1:8001"),
                            "n2": Member("127.0.0.1:7002", "127.0.0.1:8002")})


def normal(index: int, *cmds, term: int = 1) -> Entry:
    return Entry(index, term, EntryKind.NORMAL, encode_commands(cmds))


def config_entry(index: int, config: ClusterConfig, term: int = 1) -> Entry:
    return Entry(index, term, EntryKind.CONFIG, encode_config_bytes(config))


def events(machine: KVStateMachine, from_revision: int = 1) -> list:
    """Every change the feed still holds from ``from_revision`` on."""
    subscription = machine.feed.subscribe(from_revision=from_revision)
    try:
        return subscription.read(timeout=0, limit=100_000)
    finally:
        subscription.close()


@pytest.fixture
def machine(tmp_path):
    m = KVStateMachine(Store.open(str(tmp_path / "db")))
    yield m
    m.close()


def in_worker_thread(fn, *args):
    """Run ``fn`` the way the driver runs restore: in the hub's thread pool."""
    return gevent.get_hub().threadpool.apply(fn, args)


# ---- apply -------------------------------------------------------------------------

def test_applied_entries_change_the_store_and_publish_what_changed(machine):
    subscription = machine.feed.subscribe()
    results = machine.apply([
        normal(1, Put("a", "1"), Put("b", "2"), Put("c", "3")),
        Entry(2, 1, EntryKind.NOOP),
        normal(3, Delete("b"), Put("a", "x", if_revision=9), Delete("missing"), Put("c", "4", if_revision=1),
               Put("c", "5"), Put("d", "", if_absent=True), Put("a", "y", if_absent=True)),
        config_entry(4, THREE),
    ])
    assert results == [
        [Result(True, "a", "1", 1), Result(True, "b", "2", 1), Result(True, "c", "3", 1)],
        [],
        [Result(True, "b", "2", 3), Result(False, "a", "1", 1, "conflict"), Result(False, "missing", error="not_found"),
         Result(True, "c", "4", 3), Result(True, "c", "5", 3), Result(True, "d", "", 3),
         Result(False, "a", "1", 1, "conflict")],
        [],
    ]
    store = machine.store
    assert [store.get(k) for k in "abcd"] == [("1", 1), None, ("5", 3), ("", 3)]
    expected = [Change("a", 1, "put", "1"), Change("b", 1, "put", "2"), Change("c", 1, "put", "3"),
                Change("b", 3, "delete", None), Change("c", 3, "put", "4"), Change("c", 3, "put", "5"),
                Change("d", 3, "put", "")]
    assert subscription.read(timeout=0, limit=100) == expected
    assert events(machine) == expected   # the retained history holds the same
    assert machine.feed.last_revision == machine.applied_index == 4


def test_failed_commands_noops_and_configs_publish_nothing_but_progress(machine):
    machine.apply([normal(1, Put("a", "1"))])
    subscription = machine.feed.subscribe()
    machine.apply([normal(2, Put("a", "x", if_revision=7), Delete("nope"), Put("a", "z", if_absent=True)),
                   Entry(3, 1, EntryKind.NOOP), config_entry(4, TWO), normal(5)])
    assert subscription.read(timeout=0) == [] and subscription.pending == 0
    assert machine.feed.last_revision == 5 and machine.store.get("a") == ("1", 1)


def test_entries_applied_before_publish_nothing_again(machine):
    log = [normal(1, Put("a", "1")), normal(2, Delete("a"))]
    machine.apply(log)
    subscription = machine.feed.subscribe()
    assert machine.apply(log) == [[], []]
    assert subscription.read(timeout=0) == [] and machine.feed.last_revision == 2


def test_a_failed_apply_publishes_nothing(machine):
    subscription = machine.feed.subscribe()
    with pytest.raises(StoreError, match="does not follow"):
        machine.apply([normal(1, Put("a", "1")), normal(3, Put("b", "2"))])
    assert subscription.read(timeout=0) == [] and machine.feed.last_revision == 0
    assert machine.store.get("a") is None


def test_config_entries_round_trip_and_bad_ones_are_skipped(machine, caplog):
    assert machine.config is None
    machine.apply([config_entry(1, THREE)])
    assert machine.config == THREE
    machine.apply([Entry(2, 1, EntryKind.CONFIG, b"\x93not a config"), Entry(3, 1, 7, b"")])
    assert machine.config == THREE and machine.applied_index == 3
    assert "undecodable config" in caplog.text and "unknown kind" in caplog.text
    machine.apply([config_entry(4, TWO, term=2)])
    assert (machine.config, machine.applied_term) == (TWO, 2)


def test_reopening_keeps_applied_index_term_and_config(tmp_path):
    path = str(tmp_path / "db")
    first = KVStateMachine(Store.open(path))
    first.apply([normal(1, Put("a", "1")), config_entry(2, THREE, term=2), normal(3, Put("b", "2"), term=3)])
    first.sync()
    first.close()
    again = KVStateMachine(Store.open(path))
    try:
        assert (again.applied_index, again.applied_term, again.config) == (3, 3, THREE)
        assert again.store.get("b") == ("2", 3)
        # Changes from before the restart are not in the feed: it starts where the store is.
        assert again.feed.last_revision == 3
        with pytest.raises(Compacted):
            again.feed.subscribe(from_revision=3)
        again.apply([normal(4, Put("c", "3"), term=3)])
        assert events(again, from_revision=4) == [Change("c", 4, "put", "3")]
    finally:
        again.close()


def test_the_config_on_disk_keeps_its_format(machine, tmp_path):
    """Data dirs written before the store stopped decoding configs must open, and vice versa."""
    machine.apply([config_entry(1, THREE)])
    path = machine.store.path
    machine.store.close()
    db = plyvel.DB(path)
    try:
        assert db.get(b"\x00m/config") == msgpack.packb(encode_config(THREE), use_bin_type=True)
        assert msgpack.unpackb(db.get(b"\x00m/applied")) == [1, 1]
    finally:
        db.close()


def test_a_data_dir_written_by_hand_in_the_old_layout_opens(tmp_path):
    path = str(tmp_path / "old")
    db = plyvel.DB(path, create_if_missing=True)
    db.put(b"\x00m/format", b"axon-store/1")
    db.put(b"\x00m/applied", msgpack.packb([12, 4]))
    db.put(b"\x00m/config", msgpack.packb(encode_config(THREE)))
    db.put(b"kkey", msgpack.packb([9, "value"]))
    db.close()
    machine = KVStateMachine(Store.open(path))
    try:
        assert (machine.applied_index, machine.applied_term, machine.config) == (12, 4, THREE)
        assert machine.store.get("key") == ("value", 9)
    finally:
        machine.close()


def test_a_corrupt_config_on_disk_is_a_store_error(tmp_path):
    path = str(tmp_path / "db")
    with Store.open(path) as store:
        pass
    db = plyvel.DB(path)
    db.put(b"\x00m/config", b"\xc1")
    db.close()
    with Store.open(path) as store:
        with pytest.raises(StoreError, match="config"):
            KVStateMachine(store)


def test_a_given_feed_must_start_where_the_store_is(tmp_path):
    with Store.open(str(tmp_path / "db")) as store:
        with pytest.raises(ValueError, match="revision"):
            KVStateMachine(store, ChangeFeed(revision=5))
        assert KVStateMachine(store, ChangeFeed()).feed.last_revision == 0


# ---- snapshots ------------------------------------------------------------------------

def _source(tmp_path, keys: int = 2000) -> KVStateMachine:
    source = KVStateMachine(Store.open(str(tmp_path / "source")))
    source.apply([config_entry(1, THREE, term=2)])
    source.apply([normal(2, *[Put(f"k{i:05d}", f"v{i}") for i in range(keys)], term=2)])
    source.apply([normal(3, Delete("k00007"), Put("ключ", "🔑"), term=3)])
    return source


def test_a_snapshot_installs_in_a_worker_thread_and_subscribers_get_a_reset(tmp_path):
    source = _source(tmp_path)
    meta, stream = source.snapshot_reader(chunk_size=4096)
    assert (meta.index, meta.term, meta.config) == (3, 3, THREE)
    chunks = list(stream)
    expected, _ = source.store.scan(limit=10_000)
    source.close()

    dst = KVStateMachine(Store.open(str(tmp_path / "dst")))
    try:
        dst.apply([normal(1, Put("stale", "x"))])
        subscription = dst.feed.subscribe()
        in_worker_thread(dst.restore, meta, chunks)
        assert subscription.read(timeout=5) == [Reset(3)]
        assert (dst.applied_index, dst.applied_term, dst.config) == (3, 3, THREE)
        assert dst.store.scan(limit=10_000)[0] == expected and dst.store.get("stale") is None
        with pytest.raises(Compacted) as raised:
            dst.feed.subscribe(from_revision=1)
        assert raised.value.compacted_revision == 3
        dst.apply([normal(4, Put("after", "1"), term=3)])
        assert subscription.read(timeout=0) == [Change("after", 4, "put", "1")]
    finally:
        dst.close()


def test_the_snapshot_header_keeps_the_config_as_older_nodes_send_and_expect_it(tmp_path):
    source = _source(tmp_path, keys=10)
    meta, stream = source.snapshot_reader()
    chunks = list(stream)
    source.close()
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(b"".join(chunks))
    header = next(unpacker)
    assert header["config"] == encode_config(THREE)
    # An older node packed the same header from its ClusterConfig: the bytes are the same.
    assert chunks[0].startswith(msgpack.packb({**header, "config": encode_config(meta.config)}))


def test_a_snapshot_of_a_store_without_config_round_trips(tmp_path):
    with Store.open(str(tmp_path / "a")) as a, Store.open(str(tmp_path / "b")) as b:
        source, dst = KVStateMachine(a), KVStateMachine(b)
        source.apply([normal(1, Put("x", "1"))])
        meta, stream = source.snapshot_reader()
        assert meta == SnapshotMeta(1, 1, ClusterConfig())
        dst.restore(meta, list(stream))
        assert (dst.applied_index, dst.config, dst.store.get("x")) == (1, None, ("1", 1))


def test_a_snapshot_whose_meta_does_not_match_changes_nothing(tmp_path):
    source = _source(tmp_path, keys=10)
    meta, stream = source.snapshot_reader()
    chunks = list(stream)
    source.close()
    with Store.open(str(tmp_path / "dst")) as store:
        dst = KVStateMachine(store)
        dst.apply([normal(1, Put("old", "data"))])
        subscription = dst.feed.subscribe()
        for wrong in (SnapshotMeta(3, 3, TWO), SnapshotMeta(3, 3), SnapshotMeta(4, 3, THREE)):
            with pytest.raises(StoreError, match="meta"):
                in_worker_thread(dst.restore, wrong, chunks)
        assert dst.store.get("old") == ("data", 1) and dst.config is None
        gevent.sleep(0)
        assert subscription.read(timeout=0) == [] and dst.feed.last_revision == 1


def test_a_failed_install_that_emptied_the_store_closes_the_feed(tmp_path):
    source = _source(tmp_path)
    meta, stream = source.snapshot_reader(chunk_size=4096)
    chunks = list(stream)
    source.close()
    with Store.open(str(tmp_path / "dst")) as store:
        dst = KVStateMachine(store)
        dst.apply([normal(1, Put("old", "data"))])
        subscription = dst.feed.subscribe()
        with pytest.raises(StoreError, match="truncated"):
            in_worker_thread(dst.restore, meta, chunks[:len(chunks) // 2])
        wait_until(lambda: dst.feed.closed, 5, "the feed to close")
        with pytest.raises(SubscriptionClosed, match="snapshot install failed"):
            subscription.read(timeout=0)
        assert (dst.applied_index, dst.config, dst.store.count()) == (0, None, 0)

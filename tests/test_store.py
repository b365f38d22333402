"""The LevelDB store (axon.kv.store) and the command batch format (axon.kv.commands).

The store knows nothing of Raft: these tests feed it slots and an opaque config blob.
Translating Raft entries and snapshot metas is tests/test_kv_machine.py's part.
"""
from __future__ import annotations

import random
import tracemalloc
import zlib

import msgpack
import plyvel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from axon.kv.commands import (CommandError, Delete, Put, Result, decode_commands, encode_commands,
                           evaluate, reads_current)
from axon.kv.store import Applied, Slot, Store, StoreError


# ---- helpers ---------------------------------------------------------------

def normal(index: int, *cmds, term: int = 1) -> Slot:
    return Slot(index, term, commands=encode_commands(cmds))


def config_slot(index: int, blob: bytes, term: int = 1) -> Slot:
    return Slot(index, term, config_blob=blob)


# Any one msgpack object will do: the store never looks inside.
THREE = msgpack.packb({"voters": {"n1": ["127.0.0.1:7001", "127.0.0.1:8001"],
                                  "n2": ["127.0.0.1:7002", "127.0.0.1:8002"]},
                       "learners": {"n3": ["127.0.0.1:7003", "127.0.0.1:8003"]}})
OTHER = msgpack.packb(["not", "a", {"raft": "config"}])


@pytest.fixture
def store(tmp_path):
    s = Store.open(str(tmp_path / "db"))
    yield s
    s.close()


def fill(store: Store, n: int, per_entry: int = 1000, value_size: int = 20) -> None:
    index = store.applied_index
    keys = [f"key/{i:08d}" for i in range(n)]
    for start in range(0, n, per_entry):
        index += 1
        cmds = [Put(k, f"v{k}".ljust(value_size, "x")) for k in keys[start:start + per_entry]]
        store.apply([normal(index, *cmds, term=2)])


def all_items(store: Store) -> list[tuple[str, str, int]]:
    out, after = [], None
    while True:
        items, after = store.scan(after=after, limit=997)
        out.extend(items)
        if after is None:
            return out


def rechunk(chunks, size: int):
    """The same byte stream cut at different places."""
    data = b"".join(chunks)
    return [data[i:i + size] for i in range(0, len(data), size)]


# ---- commands --------------------------------------------------------------

def test_commands_round_trip():
    cmds = [Put("a", "1"), Put("ключ/🔑", "значение", if_revision=7), Put("b", "", if_absent=True),
            Delete("a"), Delete("c", if_revision=0)]
    assert decode_commands(encode_commands(cmds)) == cmds


def test_encode_rejects_bad_commands():
    for bad in ([Put(1, "x")], [Put("k", None)], [Put("k", "v", if_revision=-1)],
                [Put("k", "v", if_revision=True)], [Delete("\ud800")], ["put"], [Put("k", "v", if_absent=1)]):
        with pytest.raises(CommandError):
            encode_commands(bad)


@pytest.mark.parametrize("data", [
    b"", b"\xc1", b"\x91", msgpack.packb({"a": 1}), msgpack.packb([[9, "k"]]), msgpack.packb([[0, "k", "v"]]),
    msgpack.packb([[0, "k", "v", None, 1]]), msgpack.packb([[1, "k", True]]), msgpack.packb([[1, b"k", None]]),
    msgpack.packb([[1, "k", -3]]), msgpack.packb([[True, "k", None]]), msgpack.packb([[]]), msgpack.packb([5]),
    msgpack.packb([]) + b"\x00", b"\x91\xa2\xff\xfe", b"\x91" * 100_000, "not bytes",
])
def test_decode_rejects_malformed(data):
    with pytest.raises(CommandError):
        decode_commands(data)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_decode_fuzz_bytes_only_command_error(data):
    try:
        decode_commands(data)
    except CommandError:
        pass


_msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.text(max_size=5) | st.binary(max_size=5)
    | st.floats(allow_nan=False),
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=3), children, max_size=3),
    max_leaves=10)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(_msgpack_values, st.tuples(st.sampled_from([0, 1]), _msgpack_values, _msgpack_values,
                                                     _msgpack_values, _msgpack_values).map(list)), max_size=4))
def test_decode_fuzz_structures_only_command_error(rows):
    data = msgpack.packb(rows)
    try:
        cmds = decode_commands(data)
    except CommandError:
        return
    assert decode_commands(encode_commands(cmds)) == cmds


def test_evaluate_is_pure_and_follows_rules():
    assert evaluate(Put("k", "v", if_revision=0), None, 5) == Result(True, "k", "v", 5)
    assert evaluate(Put("k", "v", if_revision=0), ("old", 3), 5) == Result(False, "k", "old", 3, "conflict")
    assert evaluate(Put("k", "v", if_revision=2), None, 5) == Result(False, "k", None, 0, "conflict")
    assert evaluate(Delete("k", if_revision=3), ("old", 3), 5) == Result(True, "k", "old", 5)
    assert not reads_current(Put("k", "v")) and reads_current(Put("k", "v", if_absent=True))
    assert reads_current(Put("k", "v", if_revision=0)) and reads_current(Delete("k"))
    # An unconditional put never depends on the current state.
    assert evaluate(Put("k", "v"), ("old", 3), 5) == evaluate(Put("k", "v"), None, 5)


# ---- apply: put/get/delete/CAS -------------------------------------------

def test_put_get_delete(store):
    assert store.get("a") is None
    [[r]] = store.apply([normal(1, Put("a", "1"))])
    assert r == Result(ok=True, key="a", value="1", revision=1)
    assert store.get("a") == ("1", 1)
    [[r]] = store.apply([normal(2, Put("a", "2"))])
    assert r.revision == 2 and store.get("a") == ("2", 2)
    [[r]] = store.apply([normal(3, Delete("a"))])
    assert r == Result(ok=True, key="a", value="2", revision=3)
    assert store.get("a") is None
    [[r]] = store.apply([normal(4, Delete("a"))])
    assert r == Result(ok=False, key="a", error="not_found")


def test_cas_rules(store):
    store.apply([normal(1, Put("a", "1"))])
    results = store.apply([
        normal(2, Put("a", "x", if_revision=5)),     # wrong revision
        normal(3, Put("a", "x", if_revision=0)),     # must not exist, but does
        normal(4, Put("a", "x", if_absent=True)),    # exists
        normal(5, Put("b", "x", if_revision=3)),     # absent, revision 3 expected
        normal(6, Put("c", "x", if_revision=0)),     # absent: ok
        normal(7, Put("d", "x", if_absent=True)),    # absent: ok
        normal(8, Put("a", "2", if_revision=1)),     # matches
        normal(9, Delete("a", if_revision=1)),       # stale now
        normal(10, Delete("a", if_revision=8)),      # matches
        normal(11, Delete("zz", if_revision=4)),     # absent, revision mismatch
    ])
    conflict_a = Result(False, "a", "1", 1, "conflict")
    assert results == [
        [conflict_a], [conflict_a], [conflict_a],
        [Result(False, "b", None, 0, "conflict")],
        [Result(True, "c", "x", 6)],
        [Result(True, "d", "x", 7)],
        [Result(True, "a", "2", 8)],
        [Result(False, "a", "2", 8, "conflict")],
        [Result(True, "a", "2", 10)],
        [Result(False, "zz", None, 0, "conflict")],
    ]
    assert store.get("a") is None and store.get("b") is None
    assert store.get("c") == ("x", 6) and store.get("d") == ("x", 7)
    assert store.applied_index == 11


def test_commands_in_one_entry_see_each_other(store):
    [results] = store.apply([normal(1, Put("a", "1"), Put("a", "2", if_revision=1), Put("a", "3", if_absent=True),
                                    Delete("a"), Put("a", "4", if_revision=0), Delete("b"))])
    assert [r.ok for r in results] == [True, True, False, True, True, False]
    assert results[2] == Result(False, "a", "2", 1, "conflict")
    assert results[3].value == "2"
    assert store.get("a") == ("4", 1)


def test_slots_without_good_commands_give_empty_results(store, caplog):
    results = store.apply([
        Slot(1, 1),
        config_slot(2, THREE),
        Slot(3, 1, commands=b"\xc1garbage"),
        Slot(4, 1, commands=b""),
        config_slot(5, OTHER),
        normal(6, Put("k", "v")),
    ])
    assert results == [[], [], [], [], [], [Result(True, "k", "v", 6)]]
    assert store.applied_index == 6 and store.config_blob == OTHER
    assert "undecodable" in caplog.text


def test_changes_are_reported_once_written(store):
    changes = []
    store.apply([normal(1, Put("a", "1"), Put("b", "2")),
                 normal(2, Put("a", "x", if_revision=5), Delete("b"), Delete("zz"), Put("a", "3", if_revision=1)),
                 config_slot(3, THREE), Slot(4, 1)], changes)
    assert changes == [("a", 1, "1"), ("b", 1, "2"), ("b", 2, None), ("a", 2, "3")]
    with pytest.raises(StoreError, match="does not follow"):
        store.apply([normal(5, Put("c", "1")), normal(7, Put("d", "1"))], changes)
    assert len(changes) == 4   # a failed call reports nothing
    store.apply([normal(5, Put("c", "1"))])   # collecting them is optional
    assert store.get("c") == ("1", 5)


def test_apply_skips_applied_and_rejects_gaps(store):
    store.apply([normal(1, Put("a", "1")), normal(2, Put("a", "2"))])
    assert store.apply([normal(1, Put("a", "x")), normal(2, Put("a", "y"))]) == [[], []]
    assert store.get("a") == ("2", 2)
    with pytest.raises(StoreError, match="does not follow"):
        store.apply([normal(3, Put("a", "3")), normal(5, Put("a", "5"))])
    # The failed call wrote nothing, not even its valid first entry.
    assert store.applied_index == 2 and store.get("a") == ("2", 2)


def test_replay_after_reopen_is_idempotent(tmp_path):
    path = str(tmp_path / "db")
    log = [normal(1, Put("a", "1")), config_slot(2, THREE, term=2), normal(3, Put("a", "x", if_revision=1), term=3),
           normal(4, Put("n", "0", if_absent=True), term=3)]
    with Store.open(path) as s:
        s.apply(log)
        s.sync()
    with Store.open(path) as s:
        assert (s.applied_index, s.applied_term, s.config_blob) == (4, 3, THREE)
        assert s.apply(log) == [[], [], [], []]
        assert s.get("a") == ("x", 3) and s.get("n") == ("0", 4)
        [[r]] = s.apply([normal(5, Put("n", "1", if_absent=True), term=3)])
        assert r.error == "conflict"
    with Store.open(path) as s:
        assert (s.applied_index, s.applied_term) == (5, 3)


def test_fresh_store_meta(store):
    assert (store.applied_index, store.applied_term, store.config_blob) == (0, 0, None)


# ---- reads ----------------------------------------------------------------

def test_scan_order_prefix_after_limit_next(store):
    keys = ["b/2", "a", "b/1", "b/10", "b", "c", "b/", "ba", "b/1/x"]
    store.apply([normal(1, *[Put(k, k.upper()) for k in keys])])
    items, nxt = store.scan()
    assert [k for k, _, _ in items] == sorted(keys) and nxt is None
    assert items[0] == ("a", "A", 1)
    items, nxt = store.scan(prefix="b/")
    assert [k for k, _, _ in items] == ["b/", "b/1", "b/1/x", "b/10", "b/2"] and nxt is None
    items, nxt = store.scan(prefix="b/", limit=2)
    assert [k for k, _, _ in items] == ["b/", "b/1"] and nxt == "b/1"
    items, nxt = store.scan(prefix="b/", after=nxt, limit=2)
    assert [k for k, _, _ in items] == ["b/1/x", "b/10"] and nxt == "b/10"
    items, nxt = store.scan(prefix="b/", after=nxt, limit=2)
    assert [k for k, _, _ in items] == ["b/2"] and nxt is None
    # exactly `limit` left: no next
    items, nxt = store.scan(prefix="b/", after="b/1/x", limit=2)
    assert [k for k, _, _ in items] == ["b/10", "b/2"] and nxt is None
    assert store.scan(prefix="b/", after="a")[0] == store.scan(prefix="b/")[0]
    assert store.scan(prefix="b/", after="c") == ([], None)
    assert store.scan(prefix="nothing") == ([], None)
    assert store.count() == len(keys) and store.count("b/") == 5 and store.count("zz") == 0
    with pytest.raises(StoreError):
        store.scan(limit=0)


def test_unicode_keys(store):
    keys = ["é", "e", "z", "日本/語", "🔑", "a/b c", "\u0000nul", "ÿ", "\uffff", "𐀀"]
    store.apply([normal(1, *[Put(k, k * 2) for k in keys])])
    for k in keys:
        assert store.get(k) == (k * 2, 1)
    items, _ = store.scan(limit=100)
    assert [k for k, _, _ in items] == sorted(keys)   # code point order
    assert [k for k, _, _ in store.scan(prefix="日本")[0]] == ["日本/語"]
    with pytest.raises(StoreError):
        store.get("\ud800")


# ---- opening ----------------------------------------------------------------

def test_second_open_of_same_path_fails(tmp_path):
    path = str(tmp_path / "db")
    with Store.open(path):
        with pytest.raises(StoreError, match="in use"):
            Store.open(path)
    Store.open(path).close()


def test_open_rejects_foreign_dirs(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("hello")
    with pytest.raises(StoreError, match="not an Axon store"):
        Store.open(str(foreign))
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(StoreError):
        Store.open(str(a_file))
    other = plyvel.DB(str(tmp_path / "other"), create_if_missing=True)
    other.put(b"x", b"y")
    other.close()
    with pytest.raises(StoreError, match="not an Axon store"):
        Store.open(str(tmp_path / "other"))


def test_closed_store_raises_store_error(tmp_path):
    s = Store.open(str(tmp_path / "db"))
    s.close()
    s.close()
    for call in (lambda: s.get("a"), lambda: s.apply([normal(1, Put("a", "1"))]), s.scan, s.count, s.sync):
        with pytest.raises(StoreError, match="closed"):
            call()


# ---- snapshots ----------------------------------------------------------------

def test_snapshot_stream_restores_identically(tmp_path):
    src = Store.open(str(tmp_path / "src"))
    fill(src, 20_000)
    src.apply([config_slot(src.applied_index + 1, THREE, term=3)])
    src.apply([normal(src.applied_index + 1, Delete("key/00000007"), Put("ü/ключ", "🔑"), term=3)])
    expected = all_items(src)
    meta, stream = src.snapshot_reader(chunk_size=4096)
    assert (meta.index, meta.term, meta.config_blob) == (src.applied_index, 3, THREE)
    # Writes after snapshot_reader() must not leak into the stream: before iteration starts...
    src.apply([normal(meta.index + 1, Put("key/00000001", "changed"), Put("late", "x"), Delete("key/00000002"),
                      Put("key/00019999", "changed"), Delete("key/00019998"))])
    first = next(stream)
    # ...nor while it runs.
    src.apply([normal(meta.index + 2, Put("key/00015000", "changed"), Delete("key/00015001"), Put("later", "y"))])
    chunks = [first, *stream]
    assert len(chunks) > 10 and max(map(len, chunks)) <= 4096

    dst = Store.open(str(tmp_path / "dst"))
    dst.apply([normal(1, Put("stale", "gone"), Put("key/00000007", "old"))])
    dst.restore(meta, rechunk(chunks, 777))
    assert (dst.applied_index, dst.applied_term, dst.config_blob) == (meta.index, 3, THREE)
    assert all_items(dst) == expected and dst.count() == 20_000
    assert dst.get("stale") is None and dst.get("late") is None and dst.get("later") is None
    assert dst.get("key/00015000")[0] != "changed" and dst.get("key/00015001") is not None
    assert dst.get("key/00000001")[0] != "changed" and dst.get("key/00000002") is not None
    assert dst.get("key/00000007") is None
    assert dst.get("key/00019999")[0] != "changed" and dst.get("key/00019998") is not None
    dst.close()
    with Store.open(str(tmp_path / "dst")) as again:   # durable
        assert again.applied_index == meta.index and again.count() == 20_000
        assert again.get("ü/ключ") == ("🔑", meta.index)
    src.close()


def test_snapshot_of_empty_store_round_trips(tmp_path):
    with Store.open(str(tmp_path / "a")) as a, Store.open(str(tmp_path / "b")) as b:
        meta, stream = a.snapshot_reader()
        assert meta == Applied()
        b.apply([normal(1, Put("x", "y"))])
        b.restore(meta, list(stream))
        assert (b.applied_index, b.config_blob, b.count()) == (0, None, 0)


def test_snapshot_stream_is_chunked_and_bounded(tmp_path):
    s = Store.open(str(tmp_path / "db"))
    fill(s, 60_000, per_entry=5000, value_size=200)
    s.sync()
    chunk_size = 64 << 10
    tracemalloc.start()
    try:
        meta, stream = s.snapshot_reader(chunk_size=chunk_size)
        sizes, total = [], 0
        for chunk in stream:
            sizes.append(len(chunk))
            total += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total > 12_000_000 and len(sizes) > 100
    assert max(sizes) <= chunk_size
    assert peak < total // 4, f"peak {peak} for a {total} byte stream: not streamed"
    s.close()


def test_snapshot_stream_close_releases_and_store_close_interrupts(tmp_path):
    s = Store.open(str(tmp_path / "db"))
    fill(s, 30_000)   # several blocks: the stream reads a block ahead of its chunks
    _, stream = s.snapshot_reader(chunk_size=1024)
    next(stream)
    stream.close()
    assert list(stream) == []
    _, unstarted = s.snapshot_reader()
    unstarted.close()
    _, stream = s.snapshot_reader(chunk_size=1024)
    next(stream)
    s.close()
    with pytest.raises(StoreError):
        list(stream)


def _snapshot(tmp_path, n=3000):
    src = Store.open(str(tmp_path / "src"))
    fill(src, n, per_entry=500)
    meta, stream = src.snapshot_reader(chunk_size=1000)
    chunks = list(stream)
    src.close()
    return meta, chunks


def _assert_empty_after_failed_restore(dst: Store, path: str) -> None:
    assert (dst.applied_index, dst.applied_term, dst.config_blob, dst.count()) == (0, 0, None, 0)
    dst.close()
    with Store.open(path) as again:
        assert (again.applied_index, again.count()) == (0, 0)


@pytest.mark.parametrize("damage", ["truncate_half", "truncate_trailer", "flip_byte", "drop_chunk",
                                    "extra_bytes", "duplicate_chunk", "not_bytes"])
def test_restore_rejects_damaged_streams(tmp_path, damage):
    meta, chunks = _snapshot(tmp_path)
    data = b"".join(chunks)
    mid = len(data) // 2
    damaged = {
        "truncate_half": lambda: [data[:mid]],
        "truncate_trailer": lambda: [data[:-3]],
        "flip_byte": lambda: [data[:mid] + bytes([data[mid] ^ 0x01]) + data[mid + 1:]],
        "drop_chunk": lambda: chunks[:5] + chunks[6:],
        "extra_bytes": lambda: chunks + [b"\x01"],
        "duplicate_chunk": lambda: chunks[:5] + [chunks[5]] + chunks[5:],
        "not_bytes": lambda: chunks[:5] + ["text"] + chunks[5:],
    }[damage]()
    path = str(tmp_path / "dst")
    dst = Store.open(path)
    dst.apply([normal(1, Put("old", "data"))])
    with pytest.raises(StoreError):
        dst.restore(meta, damaged)
    _assert_empty_after_failed_restore(dst, path)


def test_restore_random_corruption_only_store_error(tmp_path):
    meta, chunks = _snapshot(tmp_path, n=300)
    data = b"".join(chunks)
    rng = random.Random(1234)
    path = str(tmp_path / "dst")
    dst = Store.open(path)
    for _ in range(200):
        damaged = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        if rng.random() < 0.3:
            damaged = damaged[:rng.randrange(len(damaged))]
        try:
            dst.restore(meta, rechunk([bytes(damaged)], rng.randint(1, 500)))
        except StoreError:
            assert dst.applied_index == 0
        else:   # a byte flipped into an equivalent encoding can still be valid; then it must be complete
            assert dst.applied_index == meta.index and dst.count() == 300
    dst.close()


def test_restore_with_mismatched_meta_leaves_old_data(tmp_path):
    meta, chunks = _snapshot(tmp_path)
    with Store.open(str(tmp_path / "dst")) as dst:
        dst.apply([normal(1, Put("old", "data"))])
        for wrong in (Applied(meta.index + 1, meta.term), Applied(meta.index, meta.term + 1),
                      Applied(meta.index, meta.term, THREE)):
            with pytest.raises(StoreError, match="meta"):
                dst.restore(wrong, chunks)
        for garbage in ([], [b"\xc1"], [msgpack.packb({"format": "other"})]):
            with pytest.raises(StoreError):
                dst.restore(meta, garbage)
        assert dst.get("old") == ("data", 1) and dst.applied_index == 1


def test_interrupted_restore_leaves_marker_so_reopen_is_empty(tmp_path):
    meta, chunks = _snapshot(tmp_path)
    path = str(tmp_path / "dst")
    dst = Store.open(path)
    dst.apply([normal(1, Put("old", "data"))])

    def crash_midway():
        yield from chunks[: len(chunks) // 2]
        raise ConnectionError("peer went away")

    # Simulate a crash in the middle: the cleanup cannot run, only the marker protects us.
    dst._cleanup_failed_restore = lambda: None
    with pytest.raises(ConnectionError):
        dst.restore(meta, crash_midway())
    assert dst.applied_index == 0
    dst.close()
    with Store.open(path) as again:
        assert (again.applied_index, again.config_blob, again.count(), again.get("old")) == (0, None, 0, None)


def test_store_rejects_calls_during_restore(tmp_path):
    meta, chunks = _snapshot(tmp_path)
    with Store.open(str(tmp_path / "dst")) as dst:
        seen = []

        def chunks_that_poke_the_store():
            for chunk in chunks:
                try:
                    dst.get("x")
                except StoreError as exc:
                    seen.append(str(exc))
                yield chunk

        dst.restore(meta, chunks_that_poke_the_store())
        assert seen and all("restoring" in msg for msg in seen)
        assert dst.applied_index == meta.index


# ---- snapshot stream format (v2: records in blocks) -----------------------------

def stored(revision, value) -> bytes:
    """A data key's LevelDB value, as the store writes it."""
    return msgpack.packb([revision, value])


def hand_stream(meta: Applied, blocks, version: int = 2) -> list[bytes]:
    """A v2 stream packed by hand from (keys, values) blocks, with a correct count and crc.

    A block may also be any other object, to pack a malformed one.
    """
    header = msgpack.packb({"format": "axon-snapshot", "version": version, "index": meta.index,
                            "term": meta.term, "config": None})
    crc, count, out = zlib.crc32(header), 0, [header]
    for block in blocks:
        packed = msgpack.packb(block)
        crc, count = zlib.crc32(packed, crc), count + (len(block[0]) if len(block) == 2 else 0)
        out.append(msgpack.packb(packed))   # a bin object around the block's bytes
    out.append(msgpack.packb({"end": True, "count": count, "crc": crc}))
    return out


def stream_objects(chunks) -> list:
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=1 << 30)
    unpacker.feed(b"".join(chunks))
    return list(unpacker)


HAND_META = Applied(index=9, term=2)


def test_snapshot_stream_is_header_blocks_trailer(tmp_path):
    with Store.open(str(tmp_path / "src")) as src:
        src.apply([normal(1, Put("a", "1"), Put("ключ", "🔑")), normal(2, Put("b", "2"), Delete("a"))])
        meta, stream = src.snapshot_reader(chunk_size=7)
        chunks = list(stream)
    assert max(map(len, chunks)) <= 7
    # The stored values travel as they are: the stream is exactly the hand-packed one.
    expected = hand_stream(meta, [([b"kb", "kключ".encode()], [stored(2, "2"), stored(1, "🔑")])])
    assert b"".join(chunks) == b"".join(expected)
    with Store.open(str(tmp_path / "dst")) as dst:
        dst.restore(meta, expected)
        assert all_items(dst) == [("b", "2", 2), ("ключ", "🔑", 1)] and dst.applied_index == 2


def test_snapshot_header_carries_the_config_blobs_object(tmp_path):
    with Store.open(str(tmp_path / "src")) as src:
        src.apply([config_slot(1, THREE), normal(2, Put("a", "1"))])
        meta, stream = src.snapshot_reader()
        chunks = list(stream)
    assert meta == Applied(2, 1, THREE)
    assert stream_objects(chunks)[0]["config"] == msgpack.unpackb(THREE)
    with Store.open(str(tmp_path / "dst")) as dst:
        for wrong in (Applied(2, 1), Applied(2, 1, OTHER)):
            with pytest.raises(StoreError, match="config does not match"):
                dst.restore(wrong, chunks)
        dst.restore(meta, chunks)
        assert (dst.config_blob, dst.get("a")) == (THREE, ("1", 2))
    with Store.open(str(tmp_path / "dst")) as again:
        assert again.config_blob == THREE


def test_snapshot_blocks_are_bounded_by_bytes_and_records(tmp_path):
    with Store.open(str(tmp_path / "src")) as src:
        fill(src, 10_000, per_entry=5000, value_size=10)
        src.apply([normal(src.applied_index + 1, *[Put(f"big/{i:02d}", str(i % 10) * 100_000) for i in range(20)])])
        meta, stream = src.snapshot_reader()
        objs = stream_objects(stream)
        expected = all_items(src)
    blocks = [msgpack.unpackb(obj) for obj in objs[1:-1]]
    assert sum(len(keys) for keys, _ in blocks) == objs[-1]["count"] == 10_020
    assert max(len(keys) for keys, _ in blocks) <= 4096
    # 100 kB values: a block ends once it reaches 256 KiB, not after a fixed number of records.
    assert max(map(len, objs[1:-1])) < (256 << 10) + 100_100
    with Store.open(str(tmp_path / "dst")) as dst:
        dst.restore(meta, rechunk([msgpack.packb(obj) for obj in objs], 65_536))
        assert all_items(dst) == expected


def test_restore_accepts_a_hand_packed_stream_in_several_blocks(tmp_path):
    with Store.open(str(tmp_path / "dst")) as dst:
        dst.restore(HAND_META, hand_stream(HAND_META, [([b"ka", b"kb"], [stored(3, "A"), stored(9, "")]),
                                                       ([b"kc"], [stored(0, "C")])]))
        assert all_items(dst) == [("a", "A", 3), ("b", "", 9), ("c", "C", 0)]
        assert (dst.applied_index, dst.applied_term) == (9, 2)


_OK = stored(1, "v")


@pytest.mark.parametrize("blocks, message", [
    # key order, within a block and across a block boundary
    ([([b"kb", b"ka"], [_OK, _OK])], "order"),
    ([([b"ka", b"kc"], [_OK, _OK]), ([b"kb"], [_OK])], "order"),
    ([([b"ka", b"kb"], [_OK, _OK]), ([b"kb", b"kc"], [_OK, _OK])], "order"),
    # keys outside the data prefix, first, last, or in a later block
    ([([b"a", b"kb"], [_OK, _OK])], "prefix"),
    ([([b"ka", b"l"], [_OK, _OK])], "prefix"),
    ([([b"ka"], [_OK]), ([b"kb", b"m"], [_OK, _OK])], "prefix"),
    ([([b"", b"ka"], [_OK, _OK])], "order"),
    # keys that are not bytes, or not utf-8 (scan() could not decode them)
    ([(["ka"], [_OK])], "not bytes"),
    ([([b"ka", 5], [_OK, _OK])], "not bytes"),
    ([([b"ka", b"k\xc3", b"k\xc3\xa9"], [_OK] * 3)], "utf-8"),
    ([([b"k\xed\xa0\x80"], [_OK])], "utf-8"),
    # stored values that are not [revision >= 0, str]
    ([([b"ka", b"kb"], [_OK, stored(-1, "v")])], r"\[revision, value\]"),
    ([([b"ka"], [stored(True, "v")])], r"\[revision, value\]"),
    ([([b"ka"], [stored(1.0, "v")])], r"\[revision, value\]"),
    ([([b"ka"], [stored(1, b"v")])], r"\[revision, value\]"),
    ([([b"ka"], [stored(1, None)])], r"\[revision, value\]"),
    ([([b"ka"], [msgpack.packb([1, "v", 2])])], r"\[revision, value\]"),
    ([([b"ka"], [msgpack.packb([1])])], r"\[revision, value\]"),
    ([([b"ka"], [msgpack.packb({"1": "v"})])], r"\[revision, value\]"),
    ([([b"ka"], [msgpack.packb(7)])], r"\[revision, value\]"),
    # ...or that are not exactly one msgpack object
    ([([b"ka", b"kb"], [_OK + _OK, b""])], "corrupt value"),
    ([([b"ka"], [_OK[:-1]])], "corrupt value"),
    ([([b"ka"], [b"\xc1"])], "corrupt value"),
    ([([b"ka"], [b"\x92\xa1\xff\x01"])], "corrupt value"),
    ([([b"ka"], [b"\x91" * 100_000])], "corrupt value"),
    ([([b"ka"], ["v"])], "not bytes"),
    ([([b"ka"], [None])], "not bytes"),
    # blocks of the wrong shape
    ([([], [])], "malformed"),
    ([([b"ka", b"kb"], [_OK])], "malformed"),
    ([([b"ka"], [_OK], [_OK])], "malformed"),
    ([((b"ka", _OK), None)], "malformed"),
    ([([b"k%05d" % i for i in range(4097)], [_OK] * 4097)], "corrupt"),
])
def test_restore_rejects_invalid_blocks(tmp_path, blocks, message):
    path = str(tmp_path / "dst")
    dst = Store.open(path)
    dst.apply([normal(1, Put("old", "data"))])
    with pytest.raises(StoreError, match=message):
        dst.restore(HAND_META, hand_stream(HAND_META, blocks))
    _assert_empty_after_failed_restore(dst, path)


@pytest.mark.parametrize("middle", [msgpack.packb([b"ka", _OK]), msgpack.packb(5), msgpack.packb(None),
                                    b"\xc4\x03abc", msgpack.packb("a str, not a bin")])
def test_restore_rejects_what_is_no_block(tmp_path, middle):
    *head, trailer = hand_stream(HAND_META, [([b"ka"], [_OK])])
    path = str(tmp_path / "dst")
    dst = Store.open(path)
    with pytest.raises(StoreError):
        dst.restore(HAND_META, [*head, middle, trailer])
    _assert_empty_after_failed_restore(dst, path)


def test_restore_rejects_a_wrong_count_or_crc(tmp_path):
    *head, _ = hand_stream(HAND_META, [([b"ka"], [_OK])])
    right = msgpack.unpackb(hand_stream(HAND_META, [([b"ka"], [_OK])])[-1])
    with Store.open(str(tmp_path / "dst")) as dst:
        for trailer, message in (({**right, "count": 2}, "trailer says 2"), ({**right, "crc": right["crc"] ^ 1},
                                                                             "checksum")):
            with pytest.raises(StoreError, match=message):
                dst.restore(HAND_META, [*head, msgpack.packb(trailer)])
            assert (dst.applied_index, dst.count()) == (0, 0)


def test_restore_rejects_a_version_1_stream_before_touching_the_store(tmp_path):
    header = msgpack.packb({"format": "axon-snapshot", "version": 1, "index": HAND_META.index,
                            "term": HAND_META.term, "config": None})
    record = msgpack.packb(["a", "v", 1])
    trailer = msgpack.packb({"end": True, "count": 1, "crc": zlib.crc32(record, zlib.crc32(header))})
    with Store.open(str(tmp_path / "dst")) as dst:
        dst.apply([normal(1, Put("old", "data"))])
        with pytest.raises(StoreError, match="version 1 is not supported"):
            dst.restore(HAND_META, [header, record, trailer])
        assert dst.get("old") == ("data", 1) and dst.applied_index == 1

"""Tests for the Raft write-ahead log: roundtrips, rollover, compaction, crash recovery, group commit."""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from axon.raft.types import Entry, EntryKind, HardState
from axon.raft.wal import WAL, WalError


def make_entries(start: int, count: int, term: int = 1, size: int = 0) -> list[Entry]:
    return [Entry(i, term, EntryKind.NORMAL, b"entry-%06d" % i + b"x" * size)
            for i in range(start, start + count)]


def segment_files(directory) -> list[str]:
    return sorted(os.path.join(directory, n) for n in os.listdir(directory) if n.endswith(".wal"))


def synced(wal: WAL) -> None:
    wal.begin_sync().run()


def reopened(directory, **kwargs) -> WAL:
    return WAL.open(str(directory), **kwargs)


def record_offset(path: str, index: int) -> int:
    """Offset of the entry record whose data starts with make_entries' marker for index."""
    with open(path, "rb") as f:
        blob = f.read()
    pos = blob.index(b"entry-%06d" % index)
    return pos - 8 - 18     # u32 length + u32 crc, then type/index/term/kind


def flip_byte(path: str, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


# ---------------------------------------------------------------------- roundtrips

def test_fresh_directory_is_created_and_empty(tmp_path):
    directory = tmp_path / "a" / "b"
    with reopened(directory) as wal:
        assert wal.entries() == []
        assert wal.hard_state == HardState()
        assert wal.compacted == (0, 0)
        assert wal.last_index() == 0
    assert len(segment_files(directory)) == 1


def test_append_and_reopen_roundtrip(tmp_path):
    entries = [Entry(1, 1, EntryKind.NOOP, b""),
               Entry(2, 1, EntryKind.CONFIG, b'{"voters": {}}'),
               Entry(3, 2, EntryKind.NORMAL, bytes(range(256))),
               Entry(4, 2, EntryKind.NORMAL, b"z" * 100_000)]
    with reopened(tmp_path) as wal:
        wal.append(entries[:2], HardState(1, "n1"))
        wal.append(entries[2:], HardState(2, None))
        assert wal.entries() == entries
        assert wal.last_index() == 4
    with reopened(tmp_path) as wal:
        assert wal.entries() == entries
        assert wal.hard_state == HardState(2, None)
        assert wal.last_index() == 4
        assert all(isinstance(e.kind, EntryKind) and isinstance(e.data, bytes) for e in wal.entries())


def test_hard_state_only_and_empty_vote(tmp_path):
    with reopened(tmp_path) as wal:
        wal.append([], HardState(3, ""))
    with reopened(tmp_path) as wal:
        assert wal.hard_state == HardState(3, "")
        wal.append([], HardState(4, "ünïcode-node"))
    with reopened(tmp_path) as wal:
        assert wal.hard_state == HardState(4, "ünïcode-node")


def test_bytes_like_data_and_int_kind_are_normalized(tmp_path):
    with reopened(tmp_path) as wal:
        wal.append([Entry(1, 1, 1, bytearray(b"abc")), Entry(2, 1, 2, memoryview(b"de"))])
        expected = [Entry(1, 1, EntryKind.CONFIG, b"abc"), Entry(2, 1, EntryKind.NOOP, b"de")]
        assert wal.entries() == expected
        assert [type(e.data) for e in wal.entries()] == [bytes, bytes]
        assert [type(e.kind) for e in wal.entries()] == [EntryKind, EntryKind]
    with reopened(tmp_path) as wal:
        assert wal.entries() == expected


def test_overwrite_of_suffix_survives_reopen(tmp_path):
    with reopened(tmp_path) as wal:
        wal.append(make_entries(1, 10, term=1))
        wal.append(make_entries(6, 3, term=2))
        expected = make_entries(1, 5, term=1) + make_entries(6, 3, term=2)
        assert wal.entries() == expected
        assert wal.last_index() == 8
    with reopened(tmp_path) as wal:
        assert wal.entries() == expected
        wal.append(make_entries(9, 1, term=2))
    with reopened(tmp_path) as wal:
        assert wal.entries() == expected + make_entries(9, 1, term=2)


def test_overwrite_across_segments(tmp_path):
    with reopened(tmp_path, segment_bytes=300) as wal:
        for i in range(1, 41):
            wal.append(make_entries(i, 1, term=1))
            synced(wal)
        assert len(segment_files(tmp_path)) > 3
        wal.append(make_entries(5, 2, term=3))
        expected = make_entries(1, 4, term=1) + make_entries(5, 2, term=3)
        assert wal.entries() == expected
    with reopened(tmp_path, segment_bytes=300) as wal:
        assert wal.entries() == expected


# ---------------------------------------------------------------------- rollover and compaction

def test_segment_rollover(tmp_path):
    with reopened(tmp_path, segment_bytes=512) as wal:
        wal.append([], HardState(7, "n2"))
        for i in range(1, 101):
            wal.append(make_entries(i, 1, term=7))
            synced(wal)
    files = segment_files(tmp_path)
    assert len(files) > 5
    for path in files[:-1]:
        # a segment rolls at the first sync after it exceeded the limit
        assert os.path.getsize(path) < 512 + 200
    with reopened(tmp_path, segment_bytes=512) as wal:
        assert wal.entries() == make_entries(1, 100, term=7)
        assert wal.hard_state == HardState(7, "n2")


def build_rolled_log(directory, count: int = 100) -> None:
    with reopened(directory, segment_bytes=400) as wal:
        wal.append([], HardState(2, "n1"))
        for i in range(1, count + 1):
            wal.append(make_entries(i, 1, term=2))
            synced(wal)


def test_compact_deletes_old_segments_and_keeps_everything_newer(tmp_path):
    build_rolled_log(tmp_path)
    before = segment_files(tmp_path)
    with reopened(tmp_path, segment_bytes=400) as wal:
        wal.compact(60, 2)
        assert wal.compacted == (60, 2)
        assert wal.entries() == make_entries(61, 40, term=2)
        assert wal.last_index() == 100
    after = segment_files(tmp_path)
    assert len(after) < len(before)
    assert after == before[len(before) - len(after):], "only the oldest segments may go"
    with reopened(tmp_path, segment_bytes=400) as wal:
        assert wal.compacted == (60, 2)
        assert wal.entries() == make_entries(61, 40, term=2)
        assert wal.hard_state == HardState(2, "n1")
        wal.append(make_entries(101, 1, term=2))
    with reopened(tmp_path, segment_bytes=400) as wal:
        assert wal.entries() == make_entries(61, 41, term=2)


def test_compacted_segments_deleted_later_by_delete_in_and_a_crash_before_is_recovered(tmp_path):
    """The driver deletes compacted segments from a thread: until then the files stay, and a
    log reopened with them still there (a crash before the deletes) reads the same."""
    build_rolled_log(tmp_path)
    before = segment_files(tmp_path)
    deletions = []
    with reopened(tmp_path, segment_bytes=400) as wal:
        wal.delete_in = deletions.append
        wal.compact(60, 2)
        assert len(deletions) == 1 and segment_files(tmp_path) == before   # nothing deleted yet
    with reopened(tmp_path, segment_bytes=400) as wal:   # as after a crash before the deletes
        assert wal.compacted == (60, 2)
        assert wal.entries() == make_entries(61, 40, term=2)
    deletions[0]()   # the old log's deleter, run late: removes only what that compaction retired
    after = segment_files(tmp_path)
    assert 0 < len(after) < len(before) and after == before[len(before) - len(after):]
    with reopened(tmp_path, segment_bytes=400) as wal:
        assert wal.entries() == make_entries(61, 40, term=2)


def test_repeated_compaction_keeps_marker_and_hard_state(tmp_path):
    build_rolled_log(tmp_path, count=60)
    for index in (10, 30, 59):
        with reopened(tmp_path, segment_bytes=400) as wal:
            wal.compact(index, 2)
            for i in range(wal.last_index() + 1, wal.last_index() + 11):
                wal.append(make_entries(i, 1, term=2))
                synced(wal)
    with reopened(tmp_path, segment_bytes=400) as wal:
        assert wal.compacted == (59, 2)
        assert wal.entries() == make_entries(60, 31, term=2)
        assert wal.hard_state == HardState(2, "n1")


def test_compact_beyond_last_index_like_a_snapshot_install(tmp_path):
    build_rolled_log(tmp_path, count=20)
    with reopened(tmp_path, segment_bytes=400) as wal:
        wal.compact(500, 3)
        assert wal.entries() == []
        assert wal.last_index() == 500
        with pytest.raises(WalError, match="gap"):
            wal.append(make_entries(502, 1, term=3))
        wal.append(make_entries(501, 1, term=3))
    with reopened(tmp_path, segment_bytes=400) as wal:
        assert wal.compacted == (500, 3)
        assert wal.entries() == make_entries(501, 1, term=3)


def test_compact_with_drop_newer_discards_the_whole_log(tmp_path):
    with reopened(tmp_path) as wal:
        wal.append(make_entries(1, 20, term=1))
        wal.compact(10, 4, drop_newer=True)
        assert wal.entries() == []
        assert wal.last_index() == 10
    with reopened(tmp_path) as wal:
        assert wal.entries() == []
        assert wal.compacted == (10, 4)
        wal.append(make_entries(11, 2, term=4))
    with reopened(tmp_path) as wal:
        assert wal.entries() == make_entries(11, 2, term=4)


def test_compact_to_an_older_index_is_ignored(tmp_path):
    with reopened(tmp_path) as wal:
        wal.append(make_entries(1, 20))
        wal.compact(10, 1)
        wal.compact(5, 1)
        assert wal.compacted == (10, 1)
        assert wal.entries() == make_entries(11, 10)
    with reopened(tmp_path) as wal:
        assert wal.compacted == (10, 1)


def test_entries_at_or_below_compaction_are_skipped(tmp_path):
    with reopened(tmp_path) as wal:
        wal.append(make_entries(1, 10))
        wal.compact(10, 1)
        wal.append(make_entries(8, 5))
        assert wal.entries() == make_entries(11, 2)
    with reopened(tmp_path) as wal:
        assert wal.entries() == make_entries(11, 2)


# ---------------------------------------------------------------------- crash recovery

def build_two_phase(directory) -> tuple[int, int]:
    """Entries 1..4 then entry 5 in one segment; returns file size before and after entry 5."""
    with reopened(directory) as wal:
        wal.append(make_entries(1, 4), HardState(1, "n1"))
    path = segment_files(directory)[0]
    before = os.path.getsize(path)
    with reopened(directory) as wal:
        wal.append(make_entries(5, 1, size=30))
    return before, os.path.getsize(path)


def test_torn_tail_at_every_offset_of_the_last_record(tmp_path, caplog):
    source = tmp_path / "source"
    before, after = build_two_phase(source)
    assert after - before > 40
    for cut in range(before, after):
        copy = tmp_path / f"cut{cut}"
        shutil.copytree(source, copy)
        path = segment_files(copy)[0]
        os.truncate(path, cut)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="axon.wal"):
            wal = reopened(copy)
        with wal:
            assert wal.entries() == make_entries(1, 4), cut
            assert wal.hard_state == HardState(1, "n1")
            assert os.path.getsize(path) == before
            if cut > before:
                assert "torn tail" in caplog.text
            wal.append(make_entries(5, 1, term=2))
        with reopened(copy) as wal:
            assert wal.entries() == make_entries(1, 4) + make_entries(5, 1, term=2)


def test_zero_filled_tail_is_cut(tmp_path):
    build_two_phase(tmp_path)
    path = segment_files(tmp_path)[0]
    size = os.path.getsize(path)
    with open(path, "ab") as f:
        f.write(b"\x00" * 8192)
    with reopened(tmp_path) as wal:
        assert wal.entries() == make_entries(1, 4) + make_entries(5, 1, size=30)
        assert os.path.getsize(path) == size
        wal.append(make_entries(6, 1))
    with reopened(tmp_path) as wal:
        assert wal.last_index() == 6


def test_garbage_tail_without_valid_records_is_cut(tmp_path):
    build_two_phase(tmp_path)
    path = segment_files(tmp_path)[0]
    with open(path, "ab") as f:
        f.write(bytes((i * 37 + 11) % 251 for i in range(3000)))
    with reopened(tmp_path) as wal:
        assert wal.last_index() == 5


def test_corrupt_byte_mid_segment_refuses_to_start(tmp_path):
    with reopened(tmp_path) as wal:
        wal.append(make_entries(1, 10))
    path = segment_files(tmp_path)[0]
    offset = record_offset(path, 3)
    flip_byte(path, offset + 30)
    with pytest.raises(WalError) as err:
        reopened(tmp_path)
    message = str(err.value)
    assert os.path.basename(path) in message
    assert f"at offset {offset}" in message
    assert "refusing to start" in message


def test_corrupt_length_mid_segment_refuses_to_start(tmp_path):
    with reopened(tmp_path) as wal:
        wal.append(make_entries(1, 10))
    path = segment_files(tmp_path)[0]
    offset = record_offset(path, 4)
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(b"\xff\xff\xff\x0f")     # length now runs past the end of the file
    with pytest.raises(WalError, match="corrupt record in .* at offset"):
        reopened(tmp_path)


def test_corrupt_last_record_is_treated_as_torn(tmp_path):
    with reopened(tmp_path) as wal:
        wal.append(make_entries(1, 10))
    path = segment_files(tmp_path)[0]
    flip_byte(path, record_offset(path, 10) + 30)
    with reopened(tmp_path) as wal:
        assert wal.entries() == make_entries(1, 9)


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty"])
def test_damaged_earlier_segment_refuses_to_start(tmp_path, damage):
    build_rolled_log(tmp_path, count=30)
    first = segment_files(tmp_path)[0]
    if damage == "flip":
        flip_byte(first, os.path.getsize(first) - 3)
    elif damage == "truncate":
        os.truncate(first, os.path.getsize(first) - 3)
    else:
        os.truncate(first, 0)
    with pytest.raises(WalError, match=os.path.basename(first)):
        reopened(tmp_path, segment_bytes=400)


def test_missing_middle_segment_refuses_to_start(tmp_path):
    build_rolled_log(tmp_path, count=30)
    files = segment_files(tmp_path)
    os.unlink(files[1])
    with pytest.raises(WalError, match="missing WAL segment"):
        reopened(tmp_path, segment_bytes=400)


def test_index_gap_refuses_to_start(tmp_path):
    with reopened(tmp_path) as wal:
        wal.append(make_entries(1, 10))
    path = segment_files(tmp_path)[0]
    start, end = record_offset(path, 6), record_offset(path, 7)
    with open(path, "rb") as f:
        blob = f.read()
    with open(path, "wb") as f:
        f.write(blob[:start] + blob[end:])     # every remaining record is still valid
    with pytest.raises(WalError, match="index gap"):
        reopened(tmp_path)


def test_torn_header_of_a_new_segment_is_removed(tmp_path):
    build_rolled_log(tmp_path, count=20)
    files = segment_files(tmp_path)
    last_seq = int(os.path.basename(files[-1])[:16], 16)
    with open(files[0], "rb") as f:
        header_prefix = f.read(15)
    torn = os.path.join(tmp_path, f"{last_seq + 1:016x}.wal")
    for content in (b"", header_prefix, b"\x00" * 4096):
        with open(torn, "wb") as f:
            f.write(content)
        with reopened(tmp_path, segment_bytes=400) as wal:
            assert wal.entries() == make_entries(1, 20, term=2)
            assert wal.hard_state == HardState(2, "n1")
        assert not os.path.exists(torn)


def test_foreign_files_are_ignored_but_unparseable_segments_are_not(tmp_path):
    with reopened(tmp_path) as wal:
        wal.append(make_entries(1, 3))
    (tmp_path / "README").write_text("not a segment")
    (tmp_path / "backup.wal.old").write_bytes(b"junk")
    with reopened(tmp_path) as wal:
        assert wal.last_index() == 3
    bogus = tmp_path / f"{1:016x}.wal"
    bogus.write_bytes(b"this is definitely not a WAL segment, it is text")
    with pytest.raises(WalError, match="no valid header"):
        reopened(tmp_path)


def test_segment_with_wrong_sequence_number_refuses(tmp_path):
    build_rolled_log(tmp_path, count=20)
    files = segment_files(tmp_path)
    shutil.copy(files[1], files[0])        # segment 0 now carries segment 1's header
    with pytest.raises(WalError, match="segment header"):
        reopened(tmp_path, segment_bytes=400)


# ---------------------------------------------------------------------- group commit

def test_one_sync_covers_many_appends(tmp_path, monkeypatch):
    wal = reopened(tmp_path / "live")
    segment_inode = os.stat(segment_files(tmp_path / "live")[0]).st_ino
    for i in range(1, 51):
        wal.append(make_entries(i, 1), HardState(1, "n1") if i == 25 else None)
    synced_inodes = []
    real_fdatasync = os.fdatasync

    def recording_fdatasync(fd):
        synced_inodes.append(os.fstat(fd).st_ino)
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", recording_fdatasync)
    token = wal.begin_sync()
    assert token.covers_index == 50
    token.run()
    assert synced_inodes == [segment_inode]
    # crash simulation: the process dies without close(); a copy of the files is what survives
    shutil.copytree(tmp_path / "live", tmp_path / "crashed")
    with reopened(tmp_path / "crashed") as recovered:
        assert recovered.entries() == make_entries(1, 50)
        assert recovered.hard_state == HardState(1, "n1")
    wal.close()


def test_rollover_syncs_the_old_segment_before_creating_the_next(tmp_path, monkeypatch):
    wal = reopened(tmp_path, segment_bytes=200)
    wal.append(make_entries(1, 10))
    old_inode = os.stat(segment_files(tmp_path)[0]).st_ino
    events = []
    real_fdatasync = os.fdatasync

    def recording_fdatasync(fd):
        events.append((os.fstat(fd).st_ino, len(segment_files(tmp_path))))
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", recording_fdatasync)
    token = wal.begin_sync()
    assert events == [(old_inode, 1)], "old segment must be durable before the next one exists"
    assert len(segment_files(tmp_path)) == 2
    token.run()
    new_inode = os.stat(segment_files(tmp_path)[1]).st_ino
    assert events[1:] == [(new_inode, 2)]
    wal.close()


def open_fd_count() -> int:
    return len(os.listdir(f"/proc/{os.getpid()}/fd"))


@pytest.mark.skipif(not os.path.isdir(f"/proc/{os.getpid()}/fd"), reason="needs /proc")
def test_token_closes_its_fds(tmp_path):
    with reopened(tmp_path, segment_bytes=200) as wal:
        wal.append(make_entries(1, 20))
        baseline = open_fd_count()
        token = wal.begin_sync()           # rolls over: also dups the directory fd
        assert open_fd_count() > baseline
        token.run()
        token.run()                        # a second run is a harmless no-op
        assert open_fd_count() == baseline
        wal.begin_sync()                   # dropped without run(): must not leak
        assert open_fd_count() == baseline


@pytest.mark.skipif(not os.path.isdir(f"/proc/{os.getpid()}/fd"), reason="needs /proc")
def test_sync_on_the_loop_thread_uses_the_logs_own_fds(tmp_path, monkeypatch):
    """``sync()`` (the inline path) syncs the log's own files: no fd is opened or left behind,
    an oversized segment is rolled first and the directory is synced, and what it covered
    survives a crash."""
    synced = []
    real_fdatasync, real_fsync = os.fdatasync, os.fsync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (synced.append("data"), real_fdatasync(fd)))
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append("dir"), real_fsync(fd)))
    wal = reopened(tmp_path / "live", segment_bytes=4096)
    wal.append(make_entries(1, 2))
    baseline = open_fd_count()
    synced.clear()
    wal.sync()
    assert synced == ["data"] and open_fd_count() == baseline
    segments = len(wal._segments)
    wal.append(make_entries(3, 200))
    synced.clear()
    wal.sync()                          # over segment_bytes: rolls, and syncs the directory
    assert "dir" in synced and len(wal._segments) == segments + 1
    assert open_fd_count() == baseline
    synced.clear()
    wal.sync()
    assert synced == ["data"]            # the directory is clean again
    shutil.copytree(tmp_path / "live", tmp_path / "crashed")
    with reopened(tmp_path / "crashed", segment_bytes=4096) as recovered:
        assert recovered.entries() == make_entries(1, 202)
    wal.close()


def test_token_runs_in_a_thread_while_appends_continue(tmp_path):
    wal = reopened(tmp_path / "live", segment_bytes=4096)
    wal.append(make_entries(1, 100))
    token = wal.begin_sync()
    errors = []

    def run_token():
        try:
            token.run()
        except Exception as exc:  # reported to the main thread below
            errors.append(exc)

    worker = threading.Thread(target=run_token)
    worker.start()
    for start in range(101, 601, 10):
        wal.append(make_entries(start, 10))
        if start % 100 == 1:
            wal.begin_sync()               # may roll segments while the token still runs
    worker.join(timeout=30)
    assert not worker.is_alive()
    assert errors == []
    assert token.covers_index == 100
    final = wal.begin_sync()
    final.run()
    assert final.covers_index == 600
    shutil.copytree(tmp_path / "live", tmp_path / "crashed")
    with reopened(tmp_path / "crashed", segment_bytes=4096) as recovered:
        assert recovered.entries() == make_entries(1, 600)
    wal.close()


def test_token_owns_its_fds_across_close_and_rollover(tmp_path):
    wal = reopened(tmp_path, segment_bytes=200)
    wal.append(make_entries(1, 2))
    early = wal.begin_sync()
    wal.append(make_entries(3, 23))
    rolled = wal.begin_sync()              # closes the previous segment's fd
    wal.append(make_entries(26, 1))
    late = wal.begin_sync()
    wal.close()
    for token in (early, rolled, late):
        token.run()
    assert len(segment_files(tmp_path)) == 2
    with reopened(tmp_path, segment_bytes=200) as recovered:
        assert recovered.last_index() == 26


# ---------------------------------------------------------------------- bad input

def test_bad_arguments_raise_and_leave_state_unchanged(tmp_path):
    with reopened(tmp_path) as wal:
        wal.append(make_entries(1, 5), HardState(3, "n1"))
        bad_calls = [
            lambda: wal.append([Entry(6, 3), Entry(8, 3)]),            # not contiguous
            lambda: wal.append([Entry(7, 3)]),                         # gap after last index
            lambda: wal.append([Entry(0, 3)]),                         # index 0 is never valid
            lambda: wal.append(["not an entry"]),
            lambda: wal.append([Entry(6, 3), "not an entry"]),
            lambda: wal.append([Entry(6, -1)]),
            lambda: wal.append([Entry(6, 3, 9, b"")]),                 # unknown kind
            lambda: wal.append([Entry(6, 3, EntryKind.NORMAL, "text")]),
            lambda: wal.append([], HardState(2, "n1")),                # term going backwards
            lambda: wal.append([], HardState(4, 17)),
            lambda: wal.append([], "not a hard state"),
            lambda: wal.compact(-1, 0),
            lambda: wal.compact(3, "x"),
        ]
        for call in bad_calls:
            with pytest.raises(WalError):
                call()
        assert wal.entries() == make_entries(1, 5)
        assert wal.hard_state == HardState(3, "n1")
        assert wal.compacted == (0, 0)
        wal.append(make_entries(6, 1))
    with reopened(tmp_path) as wal:
        assert wal.entries() == make_entries(1, 6)
        assert wal.hard_state == HardState(3, "n1")


def test_closed_wal_raises(tmp_path):
    wal = reopened(tmp_path)
    wal.close()
    wal.close()
    for call in (lambda: wal.append(make_entries(1, 1)), wal.begin_sync, lambda: wal.compact(1, 1)):
        with pytest.raises(WalError, match="closed"):
            call()


def test_bad_directories(tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(WalError):
        reopened(not_a_dir)
    with pytest.raises(WalError):
        reopened(not_a_dir / "child")
    with pytest.raises(WalError):
        reopened(tmp_path / "ok", segment_bytes=0)
    with pytest.raises(WalError):
        WAL.open(None)


def test_directory_is_locked_while_open(tmp_path):
    with reopened(tmp_path):
        with pytest.raises(WalError, match="in use"):
            reopened(tmp_path)
    with reopened(tmp_path) as wal:
        assert wal.last_index() == 0


# ---------------------------------------------------------------------- model check

operations = st.lists(st.one_of(
    st.tuples(st.just("append"), st.integers(0, 6), st.integers(0, 5), st.integers(0, 3)),
    st.tuples(st.just("vote"), st.integers(0, 2), st.sampled_from([None, "a", "b"])),
    st.tuples(st.just("compact"), st.integers(0, 8), st.booleans()),
    st.tuples(st.just("sync")),
    st.tuples(st.just("reopen")),
), max_size=40)


@settings(max_examples=40, deadline=None)
@given(operations)
def test_wal_matches_a_simple_model(ops):
    """Random appends/overwrites/compactions/reopens agree with an in-memory model."""
    model: dict[int, Entry] = {}
    compacted = (0, 0)
    hard_state = HardState()
    with tempfile.TemporaryDirectory() as directory:
        wal = WAL.open(directory, segment_bytes=150)
        try:
            for op in ops:
                last = max(model, default=compacted[0])
                if op[0] == "append":
                    _, back, count, term_bump = op
                    start = max(1, last + 1 - back)
                    term = hard_state.term + term_bump
                    batch = [Entry(i, term, EntryKind.NORMAL, b"%d/%d" % (i, term))
                             for i in range(start, start + count)]
                    wal.append(batch)
                    kept = [e for e in batch if e.index > compacted[0]]
                    if kept:
                        model = {i: e for i, e in model.items() if i < kept[0].index}
                        model.update({e.index: e for e in kept})
                elif op[0] == "vote":
                    hard_state = HardState(hard_state.term + op[1], op[2])
                    wal.append([], hard_state)
                elif op[0] == "compact":
                    index = last - 4 + op[1]
                    if index > compacted[0] or (index == compacted[0] and op[2] and index > 0):
                        term = model[index].term if index in model else 99
                        wal.compact(index, term, drop_newer=op[2])
                        compacted = (index, term)
                        model = {} if op[2] else {i: e for i, e in model.items() if i > index}
                elif op[0] == "sync":
                    synced(wal)
                else:
                    wal.close()
                    wal = WAL.open(directory, segment_bytes=150)
                assert wal.entries() == [model[i] for i in sorted(model)]
                assert wal.compacted == compacted
                assert wal.hard_state == hard_state
                assert wal.last_index() == max(model, default=compacted[0])
        finally:
            wal.close()

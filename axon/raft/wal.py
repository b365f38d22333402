"""Raft write-ahead log: checksummed, append-only segment files with group commit.

Layout: a directory of segments named ``%016x.wal`` by sequence number plus a
``LOCK`` file.  Every record is ``u32 length | u32 crc32(body) | body`` where
``body`` is a type byte followed by the payload.  Each segment starts with a
SEGMENT record, the current hard state and the current compaction marker, so
deleting older segments never loses either.

Durability contract: ``append`` only hands bytes to the OS; ``begin_sync`` +
``SyncToken.run`` make them durable (one fdatasync for everything appended
meanwhile).  Invariant relied on by recovery: a segment is fully synced before
any record is written to a later one, so only the last segment can be torn.
"""
from __future__ import annotations

import fcntl
import logging
import os
import re
import struct
import threading
import zlib
from dataclasses import dataclass
from typing import Callable, Sequence

from axon.raft.types import Entry, EntryKind, HardState

log = logging.getLogger("axon.wal")

_PREFIX = struct.Struct("<II")            # body length, crc32 of body
_ENTRY_HEAD = struct.Struct("<BQQB")      # type, index, term, kind; entry data follows
_HARD_HEAD = struct.Struct("<BQB")        # type, term, has_vote; utf-8 vote follows
_COMPACT = struct.Struct("<BQQB")         # type, index, term, drop_newer
_SEGMENT = struct.Struct("<B8sIQ")        # type, magic, format version, sequence number

_REC_SEGMENT = 1
_REC_ENTRY = 2
_REC_HARD_STATE = 3
_REC_COMPACT = 4
_RECORD_TYPES = frozenset((_REC_SEGMENT, _REC_ENTRY, _REC_HARD_STATE, _REC_COMPACT))

_MAGIC = b"AXONWAL\x00"
_VERSION = 1
_MAX_BODY = 512 * 1024 * 1024             # sanity bound: larger lengths are corruption
_MAX_U64 = 2**64 - 1
_ENTRY_KINDS = frozenset(int(k) for k in EntryKind)
_SEGMENT_NAME = re.compile(r"^([0-9a-f]{16})\.wal$")
_LOCK_NAME = "LOCK"


class WalError(Exception):
    """Unrecoverable WAL problem (mid-log corruption, bad directory, foreign files, bad input).

    Recovery errors name the file and offset.
    """


# ---------------------------------------------------------------------- record codec (pure)

def _frame(body: bytes) -> bytes:
    return _PREFIX.pack(len(body), zlib.crc32(body)) + body


def _encode_entry(entry: Entry) -> bytes:
    data = entry.data
    head = _ENTRY_HEAD.pack(_REC_ENTRY, entry.index, entry.term, entry.kind)
    # crc of head+data without concatenating them first: data may be large
    crc = zlib.crc32(data, zlib.crc32(head))
    return b"".join((_PREFIX.pack(len(head) + len(data), crc), head, data))


def _encode_hard_state(hs: HardState) -> bytes:
    if hs.vote is None:
        return _frame(_HARD_HEAD.pack(_REC_HARD_STATE, hs.term, 0))
    return _frame(_HARD_HEAD.pack(_REC_HARD_STATE, hs.term, 1) + hs.vote.encode("utf-8"))


def _encode_compact(index: int, term: int, drop_newer: bool) -> bytes:
    return _frame(_COMPACT.pack(_REC_COMPACT, index, term, int(drop_newer)))


def _encode_segment_header(seq: int, hs: HardState, compacted: tuple[int, int]) -> bytes:
    return b"".join((_frame(_SEGMENT.pack(_REC_SEGMENT, _MAGIC, _VERSION, seq)),
                     _encode_hard_state(hs),
                     _encode_compact(compacted[0], compacted[1], False)))


class _Unparseable(Exception):
    """A record whose checksum is valid but whose content is not a known record."""


@dataclass(frozen=True, slots=True)
class _Compact:
    index: int
    term: int
    drop_newer: bool


@dataclass(frozen=True, slots=True)
class _SegmentHeader:
    version: int
    seq: int


_Value = Entry | HardState | _Compact | _SegmentHeader


def _decode_body(body: memoryview) -> _Value:
    rtype = body[0]
    try:
        if rtype == _REC_ENTRY:
            _, index, term, kind = _ENTRY_HEAD.unpack_from(body)
            if index < 1 or kind not in _ENTRY_KINDS:
                raise _Unparseable(f"bad entry index {index} or kind {kind}")
            return Entry(index, term, EntryKind(kind), bytes(body[_ENTRY_HEAD.size:]))
        if rtype == _REC_HARD_STATE:
            _, term, has_vote = _HARD_HEAD.unpack_from(body)
            rest = bytes(body[_HARD_HEAD.size:])
            if has_vote not in (0, 1) or (not has_vote and rest):
                raise _Unparseable("bad hard state vote flag")
            return HardState(term, rest.decode("utf-8") if has_vote else None)
        if rtype == _REC_COMPACT and len(body) == _COMPACT.size:
            _, index, term, drop = _COMPACT.unpack_from(body)
            if drop not in (0, 1):
                raise _Unparseable("bad compaction flag")
            return _Compact(index, term, bool(drop))
        if rtype == _REC_SEGMENT and len(body) == _SEGMENT.size:
            _, magic, version, seq = _SEGMENT.unpack_from(body)
            if magic != _MAGIC or version != _VERSION:
                raise _Unparseable(f"bad segment magic {magic!r} or version {version}")
            return _SegmentHeader(version, seq)
    except (struct.error, UnicodeDecodeError) as exc:
        raise _Unparseable(str(exc)) from exc
    raise _Unparseable(f"unknown record type {rtype} or bad length {len(body)}")


@dataclass(frozen=True, slots=True)
class _Record:
    offset: int
    value: _Value


@dataclass(frozen=True, slots=True)
class _Scan:
    records: list[_Record]
    end: int                 # offset just past the last valid record
    defect: str | None       # why parsing stopped before end of file (None: clean)


def _read_record(buf: memoryview, off: int) -> tuple[_Value, int] | str:
    """The record at off and the offset after it, or a string saying why it is not valid."""
    if len(buf) - off < _PREFIX.size:
        return "short record header"
    length, crc = _PREFIX.unpack_from(buf, off)
    if length == 0 or length > _MAX_BODY:
        return f"bad record length {length}"
    end = off + _PREFIX.size + length
    if end > len(buf):
        return f"record length {length} runs past end of file"
    body = buf[off + _PREFIX.size:end]
    if zlib.crc32(body) != crc:
        return "checksum mismatch"
    # the checksum is valid, so this was written whole: content problems are not a torn write
    return _decode_body(body), end


def _scan(buf: memoryview) -> _Scan:
    """Parse records from the start until the end of buf or the first invalid one."""
    records: list[_Record] = []
    off = 0
    while off < len(buf):
        try:
            got = _read_record(buf, off)
        except _Unparseable as exc:
            raise _Unparseable(f"at offset {off}: {exc}") from None
        if isinstance(got, str):
            return _Scan(records, off, got)
        value, end = got
        records.append(_Record(off, value))
        off = end
    return _Scan(records, off, None)


def _valid_record_after(buf: memoryview, off: int) -> int | None:
    """Offset of the first checksum-valid record starting after off, if any."""
    for pos in range(off + 1, len(buf) - _PREFIX.size):
        # cheap filters first: this runs byte by byte over a damaged tail
        if buf[pos + _PREFIX.size] not in _RECORD_TYPES:
            continue
        length, _ = _PREFIX.unpack_from(buf, pos)
        if length == 0 or pos + _PREFIX.size + length > len(buf):
            continue
        try:
            if not isinstance(_read_record(buf, pos), str):
                return pos
        except _Unparseable:
            return pos
    return None


def _is_torn_header(buf: memoryview) -> bool:
    """True if buf could be a segment whose first record was cut by a crash."""
    if not any(buf):
        return True
    full = _PREFIX.size + _SEGMENT.size
    expected_body_start = bytes([_REC_SEGMENT]) + _MAGIC
    tail = bytes(buf[_PREFIX.size:full])
    return len(buf) < full and expected_body_start.startswith(tail[:len(expected_body_start)])


# ---------------------------------------------------------------------- recovery

@dataclass(slots=True)
class _Segment:
    seq: int
    path: str
    max_index: int = 0      # highest entry index written into it; 0 when none


@dataclass(slots=True)
class _Recovered:
    entries: list[Entry]
    hard_state: HardState
    compacted: tuple[int, int]


def _segment_path(directory: str, seq: int) -> str:
    return os.path.join(directory, f"{seq:016x}.wal")


def _list_segments(directory: str) -> list[_Segment]:
    segments = []
    for name in os.listdir(directory):
        match = _SEGMENT_NAME.match(name)
        path = os.path.join(directory, name)
        if match and os.path.isfile(path):
            segments.append(_Segment(int(match.group(1), 16), path))
    segments.sort(key=lambda s: s.seq)
    for prev, cur in zip(segments, segments[1:]):
        if cur.seq != prev.seq + 1:
            raise WalError(f"missing WAL segment between {prev.path} and {cur.path}; refusing to start")
    return segments


def _read_segment(seg: _Segment, is_last: bool) -> list[_Record] | None:
    """Records of one segment; cuts a torn tail of the last one; None if the last one holds nothing."""
    with open(seg.path, "rb") as f:
        buf = memoryview(f.read())
    try:
        scan = _scan(buf)
    except _Unparseable as exc:
        raise WalError(f"corrupt record in {seg.path} {exc} (checksum valid); refusing to start") from None
    if scan.defect is not None:
        _check_torn(seg, buf, scan, is_last)
    if not scan.records:
        if not is_last:
            raise WalError(f"{seg.path} holds no WAL records in a non-final segment; refusing to start")
        os.unlink(seg.path)
        log.warning("removed WAL segment %s: its header was torn by a crash", seg.path)
        return None
    head = scan.records[0].value
    if not isinstance(head, _SegmentHeader) or head.seq != seg.seq:
        raise WalError(f"{seg.path} does not start with its WAL segment header; refusing to start")
    if scan.defect is not None:
        _cut(seg.path, scan.end, len(buf), scan.defect)
    return scan.records


def _check_torn(seg: _Segment, buf: memoryview, scan: _Scan, is_last: bool) -> None:
    """Raise unless the defect at scan.end is a torn tail that may be cut."""
    where = f"corrupt record in {seg.path} at offset {scan.end} ({scan.defect})"
    if not is_last:
        raise WalError(f"{where} in a non-final segment; refusing to start")
    later = _valid_record_after(buf, scan.end)
    if later is not None:
        raise WalError(f"{where}, followed by a valid record at offset {later}; refusing to start")
    if not scan.records and not _is_torn_header(buf):
        raise WalError(f"{seg.path} looks like a WAL segment but has no valid header; refusing to start")


def _cut(path: str, end: int, size: int, why: str) -> None:
    log.warning("torn tail in %s at offset %d (%s): cutting %d bytes", path, end, why, size - end)
    with open(path, "r+b") as f:
        f.truncate(end)
        os.fsync(f.fileno())


def _replay(segments: list[tuple[_Segment, list[_Record]]]) -> _Recovered:
    """Rebuild the state that the recorded appends and compactions produced."""
    hard_state = HardState()
    compacted = (0, 0)
    for _, records in segments:
        for rec in records:
            if isinstance(rec.value, HardState):
                hard_state = rec.value
            elif isinstance(rec.value, _Compact) and rec.value.index >= compacted[0]:
                compacted = (rec.value.index, rec.value.term)
    base = compacted[0]
    entries: list[Entry] = []
    for seg, records in segments:
        for rec in records:
            value = rec.value
            if isinstance(value, _Compact) and value.drop_newer:
                entries.clear()
            if not isinstance(value, Entry):
                continue
            seg.max_index = max(seg.max_index, value.index)
            # older segments may be deleted: entries <= base are in the snapshot, and
            # a write at or below base truncated everything above base
            if value.index <= base:
                entries.clear()
                continue
            last = base + len(entries)
            if value.index > last + 1:
                raise WalError(f"index gap in {seg.path} at offset {rec.offset}: entry {value.index} "
                               f"follows last index {last}; refusing to start")
            del entries[value.index - base - 1:]
            entries.append(value)
    return _Recovered(entries, hard_state, compacted)


# ---------------------------------------------------------------------- I/O helpers

def _write_all(fd: int, blob: bytes) -> None:
    view = memoryview(blob)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _check_u64(name: str, value: object, minimum: int = 0) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= _MAX_U64:
        raise WalError(f"{name} must be an integer in [{minimum}, 2**64-1], got {value!r}")
    return value


def _check_hard_state(hs: object) -> HardState:
    if not isinstance(hs, HardState):
        raise WalError(f"hard_state must be a HardState, got {type(hs).__name__}")
    _check_u64("hard state term", hs.term)
    if hs.vote is not None and not isinstance(hs.vote, str):
        raise WalError(f"hard state vote must be str or None, got {hs.vote!r}")
    return hs


def _normalized(entry: object) -> Entry:
    """The entry validated, with EntryKind kind and bytes data (the same object if it has them)."""
    if not isinstance(entry, Entry):
        raise WalError(f"expected Entry, got {type(entry).__name__}")
    _check_u64("entry term", entry.term)
    kind = entry.kind
    if isinstance(kind, bool) or not isinstance(kind, int) or kind not in _ENTRY_KINDS:
        raise WalError(f"entry {entry.index} has bad kind {kind!r}")
    data = entry.data
    if not isinstance(data, bytes):
        if not isinstance(data, (bytearray, memoryview)):
            raise WalError(f"entry {entry.index} data must be bytes, got {type(data).__name__}")
        data = bytes(data)
    if len(data) + _ENTRY_HEAD.size > _MAX_BODY:
        raise WalError(f"entry {entry.index} data too large ({len(data)} bytes)")
    if data is entry.data and type(kind) is EntryKind:
        return entry
    return Entry(entry.index, entry.term, EntryKind(kind), data)


# ---------------------------------------------------------------------- public API

class SyncToken:
    """Makes everything appended before its ``begin_sync`` durable; owns dup'd fds."""

    def __init__(self, fds: list[int], dir_fd: int | None, covers_index: int) -> None:
        self._fds = fds
        self._dir_fd = dir_fd
        self.covers_index = covers_index

    def run(self) -> None:
        """Thread-safe: fdatasync every file the token covers, then the directory if it changed.

        May run in a worker thread while the event loop keeps appending; uses and closes only
        its own dup'd fds, so WAL.close() or a rollover cannot pull them away.
        """
        fds, dir_fd = self._fds, self._dir_fd
        self._fds, self._dir_fd = [], None      # a second run() is a no-op
        try:
            for fd in fds:
                os.fdatasync(fd)
            if dir_fd is not None:
                os.fsync(dir_fd)
        except OSError as exc:
            raise WalError(f"WAL sync failed: {exc}") from exc
        finally:
            _close_all(fds + ([dir_fd] if dir_fd is not None else []))

    def __del__(self) -> None:
        # a token dropped without run() must not leak its fds
        _close_all(self._fds + ([self._dir_fd] if self._dir_fd is not None else []))


def _dup(fd: int) -> int:
    try:
        return os.dup(fd)
    except OSError as exc:
        raise WalError(f"cannot start a WAL sync: {exc}") from exc


def _call(fn: Callable[[], None]) -> None:
    fn()


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


class WAL:
    """Durable Raft log and hard state; see the module docstring for the format."""

    hard_state: HardState
    compacted: tuple[int, int]

    def __init__(self, directory: str, segment_bytes: int, lock_fd: int, dir_fd: int,
                 segments: list[_Segment], state: _Recovered) -> None:
        """Internal: use WAL.open()."""
        self.directory = directory
        self._segment_bytes = segment_bytes
        self._lock_fd = lock_fd
        self._dir_fd = dir_fd
        self._segments = segments
        self._entries = state.entries
        self.hard_state = state.hard_state
        self.compacted = state.compacted
        self._dir_dirty = False
        self._closed = False
        # Compacted segments' files, oldest first, until delete_retired deletes them.  By default
        # right away; the driver hands it to a thread (unlinking 64 MiB takes tens of ms).
        self._retired: list[str] = []
        self._retire_lock = threading.Lock()
        self.delete_in: Callable[[Callable[[], None]], None] = _call
        self._broken: str | None = None
        current = segments[-1].path
        self._fd = os.open(current, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        self._size = os.fstat(self._fd).st_size

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, directory: str, *, segment_bytes: int = 64 * 1024 * 1024) -> "WAL":
        """Create the directory if missing, replay all segments, cut a torn tail, return a ready WAL."""
        try:
            directory = os.fspath(directory)
        except TypeError as exc:
            raise WalError(f"WAL directory must be a path, got {directory!r}") from exc
        _check_u64("segment_bytes", segment_bytes, 1)
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as exc:
            raise WalError(f"cannot create WAL directory {directory}: {exc}") from exc
        if not os.path.isdir(directory):
            raise WalError(f"WAL path {directory} is not a directory")
        lock_fd = _lock(directory)
        dir_fd = -1
        try:
            dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            segments, state = _recover(directory, dir_fd)
            if not segments:
                segments = [_create_segment(directory, 0, state.hard_state, state.compacted, sync=True)]
                os.fsync(dir_fd)
            return cls(directory, segment_bytes, lock_fd, dir_fd, segments, state)
        except OSError as exc:
            _close_all([lock_fd] + ([dir_fd] if dir_fd >= 0 else []))
            raise WalError(f"cannot open WAL in {directory}: {exc}") from exc
        except BaseException:
            _close_all([lock_fd] + ([dir_fd] if dir_fd >= 0 else []))
            raise

    # ------------------------------------------------------------------ reading
    def entries(self) -> list[Entry]:
        """Entries after `compacted`, in index order (a later write of index i replaced i and all after it)."""
        return list(self._entries)

    def last_index(self) -> int:
        return self.compacted[0] + len(self._entries)

    # ------------------------------------------------------------------ writing
    def append(self, entries: Sequence[Entry], hard_state: HardState | None = None) -> None:
        """Write records (buffered into the OS, NOT synced).

        If entries[0].index <= last_index() the log is logically truncated from there
        (a follower overwriting a conflicting suffix); entries must be contiguous and
        entries[0].index <= last_index()+1, else WalError.  Entries at or below the
        compaction index are already in the snapshot and are skipped.
        """
        self._check_usable()
        entries = list(entries)
        if hard_state is not None:
            _check_hard_state(hard_state)
            if hard_state.term < self.hard_state.term:
                raise WalError(f"hard state term went backwards: {self.hard_state.term} -> {hard_state.term}")
        parts = []
        if hard_state is not None and hard_state != self.hard_state:
            parts.append(_encode_hard_state(hard_state))
        entries = [_normalized(entry) for entry in self._entries_to_write(entries)]
        parts.extend(_encode_entry(entry) for entry in entries)
        if not parts:
            return
        self._write(b"".join(parts))
        if hard_state is not None:
            self.hard_state = hard_state
        if entries:
            del self._entries[entries[0].index - self.compacted[0] - 1:]
            self._entries.extend(entries)
            seg = self._segments[-1]
            seg.max_index = max(seg.max_index, entries[-1].index)

    def _entries_to_write(self, entries: list[Entry]) -> list[Entry]:
        """Validate positions; drop the prefix already covered by compaction."""
        if not entries:
            return entries
        first = entries[0]
        if not isinstance(first, Entry):
            raise WalError(f"expected Entry, got {type(first).__name__}")
        start = _check_u64("entry index", first.index, 1)
        if start > self.last_index() + 1:
            raise WalError(f"gap: first entry index {start} is beyond last index {self.last_index()} + 1")
        for offset, entry in enumerate(entries):
            if not isinstance(entry, Entry):
                raise WalError(f"expected Entry, got {type(entry).__name__}")
            if entry.index != start + offset:
                raise WalError(f"entries not contiguous: {entry.index} at position {offset} after {start}")
        skip = self.compacted[0] + 1 - start
        return entries[skip:] if skip > 0 else entries

    def begin_sync(self) -> SyncToken:
        """Called on the event-loop thread: return a token covering everything appended so far.

        Rolls to a new segment first if the current one is over segment_bytes; the old
        segment is fdatasync'd right here (once per segment) so that only the last segment
        can ever be torn.
        """
        self._check_usable()
        # appends go straight to the OS with os.write, so there is no user-space buffer to flush
        if self._size > self._segment_bytes:
            self._roll()
        fd = _dup(self._fd)
        dir_fd = None
        if self._dir_dirty:
            try:
                dir_fd = _dup(self._dir_fd)
            except WalError:
                os.close(fd)
                raise
            self._dir_dirty = False
        return SyncToken([fd], dir_fd, self.last_index())

    def sync(self) -> None:
        """``begin_sync().run()`` on the event-loop thread, without the token's dup'd fds:
        nothing can roll or close the log while this runs, so its own fds serve."""
        self._check_usable()
        if self._size > self._segment_bytes:
            self._roll()
        self._sync_current()
        if self._dir_dirty:
            self._sync_directory()
            self._dir_dirty = False

    def compact(self, index: int, term: int, *, drop_newer: bool = False) -> None:
        """Entries <= index are in a durable snapshot: record the marker durably, delete old segments.

        Entries > index are kept unless drop_newer (an installed snapshot replaces the whole
        log).  Syncs synchronously, marker or not: compaction is rare, the marker must be
        durable before any segment is deleted, and the driver counts on every record
        appended before (and the directory entry of every segment) being durable on return.
        An index below the current marker is ignored.
        """
        self._check_usable()
        _check_u64("compact index", index)
        _check_u64("compact term", term)
        ignored = index < self.compacted[0] or (index == self.compacted[0] and not drop_newer)
        if not ignored:
            self._write(_encode_compact(index, term, drop_newer))
        self._sync_current()
        self._sync_directory()
        if ignored:
            return
        if drop_newer:
            self._entries.clear()
        else:
            del self._entries[:index - self.compacted[0]]
        self.compacted = (index, term)
        self._retire_segments_upto(index)

    def close(self) -> None:
        """Sync what was appended and release the directory; tokens already handed out stay valid."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._broken is None:
                os.fdatasync(self._fd)
        except OSError as exc:
            raise WalError(f"WAL sync on close failed: {exc}") from exc
        finally:
            _close_all([self._fd, self._dir_fd, self._lock_fd])

    def __enter__(self) -> "WAL":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals
    def _check_usable(self) -> None:
        if self._closed:
            raise WalError(f"WAL in {self.directory} is closed")
        if self._broken is not None:
            raise WalError(f"WAL in {self.directory} is unusable after an earlier failure: {self._broken}")

    def _write(self, blob: bytes) -> None:
        """Append blob to the current segment; on failure cut the partial write off again."""
        try:
            _write_all(self._fd, blob)
        except OSError as exc:
            try:
                os.ftruncate(self._fd, self._size)
            except OSError as exc2:
                self._broken = f"write failed ({exc}) and could not be undone ({exc2})"
            raise WalError(f"WAL write to {self._segments[-1].path} failed: {exc}") from exc
        self._size += len(blob)

    def _sync_current(self) -> None:
        try:
            os.fdatasync(self._fd)
        except OSError as exc:
            self._broken = f"fdatasync failed: {exc}"
            raise WalError(f"WAL sync of {self._segments[-1].path} failed: {exc}") from exc

    def _sync_directory(self) -> None:
        # a rolled segment's entry may still wait for the token that carries the directory
        try:
            os.fsync(self._dir_fd)
        except OSError as exc:
            self._broken = f"directory fsync failed: {exc}"
            raise WalError(f"WAL directory sync of {self.directory} failed: {exc}") from exc

    def _roll(self) -> None:
        # synced here, not in the token: recovery relies on only the last segment being torn
        self._sync_current()
        seq = self._segments[-1].seq + 1
        try:
            seg = _create_segment(self.directory, seq, self.hard_state, self.compacted, sync=False)
        except OSError as exc:
            raise WalError(f"cannot create WAL segment {seq:016x}.wal: {exc}") from exc
        os.close(self._fd)
        self._fd = os.open(seg.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        self._size = os.fstat(self._fd).st_size
        self._segments.append(seg)
        self._dir_dirty = True

    def _retire_segments_upto(self, index: int) -> None:
        """Segments wholly at or below index leave the log; ``delete_in`` deletes their files."""
        while len(self._segments) > 1 and self._segments[0].max_index <= index:
            self._retired.append(self._segments.pop(0).path)
        if self._retired:
            self.delete_in(self.delete_retired)

    def delete_retired(self) -> None:
        """Delete retired segments' files (thread-safe; a failure leaves the rest for next time).

        Oldest first, one directory sync each, so a crash leaves a contiguous run of segments,
        which recovery reads as it reads a crash between the marker and the deletes.  The
        directory is opened afresh: this may run in a thread while the log closes.
        """
        with self._retire_lock:
            while self._retired:
                path = self._retired[0]
                try:
                    os.unlink(path)
                    _fsync_directory(self.directory)
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    raise WalError(f"cannot delete compacted WAL segment {path}: {exc}") from exc
                self._retired.pop(0)


def _fsync_directory(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _lock(directory: str) -> int:
    path = os.path.join(directory, _LOCK_NAME)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise WalError(f"cannot create lock file {path}: {exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        raise WalError(f"WAL directory {directory} is in use by another WAL ({exc})") from exc
    return fd


def _recover(directory: str, dir_fd: int) -> tuple[list[_Segment], _Recovered]:
    listed = _list_segments(directory)
    parsed: list[tuple[_Segment, list[_Record]]] = []
    for position, seg in enumerate(listed):
        records = _read_segment(seg, is_last=position == len(listed) - 1)
        if records is None:
            os.fsync(dir_fd)
            continue
        parsed.append((seg, records))
    return [seg for seg, _ in parsed], _replay(parsed)


def _create_segment(directory: str, seq: int, hs: HardState, compacted: tuple[int, int],
                    *, sync: bool) -> _Segment:
    path = _segment_path(directory, seq)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        _write_all(fd, _encode_segment_header(seq, hs, compacted))
        if sync:
            os.fdatasync(fd)
    except OSError:
        os.close(fd)
        os.unlink(path)
        raise
    os.close(fd)
    return _Segment(seq, path)


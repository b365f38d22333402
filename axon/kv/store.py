"""The key-value data set in LevelDB: log slots applied in order, reads, streamed snapshots.

The store knows commands (``axon.kv.commands``), not Raft: the state machine adapter
(``axon.kv.machine``) turns Raft entries into ``Slot``s and Raft's configuration into an
opaque config blob, which the store keeps next to the applied index without looking inside.

LevelDB layout (all values msgpack unless noted):

    b"\\x00m/format"     -> raw b"axon-store/1"; marks the directory as ours
    b"\\x00m/applied"    -> [applied_index, applied_term]
    b"\\x00m/config"     -> raw config blob of the last slot that carried one (a msgpack object)
    b"\\x00m/restoring"  -> [index, term] while a snapshot restore is half done
    b"\\x00m/auth"       -> the auth state (axon/kv/authstate.py), absent while auth was never used
    b"\\x00l" + id       -> ttl: a lease (id: 8 bytes big-endian; axon/kv/leases.py)
    b"\\x00a" + id + utf8(key) -> raw b"": the key is attached to the lease
    b"k" + utf8(key)    -> [revision, value]

Utf-8 byte order equals code point order, so LevelDB's order is key order.

Snapshot stream, version 2 (msgpack objects back to back, cut into chunks anywhere):
a header map {"format", "version", "index", "term", "config"[, "auth"]} ("config" holds the
config blob's object itself, None without one; "auth" the auth state, absent when off and
tokenless: older snapshots lack it); blocks, each a
bin object holding packb([[raw key, ...], [stored value, ...]]) - the LevelDB
keys and values as they are, in key order, at most _BLOCK_RECORDS per block;
then the lease table in pieces, each ["leases", bin object holding packb([[id, ttl, [key, ...]],
...])] of about _BLOCK_BYTES (none without leases: older snapshots have none);
then a trailer map {"end": True, "count": records, "crc": crc32 of the packed
header and of every block's and lease piece's content}.  Moving whole blocks keeps the per-record
Python work out of both ends: the sender never decodes a stored value, and the
receiver checks a block with a few C-level passes instead of one record at a time.
"""
from __future__ import annotations

import contextlib
import logging
import os
import zlib
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence

import msgpack
import plyvel

from axon import bulk
from axon.kv.authstate import AuthState, apply_auth
from axon.kv.commands import (CommandError, Delete, LeaseGrant, Put, Result, Txn, TxnResult, decode_commands,
                              evaluate, evaluate_txn, is_auth, is_lease, reads_current)
from axon.kv.feed import RawChange
from axon.kv.leases import MAX_LEASE_KEYS, LeaseTable, put_leases

log = logging.getLogger(__name__)

_FORMAT_KEY = b"\x00m/format"
_FORMAT = b"axon-store/1"
_APPLIED_KEY = b"\x00m/applied"
_CONFIG_KEY = b"\x00m/config"
_RESTORING_KEY = b"\x00m/restoring"
# Under the meta prefix, never under _DATA: user keys ("k" + key) can never reach it.
_AUTH_KEY = b"\x00m/auth"
_DATA = b"k"
_LEASE = b"\x00l"
_ATTACH = b"\x00a"
_LEASE_PIECE = "leases"

_DB_OPTIONS: dict[str, Any] = {
    "write_buffer_size": 64 << 20,
    "lru_cache_size": 64 << 20,
    "compression": "snappy",   # LevelDB silently stores uncompressed if built without snappy
    "bloom_filter_bits": 10,
}

_SNAPSHOT_FORMAT = "axon-snapshot"
_SNAPSHOT_VERSION = 2
_BLOCK_BYTES = 256 << 10     # a snapshot block ends once its keys and values reach this...
_BLOCK_RECORDS = 4096        # ...or this many records (the most a restore accepts in one block)
_BATCH_BYTES = 4 << 20       # bounds each restore/wipe write batch
_BATCH_RECORDS = 10_000
_FEED_SLICE = 1 << 20        # restore feeds the unpacker at most this much at a time
_MAX_FRAME = 128 << 20       # largest single msgpack object a snapshot stream may hold


SCAN_YIELD_ITEMS = 256        # a scan lets other greenlets run after this many items...
SCAN_YIELD_BYTES = 1 << 20    # ...or this many bytes
PAGE_ITEM_OVERHEAD = 48       # what a listed item's JSON adds to its key and value (names, revision)


def page_item_bytes(key_bytes: int, value_bytes: int) -> int:
    """What one item counts against a page's byte budget: about its JSON size."""
    return key_bytes + value_bytes + PAGE_ITEM_OVERHEAD


class StoreError(Exception):
    """The store cannot do what was asked; the message says why."""


@dataclass(frozen=True, slots=True)
class Slot:
    """One position of the replicated log, as the store applies it.

    ``commands`` is a batch from ``encode_commands`` (b"": none); ``config_blob``, when not
    None, replaces the stored config blob: any one packed msgpack object (snapshot headers
    carry it unpacked).  A slot with neither only moves the applied index.
    """
    index: int
    term: int
    commands: bytes = b""
    config_blob: bytes | None = None


@dataclass(frozen=True, slots=True)
class Applied:
    """How far a data set goes: every slot up to ``index`` (of ``term``), and the config blob then."""
    index: int = 0
    term: int = 0
    config_blob: bytes | None = None


class Store:
    """A LevelDB-backed key-value state machine; open with ``Store.open(path)``."""

    def __init__(self, path: str, db: plyvel.DB) -> None:
        self._path = path
        self._db = db
        self._restoring = False
        self._load_state()

    def _load_state(self) -> None:
        """What memory holds of the data set, read from LevelDB (at open and reopen)."""
        db = self._db
        self._applied_index, self._applied_term = _read_applied(db)
        self._config_blob = db.get(_CONFIG_KEY)
        self._auth = _read_auth(db)
        self._leases = _read_leases(db)

    # ---- lifecycle -------------------------------------------------------

    @classmethod
    def open(cls, path: str) -> Store:
        """Open (creating if missing) the store at ``path``."""
        _check_store_dir(path)
        db = _open_leveldb(path)
        try:
            _check_or_stamp_format(db, path)
            if db.get(_RESTORING_KEY) is not None:
                log.warning("store %s: previous snapshot restore did not finish; starting empty", path)
                _reset_to_empty(db)
            return cls(path, db)
        except BaseException:
            db.close()
            raise

    def close(self) -> None:
        if not self._db.closed:
            self._db.close()

    def reopen(self) -> None:
        """Close LevelDB and open it again: after one failed write it refuses every write until then.

        A failed apply leaves the data set as it was, unless its batch reached LevelDB's log
        before the failure: what memory holds is read again, so the driver's retry skips it.
        """
        self.close()
        self._db = _open_leveldb(self._path)
        self._load_state()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def path(self) -> str:
        return self._path

    @property
    def closed(self) -> bool:
        return self._db.closed

    @property
    def applied_index(self) -> int:
        return self._applied_index

    @property
    def applied_term(self) -> int:
        return self._applied_term

    @property
    def config_blob(self) -> bytes | None:
        """The config blob of the last applied slot that carried one (or of a restored snapshot)."""
        return self._config_blob

    @property
    def auth(self) -> AuthState:
        """The auth state as of applied_index (kept in memory; the api reads it per request)."""
        return self._auth

    @property
    def leases(self) -> LeaseTable:
        """The lease table as of applied_index (in memory; read it, never change it)."""
        return self._leases

    # ---- applying slots --------------------------------------------------

    def apply(self, slots: Sequence[Slot], changes: list[RawChange] | None = None,
              write_in: Callable[[Callable[[], None]], None] | None = None) -> list[list[Result]]:
        """Apply slots atomically, together with the new applied index/term and config blob.

        Slots at or below applied_index are skipped (their result is []), so
        replaying the log after a restart changes nothing twice.  The others must
        follow applied_index without gaps.  Each slot gives one result per command;
        commands that do not decode are logged and give [].  The write is not
        synced: the Raft log is the source of truth.  Once the write is done, each
        effective put or delete is appended to ``changes`` as (key, revision, value),
        value None for a delete; a call that raises appends nothing.  ``write_in(write)``,
        when given, runs LevelDB's write (e.g. in a worker thread: LevelDB may hold a write
        back for a compaction, and plyvel lets other threads run meanwhile).
        """
        self._check_usable()
        batch = _ApplyBatch(self._db, self._applied_index, self._applied_term, self._config_blob,
                            self._auth, self._leases)
        results = [batch.apply_slot(slot) for slot in slots]
        if batch.index == self._applied_index:
            return results
        with _leveldb_errors("apply"):
            if write_in is None:
                batch.write()
            else:
                write_in(batch.write)
        self._applied_index, self._applied_term = batch.index, batch.term
        self._config_blob = batch.config_blob
        self._auth = batch.auth
        if changes is not None:
            changes.extend(batch.changes)
        return results

    # ---- reads -----------------------------------------------------------

    def get(self, key: str) -> tuple[str, int] | None:
        """The key's (value, revision), or None when absent."""
        self._check_usable()
        with _leveldb_errors("get"):
            raw = self._db.get(_data_key(key))
        return None if raw is None else _decode_stored(raw)

    def scan(self, prefix: str = "", after: str | None = None, limit: int = 100,
             max_bytes: int | None = None) -> tuple[list[tuple[str, str, int]], str | None]:
        """Keys with ``prefix``, greater than ``after``, in key order, at most ``limit``
        and at most ``max_bytes`` of them (``page_item_bytes``; a first item bigger than
        that comes alone, so that a reader always gets on).

        Returns (items, next): ``next`` is the last returned key when more remain
        (pass it as ``after`` to continue), else None.  A long scan lets other greenlets
        run every ``SCAN_YIELD_ITEMS`` items or ``SCAN_YIELD_BYTES`` bytes read.
        """
        self._check_usable()
        if type(limit) is not int or limit < 1:
            raise StoreError(f"scan limit must be a positive int, not {limit!r}")
        wanted = _data_key(prefix)
        start, include_start = wanted, True
        if after is not None and _data_key(after) >= wanted:
            start, include_start = _data_key(after), False
        items: list[tuple[str, str, int]] = []
        more = False
        budget = max_bytes if max_bytes is not None else float("inf")
        since_yield = 0
        with _leveldb_errors("scan"), self._db.iterator(start=start, include_start=include_start) as it:
            for raw_key, raw_value in it:
                if not raw_key.startswith(wanted):
                    break
                size = page_item_bytes(len(raw_key) - len(_DATA), len(raw_value))
                if len(items) == limit or (items and size > budget):
                    more = True
                    break
                budget -= size
                value, revision = _decode_stored(raw_value)
                items.append((_user_key(raw_key), value, revision))
                since_yield += size
                if since_yield >= SCAN_YIELD_BYTES or len(items) % SCAN_YIELD_ITEMS == 0:
                    since_yield = 0
                    # The iterator reads a snapshot of the data set, so other greenlets may
                    # write meanwhile; a long scan must not hold the loop the leader's
                    # heartbeats need.
                    bulk.pause()
        return items, (items[-1][0] if more else None)

    def count(self, prefix: str = "") -> int:
        """Number of keys with ``prefix`` (walks the keys, not the values)."""
        self._check_usable()
        with _leveldb_errors("count"):
            with self._db.iterator(prefix=_data_key(prefix), include_value=False, fill_cache=False) as it:
                return sum(1 for _ in it)

    def sync(self) -> None:
        """Make everything applied so far durable."""
        self._check_usable()
        with _leveldb_errors("sync"):
            # A synced write flushes LevelDB's log, and with it every earlier unsynced write.
            self._db.put(_APPLIED_KEY, _pack([self._applied_index, self._applied_term]), sync=True)

    # ---- snapshots -------------------------------------------------------

    def snapshot_reader(self, chunk_size: int = 1 << 20) -> tuple[Applied, SnapshotStream]:
        """Freeze the data set now: how far it goes, and a lazy stream of chunks of up to chunk_size bytes."""
        self._check_usable()
        if type(chunk_size) is not int or chunk_size < 1:
            raise StoreError(f"chunk_size must be a positive int, not {chunk_size!r}")
        with _leveldb_errors("snapshot"):
            snapshot = self._db.snapshot()
        try:
            index, term = _read_applied(snapshot)
            config_blob = snapshot.get(_CONFIG_KEY)
            header = {
                "format": _SNAPSHOT_FORMAT,
                "version": _SNAPSHOT_VERSION,
                "index": index,
                "term": term,
                "config": _unpack_config(config_blob),
            }
            auth_raw = snapshot.get(_AUTH_KEY)
            if auth_raw is not None:
                header["auth"] = msgpack.unpackb(auth_raw, raw=False)
        except BaseException:
            snapshot.close()
            raise
        return Applied(index, term, config_blob), SnapshotStream(snapshot, header, chunk_size)

    def restore(self, at: Applied, chunks: Iterable[bytes]) -> None:
        """Replace the whole data set with a snapshot stream's content.

        A header that does not match ``at`` (index, term, config blob) is rejected
        before anything is touched.  After that a durable marker is set first, so
        that a failure (bad record, checksum, truncation, crash) leaves an empty
        store at applied index 0 rather than a mix of old and new data.  Errors
        raised by ``chunks`` itself propagate (after the same cleanup).
        """
        self._check_usable()
        self._restoring = True
        try:
            self._restore(at, _StreamReader(chunks))
        finally:
            self._restoring = False

    def _restore(self, at: Applied, reader: _StreamReader) -> None:
        header = reader.next_object()
        _validate_header(header, at)
        auth = _auth_from(header.get("auth"))
        crc = zlib.crc32(_pack(header))
        with _leveldb_errors("restore"):
            self._db.put(_RESTORING_KEY, _pack([at.index, at.term]), sync=True)
        self._applied_index, self._applied_term, self._config_blob = 0, 0, None
        self._leases = LeaseTable()
        try:
            with _leveldb_errors("restore"):
                for prefix in (_DATA, _LEASE, _ATTACH):
                    _delete_prefix(self._db, prefix)
                leases = _write_records(self._db, reader, crc)
                _finish_restore(self._db, at, auth)
        except BaseException:
            self._cleanup_failed_restore()
            raise
        self._applied_index, self._applied_term, self._config_blob = at.index, at.term, at.config_blob
        self._auth = auth
        self._leases = leases

    def _cleanup_failed_restore(self) -> None:
        try:
            _reset_to_empty(self._db)
        except Exception:   # the durable marker still makes the next open() start empty
            log.exception("store %s: cleanup after a failed restore failed", self._path)

    # ---- helpers ---------------------------------------------------------

    def _check_usable(self) -> None:
        if self._db.closed:
            raise StoreError(f"store {self._path} is closed")
        if self._restoring:
            raise StoreError(f"store {self._path} is restoring a snapshot")


class _ApplyBatch:
    """One apply() call: its pending write batch, its changes, and the state as it will leave it."""

    def __init__(self, db: plyvel.DB, index: int, term: int, config_blob: bytes | None,
                 auth: AuthState, leases: LeaseTable) -> None:
        self._db = db
        self._writes = db.write_batch()
        # Later commands must see earlier ones' effects, which a write batch cannot show.
        self._pending: dict[bytes, tuple[str, int] | None] = {}
        self._config_changed = False
        self.auth, self._auth_changed = auth, False
        # Changed in place: after a failed write the driver reopens the store (or stops), and a
        # reopened store reads its lease table again from LevelDB.
        self.leases = leases
        self.changes: list[RawChange] = []
        self.index, self.term, self.config_blob = index, term, config_blob

    def apply_slot(self, slot: Slot) -> list[Result]:
        if slot.index <= self.index:
            return []
        if slot.index != self.index + 1:
            raise StoreError(f"entry {slot.index} does not follow applied index {self.index}")
        results = self._apply_commands(slot) if slot.commands else []
        if slot.config_blob is not None:
            self.config_blob, self._config_changed = slot.config_blob, True
        self.index, self.term = slot.index, slot.term
        return results

    def write(self) -> None:
        self._writes.put(_APPLIED_KEY, _pack([self.index, self.term]))
        if self._config_changed:
            self._writes.put(_CONFIG_KEY, self.config_blob)
        if self._auth_changed:
            self._writes.put(_AUTH_KEY, _pack(self.auth.to_obj()))
        self._writes.write()

    def _apply_commands(self, slot: Slot) -> list[Result]:
        try:
            commands = decode_commands(slot.commands)
        except CommandError as exc:
            log.error("entry %d holds undecodable commands (%s); skipped", slot.index, exc)
            return []
        return [self._apply_command(command, slot.index) for command in commands]

    def _apply_command(self, command: Any, index: int) -> Result:
        kind = type(command)   # puts and deletes first: nearly every command is one
        if kind is Put or kind is Delete:
            return self._apply_write(command, index)
        if kind is Txn:
            return self._apply_txn(command, index)
        if is_auth(command):
            self.auth, result = apply_auth(self.auth, command)
            self._auth_changed = self._auth_changed or result.ok
            return result
        if is_lease(command):
            return self._apply_lease(command, index)
        log.error("entry %d holds a %s, which the store cannot apply; skipped", index, kind.__name__)
        return Result(ok=False, key="", revision=index, error="unknown command")

    def _apply_write(self, command: Put | Delete, index: int) -> Result:
        lease = command.lease if type(command) is Put else 0
        if lease:
            refusal = self.leases.put_refusal(command)
            if refusal is not None:
                return Result(ok=False, key=command.key, error=refusal)
        key = _data_key(command.key)
        current = self._current(key) if reads_current(command) else None
        result = evaluate(command, current, index)
        if result.ok:
            self._write(command.key, command.value if type(command) is Put else None, index, lease, key)
        return result

    def _apply_txn(self, command: Txn, index: int) -> Result:
        refusal = self.leases.txn_refusal(command)
        if refusal is not None:
            return TxnResult(False, index, (), ok=False, error=refusal)
        result, writes = evaluate_txn(command, lambda user_key: self._current(_data_key(user_key)), index)
        leases = put_leases(command, result.succeeded)
        for user_key, value in writes:
            self._write(user_key, value, index, leases.get(user_key, 0))
        return result

    def _apply_lease(self, command: Any, index: int) -> Result:
        if isinstance(command, LeaseGrant):
            result = self.leases.grant(command, index)
            if result.ok:
                self._writes.put(_lease_key(command.lease_id), _pack(command.ttl))
            return result
        result, keys = self.leases.revoke(command, index)
        if result.ok:
            self._writes.delete(_lease_key(command.lease_id))
            for user_key in keys:
                self._writes.delete(_attach_key(command.lease_id, user_key))
                self._write(user_key, None, index)
        return result

    def _write(self, user_key: str, value: str | None, index: int, lease: int = 0,
               key: bytes | None = None) -> None:
        """Set (or, value None, delete) a key in the batch, visible to the batch's later commands;
        a set key takes ``lease`` (0: none) as its lease, a deleted one loses its lease.
        ``key``: the LevelDB key of user_key when the caller has it."""
        if value is None:
            lease = 0
        if lease or user_key in self.leases.owner:   # a key without a lease before or after: nothing to do
            before = self.leases.attach(user_key, lease)
            if before != lease:
                if before:
                    self._writes.delete(_attach_key(before, user_key))
                if lease:
                    self._writes.put(_attach_key(lease, user_key), b"")
        if key is None:
            key = _data_key(user_key)
        if value is None:
            self._pending[key] = None
            self._writes.delete(key)
        else:
            self._pending[key] = (value, index)
            self._writes.put(key, _pack([index, value]))
        self.changes.append((user_key, index, value))

    def _current(self, key: bytes) -> tuple[str, int] | None:
        if key in self._pending:
            return self._pending[key]
        with _leveldb_errors("apply"):
            raw = self._db.get(key)
        return None if raw is None else _decode_stored(raw)


class SnapshotStream(Iterator[bytes]):
    """Chunks of a snapshot stream, read lazily from a LevelDB snapshot it owns.

    The LevelDB snapshot is released when the stream is exhausted or closed.
    """

    def __init__(self, snapshot: Any, header: dict, chunk_size: int) -> None:
        self._snapshot = snapshot
        self._chunks: Iterator[bytes] | None = _snapshot_chunks(snapshot, header, chunk_size)

    def __iter__(self) -> SnapshotStream:
        return self

    def __next__(self) -> bytes:
        if self._chunks is None:
            raise StopIteration
        try:
            return next(self._chunks)
        except StopIteration:
            self.close()
            raise
        except RuntimeError as exc:   # plyvel's error once the database was closed under us
            self.close()
            raise StoreError(f"snapshot stream interrupted: {exc}") from exc

    def close(self) -> None:
        if self._chunks is not None:
            chunks, self._chunks = self._chunks, None
            # Either may raise once the database itself was closed, which released them anyway.
            with contextlib.suppress(RuntimeError):
                chunks.close()
            with contextlib.suppress(RuntimeError):
                self._snapshot.close()

    def count(self) -> int:
        """How many records the stream holds: a walk over the frozen keys (not their values)."""
        with _leveldb_errors("snapshot"), \
                self._snapshot.iterator(prefix=_DATA, include_value=False, fill_cache=False) as keys:
            return sum(1 for _ in keys)

    def __enter__(self) -> SnapshotStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


def _snapshot_chunks(snapshot: Any, header: dict, chunk_size: int) -> Iterator[bytes]:
    packer = msgpack.Packer(use_bin_type=True)
    buffer = bytearray(packer.pack(header))
    crc = zlib.crc32(buffer)
    count = 0
    # A bulk scan must not evict the read cache (nor grow the process by the cache's size).
    records = snapshot.iterator(prefix=_DATA, fill_cache=False)
    try:
        for keys, values in _record_blocks(records):
            block = packer.pack([keys, values])
            crc = zlib.crc32(block, crc)
            count += len(keys)
            buffer += packer.pack(block)   # as a bin object, so the receiver gets its exact bytes
            while len(buffer) >= chunk_size:
                yield bytes(buffer[:chunk_size])
                del buffer[:chunk_size]
    finally:
        records.close()
    for rows in _lease_pieces(_read_leases(snapshot)):
        piece = packer.pack(rows)
        crc = zlib.crc32(piece, crc)
        buffer += packer.pack([_LEASE_PIECE, piece])
        while len(buffer) >= chunk_size:
            yield bytes(buffer[:chunk_size])
            del buffer[:chunk_size]
    buffer += packer.pack({"end": True, "count": count, "crc": crc})
    while buffer:
        yield bytes(buffer[:chunk_size])
        del buffer[:chunk_size]


def _lease_pieces(table: LeaseTable) -> Iterator[list]:
    """The table's rows ([id, ttl, [key, ...]]) in id order, cut into pieces of about _BLOCK_BYTES."""
    rows: list = []
    size = 0
    for row in table.to_obj():
        rows.append(row)
        size += 32 + sum(len(key) for key in row[2])
        if size >= _BLOCK_BYTES:
            yield rows
            rows, size = [], 0
    if rows:
        yield rows


def _record_blocks(records: Iterable[tuple[bytes, bytes]]) -> Iterator[tuple[list[bytes], list[bytes]]]:
    """(keys, values) lists of at most _BLOCK_RECORDS records and about _BLOCK_BYTES.

    The byte budget is counted record by record (a few cheap operations each):
    a fixed number of records per block would let large values make a block too
    big to keep in memory, or for a restore to accept (_MAX_FRAME).
    """
    keys: list[bytes] = []
    values: list[bytes] = []
    size = 0
    for key, value in records:
        keys.append(key)
        values.append(value)
        size += len(key) + len(value)
        if size >= _BLOCK_BYTES or len(keys) == _BLOCK_RECORDS:
            yield keys, values
            keys, values, size = [], [], 0
    if keys:
        yield keys, values


class _StreamReader:
    """msgpack objects out of a chunk iterable, fed in bounded slices."""

    _END = object()

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._pending = memoryview(b"")
        self._fed = 0
        self._unpacker = msgpack.Unpacker(raw=False, use_list=True, strict_map_key=True,
                                          max_buffer_size=_MAX_FRAME + _FEED_SLICE)

    def next_object(self) -> Any:
        """The next object; StoreError when the stream ends first."""
        obj = self._next_or_end()
        if obj is self._END:
            raise StoreError("snapshot stream is truncated")
        return obj

    def expect_end(self) -> None:
        if self._next_or_end() is not self._END or self._unpacker.tell() != self._fed:
            raise StoreError("snapshot stream has data after its trailer")

    def _next_or_end(self) -> Any:
        while True:
            try:
                return next(self._unpacker)
            except StopIteration:
                pass
            except Exception as exc:   # msgpack's FormatError, StackError, UnicodeDecodeError, BufferFull...
                raise StoreError(f"snapshot stream is corrupt: {exc}") from exc
            if not self._feed():
                return self._END

    def _feed(self) -> bool:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return False
            if not isinstance(chunk, (bytes, bytearray, memoryview)):
                raise StoreError(f"snapshot chunk must be bytes, not {type(chunk).__name__}")
            self._pending = memoryview(chunk).cast("B")
        piece, self._pending = self._pending[:_FEED_SLICE], self._pending[_FEED_SLICE:]
        self._unpacker.feed(piece)
        self._fed += len(piece)
        return True


def _validate_header(header: Any, at: Applied) -> None:
    if not isinstance(header, dict) or header.get("format") != _SNAPSHOT_FORMAT:
        raise StoreError("snapshot stream has no Axon snapshot header")
    if header.get("version") != _SNAPSHOT_VERSION:
        raise StoreError(f"snapshot stream version {header.get('version')!r} is not supported")
    index, term = header.get("index"), header.get("term")
    if (index, term) != (at.index, at.term) or type(index) is not int or type(term) is not int:
        raise StoreError(f"snapshot stream is at index {index!r} term {term!r}, "
                         f"but its meta says index {at.index} term {at.term}")
    # The header holds the sender's blob unpacked; packing it again gives back the bytes
    # of a blob the state machine encoded, so equal configs compare equal as bytes.
    config = header.get("config")
    if (None if config is None else _pack(config)) != at.config_blob:
        raise StoreError("snapshot stream's config does not match its meta")


def _write_records(db: plyvel.DB, reader: _StreamReader, crc: int) -> LeaseTable:
    """Write the stream's blocks, then its lease pieces, in bounded batches; check the trailer
    and the stream's end; returns the lease table."""
    count, last_key = 0, b""
    writes, batch_bytes, batch_records = db.write_batch(), 0, 0
    while isinstance(obj := reader.next_object(), bytes):
        crc = zlib.crc32(obj, crc)
        keys, values = _decode_block(obj, count, last_key)
        for key, value in zip(keys, values):
            writes.put(key, value)
        count, last_key = count + len(keys), keys[-1]
        # Checked per block: batches hold at most one block more than the limits.
        batch_bytes, batch_records = batch_bytes + len(obj), batch_records + len(keys)
        if batch_bytes >= _BATCH_BYTES or batch_records >= _BATCH_RECORDS:
            writes.write()
            writes, batch_bytes, batch_records = db.write_batch(), 0, 0
    writes.write()
    leases = LeaseTable()
    while isinstance(obj, list):
        if len(obj) != 2 or obj[0] != _LEASE_PIECE or not isinstance(obj[1], bytes):
            raise StoreError("snapshot stream holds a malformed lease piece")
        crc = zlib.crc32(obj[1], crc)
        _write_lease_piece(db, obj[1], leases)
        obj = reader.next_object()
    if not isinstance(obj, dict):
        raise StoreError(f"snapshot stream holds a {type(obj).__name__} after record {count}, "
                         f"not a block, a lease piece or its trailer")
    _check_trailer(obj, count, crc)
    reader.expect_end()
    return leases


def _write_lease_piece(db: plyvel.DB, piece: bytes, leases: LeaseTable) -> None:
    """Add a lease piece's rows to ``leases`` (checked as LeaseTable.add_rows does) and write them."""
    try:
        rows = msgpack.unpackb(piece, raw=False, use_list=True, max_array_len=max(_BLOCK_RECORDS, MAX_LEASE_KEYS))
        leases.add_rows(rows)
    except Exception as exc:   # msgpack's errors, and add_rows' ValueError
        raise StoreError(f"snapshot stream holds a corrupt lease piece: {exc}") from exc
    with db.write_batch() as writes:
        for lease_id, ttl, keys in rows:
            writes.put(_lease_key(lease_id), _pack(ttl))
            for user_key in keys:
                writes.put(_attach_key(lease_id, user_key), b"")


def _decode_block(block: bytes, first: int, last_key: bytes) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    """A block's (keys, values), checked as _check_keys and _check_values say.

    ``first`` is the number of records before it, ``last_key`` the key they ended with.
    """
    where = f"snapshot block at record {first}"
    try:
        # max_array_len bounds what a hostile block can make us allocate.
        decoded = msgpack.unpackb(block, use_list=False, max_array_len=_BLOCK_RECORDS)
    except Exception as exc:   # msgpack's FormatError, ExtraData, StackError, ValueError...
        raise StoreError(f"{where} is corrupt: {exc}") from exc
    if (type(decoded) is not tuple or len(decoded) != 2 or type(decoded[0]) is not tuple
            or type(decoded[1]) is not tuple or not decoded[0] or len(decoded[0]) != len(decoded[1])):
        raise StoreError(f"{where} is malformed")
    keys, values = decoded
    _check_keys(keys, last_key, where)
    _check_values(values, where)
    return keys, values


def _check_keys(keys: tuple, last_key: bytes, where: str) -> None:
    """Data keys, valid utf-8 after the prefix, increasing from ``last_key`` on (one C-level pass each)."""
    if set(map(type, keys)) != {bytes}:
        raise StoreError(f"{where} holds a key that is not bytes")
    if keys[0] <= last_key or not all(map(bytes.__lt__, keys, keys[1:])):
        raise StoreError(f"{where} is out of key order")
    # Keys with a given prefix form one range of the key order, so once the keys
    # increase, a prefix on the first and on the last one is a prefix on each.
    if not (keys[0].startswith(_DATA) and keys[-1].startswith(_DATA)):
        raise StoreError(f"{where} holds a key without the data prefix")
    try:
        # A NUL between keys is not part of any multi-byte sequence, so the joined
        # bytes decode exactly when every key does (scan() decodes them later).
        b"\x00".join(keys).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StoreError(f"{where} holds a key that is not utf-8: {exc}") from exc


def _check_values(values: tuple, where: str) -> None:
    """Each value decodes alone, as get() and scan() will decode it, to [revision >= 0, str]."""
    if set(map(type, values)) != {bytes}:
        raise StoreError(f"{where} holds a value that is not bytes")
    try:
        # One unpackb per value (a C-level loop): unlike one Unpacker over all of
        # them, it also rejects a value that is only part of an object, or more.
        decoded = list(map(msgpack.unpackb, values))
    except Exception as exc:   # msgpack's FormatError, ExtraData, StackError, UnicodeDecodeError...
        raise StoreError(f"{where} holds a corrupt value: {exc}") from exc
    if set(map(type, decoded)) != {list} or set(map(len, decoded)) != {2}:
        raise StoreError(f"{where} holds a value that is not [revision, value]")
    revisions, texts = zip(*decoded)
    # type() is exact, so a bool is no revision; min() is safe once all are ints.
    if set(map(type, revisions)) != {int} or min(revisions) < 0 or set(map(type, texts)) != {str}:
        raise StoreError(f"{where} holds a value that is not [revision, value]")


def _check_trailer(trailer: dict, count: int, crc: int) -> None:
    if trailer.get("end") is not True:
        raise StoreError("snapshot stream has a malformed trailer")
    if trailer.get("count") != count:
        raise StoreError(f"snapshot stream holds {count} records, its trailer says {trailer.get('count')!r}")
    if trailer.get("crc") != crc:
        raise StoreError("snapshot stream checksum mismatch")


def _finish_restore(db: plyvel.DB, at: Applied, auth: AuthState) -> None:
    with db.write_batch(sync=True) as writes:
        writes.put(_APPLIED_KEY, _pack([at.index, at.term]))
        writes.put(_AUTH_KEY, _pack(auth.to_obj()))
        if at.config_blob is None:
            writes.delete(_CONFIG_KEY)
        else:
            writes.put(_CONFIG_KEY, at.config_blob)
        writes.delete(_RESTORING_KEY)


def _reset_to_empty(db: plyvel.DB) -> None:
    """Empty data set at applied index 0; clears a restore marker last."""
    _delete_data(db)
    _delete_prefix(db, _LEASE)
    _delete_prefix(db, _ATTACH)
    with db.write_batch(sync=True) as writes:
        writes.delete(_APPLIED_KEY)
        writes.delete(_CONFIG_KEY)
        writes.delete(_AUTH_KEY)
        writes.delete(_RESTORING_KEY)


def _delete_data(db: plyvel.DB) -> None:
    """Delete every data key, in bounded batches."""
    _delete_prefix(db, _DATA)


def _delete_prefix(db: plyvel.DB, prefix: bytes) -> None:
    """Delete every key with ``prefix``, in bounded batches."""
    writes, pending = db.write_batch(), 0
    with db.iterator(prefix=prefix, include_value=False, fill_cache=False) as keys:
        for raw_key in keys:
            writes.delete(raw_key)
            pending += 1
            if pending >= _BATCH_RECORDS:
                writes.write()
                writes, pending = db.write_batch(), 0
    writes.write()


# ---- opening -------------------------------------------------------------

def _check_store_dir(path: str) -> None:
    if not os.path.exists(path):
        return
    if not os.path.isdir(path):
        raise StoreError(f"data dir {path} is not a directory")
    entries = os.listdir(path)
    if entries and "CURRENT" not in entries:
        raise StoreError(f"data dir {path} is not an Axon store (not empty, no LevelDB database in it)")


def _open_leveldb(path: str) -> plyvel.DB:
    try:
        return plyvel.DB(path, create_if_missing=True, **_DB_OPTIONS)
    except plyvel.IOError as exc:
        if "lock" in str(exc).lower():
            raise StoreError(f"data dir {path} is in use: its LevelDB lock is held "
                             f"(another process, or this one, has it open)") from exc
        raise StoreError(f"cannot open data dir {path}: {exc}") from exc
    except plyvel.Error as exc:
        raise StoreError(f"cannot open data dir {path}: {exc}") from exc


def _check_or_stamp_format(db: plyvel.DB, path: str) -> None:
    stamp = db.get(_FORMAT_KEY)
    if stamp == _FORMAT:
        return
    if stamp is not None:
        raise StoreError(f"data dir {path} has unsupported store format {stamp!r}")
    with db.iterator(include_value=False) as keys:
        if next(keys, None) is not None:
            raise StoreError(f"data dir {path} is not an Axon store (a LevelDB database without its marker)")
    db.put(_FORMAT_KEY, _FORMAT, sync=True)


def _read_applied(source: Any) -> tuple[int, int]:
    raw = source.get(_APPLIED_KEY)
    if raw is None:
        return 0, 0
    try:
        index, term = msgpack.unpackb(raw)
    except Exception as exc:
        raise StoreError(f"store meta is corrupt (applied index): {exc}") from exc
    return index, term


def _read_auth(db: plyvel.DB) -> AuthState:
    raw = db.get(_AUTH_KEY)
    return _auth_from(None if raw is None else msgpack.unpackb(raw, raw=False))


def _read_leases(source: Any) -> LeaseTable:
    """The lease table of a database or LevelDB snapshot: its lease records, then its attachments."""
    table = LeaseTable()
    try:
        with source.iterator(prefix=_LEASE) as records:
            for raw_key, raw in records:
                table.load(int.from_bytes(raw_key[len(_LEASE):], "big"), msgpack.unpackb(raw), ())
        with source.iterator(prefix=_ATTACH, include_value=False) as attachments:
            for raw_key in attachments:
                lease_id = int.from_bytes(raw_key[len(_ATTACH):len(_ATTACH) + 8], "big")
                if table.get(lease_id) is None:
                    raise ValueError(f"a key is attached to lease {lease_id}, which does not exist")
                table.load(lease_id, 0, [raw_key[len(_ATTACH) + 8:].decode("utf-8")])
    except (ValueError, TypeError) as exc:   # includes msgpack's and utf-8's errors
        raise StoreError(f"lease records are corrupt: {exc}") from exc
    return table


def _lease_key(lease_id: int) -> bytes:
    return _LEASE + lease_id.to_bytes(8, "big")


def _attach_key(lease_id: int, user_key: str) -> bytes:
    return _ATTACH + lease_id.to_bytes(8, "big") + user_key.encode("utf-8")


def _auth_from(obj: Any) -> AuthState:
    try:
        return AuthState.from_obj(obj)
    except ValueError as exc:
        raise StoreError(f"auth state is corrupt: {exc}") from exc


def _unpack_config(blob: bytes | None) -> Any:
    """The config blob's msgpack object, for a snapshot header (None without a blob)."""
    if blob is None:
        return None
    try:
        return msgpack.unpackb(blob, raw=False)
    except Exception as exc:   # msgpack's FormatError, ExtraData, UnicodeDecodeError...
        raise StoreError(f"store meta is corrupt (config): {exc}") from exc


# ---- encoding helpers ----------------------------------------------------

def _pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def _data_key(key: str) -> bytes:
    if not isinstance(key, str):
        raise StoreError(f"key must be a string, not {type(key).__name__}")
    try:
        return _DATA + key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise StoreError(f"key is not valid unicode: {exc}") from exc


def _user_key(raw_key: bytes) -> str:
    return raw_key[len(_DATA):].decode("utf-8")


def _decode_stored(raw: bytes) -> tuple[str, int]:
    """Stored [revision, value] -> (value, revision)."""
    try:
        revision, value = msgpack.unpackb(raw, raw=False)
    except Exception as exc:
        raise StoreError(f"stored record is corrupt: {exc}") from exc
    return value, revision


@contextlib.contextmanager
def _leveldb_errors(action: str) -> Iterator[None]:
    """LevelDB failures (I/O, corruption, closed database) -> StoreError."""
    try:
        yield
    except plyvel.Error as exc:
        raise StoreError(f"{action} failed: {exc}") from exc
    except RuntimeError as exc:   # plyvel raises RuntimeError on a closed database
        raise StoreError(f"{action} failed: {exc}") from exc

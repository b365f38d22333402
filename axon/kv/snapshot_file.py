"""The backup file format: a header, the store's own snapshot stream in frames, a SHA-256.

Layout (integers big-endian):

    b"AXONSNAP"                  magic
    u16 format version           FILE_VERSION
    u32 n, n bytes               the header: UTF-8 JSON (``SnapshotHeader``)
    u32 n, n bytes  (n > 0)      frames: the store's snapshot stream (axon/kv/store.py), cut anywhere
    u32 0                        the end of the frames
    32 bytes                     SHA-256 of every byte before it

The store's stream is the very stream Raft sends a follower that fell behind, so a backup
holds what a follower would get: keys, values, revisions, the auth state and whatever else
the store puts in its snapshot.  The header repeats what a restore must know before the
stream starts (where it stands, the config blob the stream's own header must match).

Pure bytes in, bytes out: the node produces with ``encode_header`` and ``frame``/``trailer``,
the CLI checks a download and a restore reads a file with ``SnapshotFileReader``.
"""
from __future__ import annotations

import base64
import hashlib
import json
import struct
from dataclasses import asdict, dataclass
from typing import BinaryIO, Iterable, Iterator

MAGIC = b"AXONSNAP"
FILE_VERSION = 1
MAX_HEADER_BYTES = 64 << 10
MAX_FRAME_BYTES = 16 << 20       # the node sends 1 MiB frames; more is damage, not data
DIGEST_BYTES = hashlib.sha256().digest_size
_VERSION = struct.Struct(">H")
_LENGTH = struct.Struct(">I")
READ_BYTES = 1 << 20


class SnapshotFileError(Exception):
    """The file is not a whole, undamaged Axon snapshot; the message says so in one line."""


@dataclass(frozen=True)
class SnapshotHeader:
    """What a snapshot holds and where its data set stands."""
    cluster_id: str | None        # the cluster it was saved from (a restore makes a new one)
    node_id: str                  # the node that streamed it
    revision: int                 # the store's applied index: the revision the data set is at
    applied_term: int
    keys: int                     # records in the stream (a restore checks the count it writes)
    config_blob: bytes | None     # the store's config blob the stream's header must match
    created: str                  # ISO 8601 UTC time the snapshot was taken

    def to_json(self) -> dict:
        """The header as a JSON object (the config blob in base64)."""
        obj = asdict(self)
        obj["config_blob"] = None if self.config_blob is None else base64.b64encode(self.config_blob).decode()
        return obj

    @classmethod
    def from_json(cls, obj: object) -> SnapshotHeader:
        """The header of a JSON object; SnapshotFileError when a field is missing or of a wrong type."""
        if not isinstance(obj, dict):
            raise SnapshotFileError("damaged snapshot file: its header is not a JSON object")
        try:
            blob = obj["config_blob"]
            header = cls(cluster_id=obj["cluster_id"], node_id=obj["node_id"], revision=obj["revision"],
                         applied_term=obj["applied_term"], keys=obj["keys"],
                         config_blob=None if blob is None else base64.b64decode(blob, validate=True),
                         created=obj["created"])
        except (KeyError, TypeError, ValueError) as exc:
            raise SnapshotFileError(f"damaged snapshot file: bad header ({exc})") from None
        ints = (header.revision, header.applied_term, header.keys)
        if any(type(n) is not int or n < 0 for n in ints) or not isinstance(header.node_id, str) \
                or not isinstance(header.created, str) \
                or not (header.cluster_id is None or isinstance(header.cluster_id, str)):
            raise SnapshotFileError("damaged snapshot file: bad header fields")
        return header


def encode_header(header: SnapshotHeader) -> bytes:
    """The file's first bytes: magic, version and the header."""
    data = json.dumps(header.to_json(), sort_keys=True).encode()
    return MAGIC + _VERSION.pack(FILE_VERSION) + _LENGTH.pack(len(data)) + data


def frame(chunk: bytes) -> bytes:
    """One frame of the store's stream (a chunk must not be empty: an empty frame ends them)."""
    if not chunk or len(chunk) > MAX_FRAME_BYTES:
        raise ValueError(f"a frame holds 1 to {MAX_FRAME_BYTES} bytes, not {len(chunk)}")
    return _LENGTH.pack(len(chunk)) + chunk


def trailer(digest: hashlib._Hash) -> bytes:
    """The end of the frames and the SHA-256 of everything before it (``digest`` has seen it all
    but these last bytes)."""
    end = _LENGTH.pack(0)
    digest.update(end)
    return end + digest.digest()


class SnapshotFileReader:
    """Reads a snapshot file from ``source`` (anything with ``read(n)``: a file, an HTTP answer).

    The header is read and checked at once; ``chunks()`` then yields the store's stream and,
    at its end, checks the SHA-256 and that nothing follows.  Every failure is one
    SnapshotFileError line, so a truncated or altered file is refused, never half-used.
    """

    def __init__(self, source: BinaryIO) -> None:
        self._source = source
        self._digest = hashlib.sha256()
        self.offset = 0                 # bytes read so far
        magic = self._read(len(MAGIC), "its start")
        if magic != MAGIC:
            raise SnapshotFileError("not an Axon snapshot file (wrong magic bytes)")
        (version,) = _VERSION.unpack(self._read(_VERSION.size, "its version"))
        if version != FILE_VERSION:
            raise SnapshotFileError(f"snapshot file format version {version} is not supported "
                                    f"(this Axon reads version {FILE_VERSION})")
        size = self._length("its header")
        if size > MAX_HEADER_BYTES:
            raise SnapshotFileError(f"damaged snapshot file: header length {size} is over {MAX_HEADER_BYTES}")
        try:
            obj = json.loads(self._read(size, "its header"))
        except ValueError:
            raise SnapshotFileError("damaged snapshot file: its header is not JSON") from None
        self.header = SnapshotHeader.from_json(obj)

    def chunks(self) -> Iterator[bytes]:
        """The store's snapshot stream, frame by frame; the checksum is checked after the last."""
        while size := self._length("a frame"):
            if size > MAX_FRAME_BYTES:
                raise SnapshotFileError(f"damaged snapshot file: frame length {size} at byte "
                                        f"{self.offset - _LENGTH.size} is over {MAX_FRAME_BYTES}")
            yield self._read(size, "a frame")
        expected = self._digest.digest()
        stored = self._read_raw(DIGEST_BYTES, "its checksum")
        if stored != expected:
            raise SnapshotFileError("damaged snapshot file: SHA-256 checksum mismatch")
        if self._source.read(1):
            raise SnapshotFileError(f"damaged snapshot file: data after its checksum at byte {self.offset}")

    def verify(self) -> int:
        """Read the rest, checking everything; returns the size of the file."""
        for _ in self.chunks():
            pass
        return self.offset

    def _length(self, what: str) -> int:
        return _LENGTH.unpack(self._read(_LENGTH.size, what))[0]

    def _read(self, n: int, what: str) -> bytes:
        data = self._read_raw(n, what)
        self._digest.update(data)
        return data

    def _read_raw(self, n: int, what: str) -> bytes:
        parts, missing = [], n
        while missing:
            part = self._source.read(min(missing, READ_BYTES))
            if not part:
                raise SnapshotFileError(f"truncated snapshot file: it ends at byte {self.offset + n - missing} "
                                        f"in {what}")
            parts.append(part)
            missing -= len(part)
        self.offset += n
        return parts[0] if len(parts) == 1 else b"".join(parts)


def file_chunks(header: SnapshotHeader, stream: Iterable[bytes]) -> Iterator[bytes]:
    """The whole file as pieces: the header, a frame per chunk of ``stream``, the trailer."""
    digest = hashlib.sha256()
    head = encode_header(header)
    digest.update(head)
    yield head
    for chunk in stream:
        piece = frame(chunk)
        digest.update(piece)
        yield piece
    yield trailer(digest)

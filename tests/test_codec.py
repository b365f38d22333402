"""Tests for the Raft wire codec: message roundtrips, strict decoding, framing."""
from __future__ import annotations

import random

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from axon.raft.codec import (PROTOCOL_VERSION, CodecError, FrameDecoder, decode_message,
                             encode_frame, encode_message)
from axon.raft.types import (ClusterConfig, Entry, EntryKind, Member, Message, MsgType,
                             SnapshotMeta)

U64 = st.integers(min_value=0, max_value=2**64 - 1)
IDS = st.text(max_size=20)
SMALL_BYTES = st.binary(max_size=64)

members = st.builds(Member, raft=IDS, http=IDS)
configs = st.builds(ClusterConfig,
                    voters=st.dictionaries(IDS, members, max_size=4),
                    learners=st.dictionaries(IDS, members, max_size=3))
snapshots = st.builds(SnapshotMeta, index=U64, term=U64, config=configs)
entries = st.builds(Entry, index=U64, term=U64, kind=st.sampled_from(EntryKind), data=SMALL_BYTES)
messages = st.builds(
    Message,
    type=st.sampled_from(MsgType), src=IDS, dst=IDS, term=U64, index=U64, log_term=U64,
    entries=st.lists(entries, max_size=5).map(tuple), commit=U64, reject=st.booleans(),
    reject_hint=U64, context=SMALL_BYTES, snapshot=st.none() | snapshots, offset=U64,
    data=SMALL_BYTES, done=st.booleans(),
)


def full_message(mtype: MsgType) -> Message:
    """A message of ``mtype`` with every field set away from its default."""
    config = ClusterConfig(voters={"n1": Member("127.0.0.1:7001", "127.0.0.1:8001"),
                                   "n2": Member("127.0.0.1:7002", "127.0.0.1:8002")},
                           learners={"n3": Member("127.0.0.1:7003", "127.0.0.1:8003")})
    return Message(
        type=mtype, src="n1", dst="n2", term=7, index=42, log_term=6,
        entries=(Entry(41, 6, EntryKind.NORMAL, b"put k v"), Entry(42, 7, EntryKind.NOOP),
                 Entry(43, 7, EntryKind.CONFIG, msgpack.packb({"voters": {}}))),
        commit=40, reject=True, reject_hint=12, context=b"transfer",
        snapshot=SnapshotMeta(index=30, term=5, config=config), offset=1024,
        data=b"\x00\xff" * 100, done=True,
    )


def raw_fields(msg: Message) -> list:
    return msgpack.unpackb(encode_message(msg), raw=False)


def repack(fields: list) -> bytes:
    return msgpack.packb(fields, use_bin_type=True)


# ---------------------------------------------------------------- roundtrips

@pytest.mark.parametrize("mtype", list(MsgType))
def test_roundtrip_every_type_with_all_fields(mtype: MsgType) -> None:
    msg = full_message(mtype)
    decoded = decode_message(encode_message(msg))
    assert decoded == msg
    assert decoded.snapshot.config.voters["n2"].http == "127.0.0.1:8002"
    assert isinstance(decoded.type, MsgType)
    assert all(isinstance(e.kind, EntryKind) for e in decoded.entries)


@pytest.mark.parametrize("mtype", list(MsgType))
def test_roundtrip_defaults(mtype: MsgType) -> None:
    msg = Message(type=mtype, src="a", dst="b", term=1)
    assert decode_message(encode_message(msg)) == msg


@given(messages)
@settings(max_examples=300, deadline=None)
def test_roundtrip_property(msg: Message) -> None:
    assert decode_message(encode_message(msg)) == msg


def test_encoding_is_compact() -> None:
    heartbeat = Message(MsgType.HEARTBEAT, "n1", "n2", term=3, commit=10)
    assert len(encode_message(heartbeat)) < 40


def test_big_data_roundtrip() -> None:
    chunk = random.Random(1).randbytes(1 << 20)
    msg = Message(MsgType.SNAPSHOT, "n1", "n2", 3, snapshot=SnapshotMeta(9, 3), data=chunk)
    assert decode_message(encode_message(msg)).data == chunk


# ---------------------------------------------------------------- encode rejects bad messages

@pytest.mark.parametrize("bad", [
    Message(MsgType.APPEND, "n1", "n2", term=-1),
    Message(MsgType.APPEND, "n1", "n2", term=2**64),
    Message(MsgType.APPEND, "n1", 5, term=1),                     # type: ignore[arg-type]
    Message(MsgType.APPEND, "n1", "n2", term=1, data="text"),     # type: ignore[arg-type]
    Message(MsgType.APPEND, "n1", "n2", term=1, entries=("x",)),  # type: ignore[arg-type]
    Message(99, "n1", "n2", term=1),                              # type: ignore[arg-type]
    Message(MsgType.APPEND, "n1", "n2", term=1, reject=1),        # type: ignore[arg-type]
    Message(MsgType.SNAPSHOT, "n1", "n2", term=1, snapshot="meta"),  # type: ignore[arg-type]
])
def test_encode_rejects_invalid_fields(bad: Message) -> None:
    with pytest.raises(CodecError):
        encode_message(bad)


# ---------------------------------------------------------------- strict decoding

def mutate(index: int, value) -> bytes:
    fields = raw_fields(full_message(MsgType.APPEND))
    fields[index] = value
    return repack(fields)


@pytest.mark.parametrize("payload", [
    b"",
    b"\xc1",                                          # reserved msgpack byte
    msgpack.packb({"type": 1}),                       # map instead of array
    msgpack.packb([]),
    msgpack.packb([PROTOCOL_VERSION + 1] + [0] * 15),  # future version
    msgpack.packb([True] + [0] * 15),                 # bool is not a version
    repack(raw_fields(full_message(MsgType.APPEND))[:-1]),         # missing field
    repack(raw_fields(full_message(MsgType.APPEND)) + [0]),        # extra field
    encode_message(full_message(MsgType.VOTE)) + b"\x00",          # trailing bytes
    mutate(1, 0), mutate(1, 12), mutate(1, "1"),                   # unknown/bad type
    mutate(2, b"n1"), mutate(3, None), mutate(2, "x" * 5000),      # bad ids
    mutate(4, -1), mutate(4, -2**63), mutate(4, 1.5), mutate(4, True),
    mutate(7, {}), mutate(7, [[1, 2, 3]]), mutate(7, [[1, 2, 7, b""]]), mutate(7, [[1, 2, 0, "s"]]),
    mutate(9, 0), mutate(15, None),                                 # bools must be bools
    mutate(11, "text"), mutate(14, 3),                              # bytes must be bytes
    mutate(12, [1, 2]), mutate(12, [1, 2, {"other": {}}]), mutate(12, [1, 2, {"voters": []}]),
    mutate(12, [1, 2, {"voters": {"n1": ["a"]}}]), mutate(12, [1, 2, {"voters": {"n1": [1, 2]}}]),
    msgpack.packb([PROTOCOL_VERSION, 1, "a", "b", 1, 0, 0, [], 0, False, 0,
                   msgpack.ExtType(5, b"x"), None, 0, b"", False]),  # ext type
    b"\xdd\xff\xff\xff\xff",                          # array32 claiming 4G items, truncated
    b"\x91" * 100000,                                 # deeply nested arrays
    b"\x9f\xa2\xff\xfe",                              # invalid utf-8 string
])
def test_decode_rejects_malformed(payload: bytes) -> None:
    with pytest.raises(CodecError):
        decode_message(payload)


def test_decode_rejects_non_bytes() -> None:
    with pytest.raises(CodecError):
        decode_message("not bytes")  # type: ignore[arg-type]


@pytest.mark.parametrize("mtype", list(MsgType))
def test_every_truncation_raises_codec_error(mtype: MsgType) -> None:
    payload = encode_message(full_message(mtype))
    for cut in range(len(payload)):
        with pytest.raises(CodecError):
            decode_message(payload[:cut])


@given(st.binary(max_size=512))
@settings(max_examples=1000, deadline=None)
def test_fuzz_random_bytes_only_codec_error(payload: bytes) -> None:
    try:
        decode_message(payload)
    except CodecError:
        pass


@given(st.data())
@settings(max_examples=300, deadline=None)
def test_fuzz_bit_flips_only_codec_error(data) -> None:
    payload = bytearray(encode_message(data.draw(messages)))
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(payload) - 1))
        payload[position] ^= data.draw(st.integers(1, 255))
    try:
        result = decode_message(bytes(payload))
    except CodecError:
        return
    assert isinstance(result, Message)


# ---------------------------------------------------------------- framing

def test_frame_roundtrip_at_every_split_point() -> None:
    payloads = [b"", b"a", b"hello world", bytes(range(256)) * 3, b""]
    stream = b"".join(encode_frame(p) for p in payloads)
    for split in range(len(stream) + 1):
        decoder = FrameDecoder()
        got = decoder.feed(stream[:split]) + decoder.feed(stream[split:])
        assert got == payloads, split
        assert decoder.buffered == 0


def test_frame_decoder_byte_by_byte() -> None:
    payloads = [encode_message(full_message(t)) for t in MsgType]
    stream = b"".join(encode_frame(p) for p in payloads)
    decoder = FrameDecoder()
    got = []
    for i in range(len(stream)):
        got.extend(decoder.feed(stream[i:i + 1]))
    assert [decode_message(p) for p in got] == [full_message(t) for t in MsgType]


@given(st.lists(st.binary(max_size=300), max_size=8), st.lists(st.integers(1, 400), max_size=20))
@settings(max_examples=200, deadline=None)
def test_frame_decoder_arbitrary_chunking(payloads: list[bytes], sizes: list[int]) -> None:
    stream = b"".join(encode_frame(p) for p in payloads)
    decoder = FrameDecoder()
    got, pos = [], 0
    for size in sizes:
        got.extend(decoder.feed(stream[pos:pos + size]))
        pos = min(pos + size, len(stream))
        # what was fed and is not yet in a returned payload, header bytes included
        assert decoder.buffered == pos - sum(len(encode_frame(p)) for p in got)
    got.extend(decoder.feed(stream[pos:]))
    assert got == payloads
    assert decoder.buffered == 0


def test_frame_header_is_big_endian_u32() -> None:
    assert encode_frame(b"abc") == b"\x00\x00\x00\x03abc"


def test_frame_decoder_rejects_oversized_length() -> None:
    decoder = FrameDecoder(max_frame=100)
    assert decoder.feed(encode_frame(b"x" * 100)) == [b"x" * 100]
    with pytest.raises(CodecError):
        decoder.feed(b"\x00\x00\x00\x65")  # 101 > 100, rejected before the body arrives


def test_frame_decoder_default_limit_is_64_mib() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"\x04\x00\x00\x00") == []  # exactly 64 MiB is allowed
    with pytest.raises(CodecError):
        FrameDecoder().feed(b"\x04\x00\x00\x01")

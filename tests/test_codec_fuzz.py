"""Both peer codecs against generated input: the Raft frame codec (axon/raft/codec.py, with the
sealed channel of axon/security/channel.py around it) and the gossip packet codec
(axon/gossip/codec.py).

Valid messages round-trip whatever the split of the byte stream; arbitrary bytes, mutated
valid frames and well-formed msgpack of the wrong shape decode to a value or raise the
codec's own error (raft's CodecError, gossip's CodecError with a drop reason, the channel's
ChannelError), never anything else.  tests/test_codec.py holds the example-based Raft tests
and tests/test_wire_fuzz.py the same kind of fuzz for the HTTP parser.
"""
from __future__ import annotations

import math

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from axon.gossip import codec as gossip
from axon.gossip.crypto import Cipher
from axon.gossip.errors import CodecError as GossipCodecError
from axon.raft.codec import CodecError, FrameDecoder, decode_message, encode_frame, encode_message
from axon.raft.types import ClusterConfig, Entry, EntryKind, Member, Message, MsgType, SnapshotMeta
from axon.security.channel import ChannelError, FrameOpener, FrameSealer

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
GOSSIP_MAX = 64 * 1024
GOSSIP_KEY = bytes(range(32))
DROP_REASONS = {"oversized", "truncated", "foreign", "version", "malformed", "encrypted", "unencrypted",
                "decrypt"}

pytestmark = pytest.mark.timeout(120)   # a decoder that loops fails the file instead of blocking CI

# ---------------------------------------------------------------- any msgpack value

scalars = (st.none() | st.booleans() | st.integers(-(1 << 63), (1 << 64) - 1)
           | st.floats(allow_nan=False) | st.text(max_size=12) | st.binary(max_size=12))
packable = st.recursive(scalars, lambda inner: st.lists(inner, max_size=5)
                        | st.dictionaries(st.text(max_size=6) | st.binary(max_size=4), inner, max_size=4),
                        max_leaves=20)


def mutate(data: bytes, draw: st.DrawFn) -> bytes:
    """``data`` with a few bytes replaced, inserted or dropped."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(out)))
        kind = draw(st.sampled_from(["replace", "insert", "drop", "flip"]))
        if kind == "drop":
            del out[at:at + draw(st.integers(1, 8))]
        elif kind == "flip" and at < len(out):
            out[at] ^= draw(st.integers(1, 255))
        else:
            new = draw(st.binary(min_size=1, max_size=4))
            out[at:at + (len(new) if kind == "replace" else 0)] = new
    return bytes(out)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` in pieces at the given offsets (modulo its length), as successive recvs would give it."""
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:])]


def near_miss(valid: list, draw: st.DrawFn) -> list:
    """A valid message's fields with one to three replaced by any msgpack value, or cut short / grown."""
    fields = list(valid)
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(fields) - 1)) if fields else 0
        kind = draw(st.sampled_from(["replace", "replace", "drop", "append"]))
        if kind == "replace" and fields:
            fields[at] = draw(packable)
        elif kind == "drop" and fields:
            del fields[at]
        else:
            fields.append(draw(packable))
    return fields


# ---------------------------------------------------------------- Raft

U64 = st.integers(0, (1 << 64) - 1)
IDS = st.text(max_size=20)
SMALL = st.binary(max_size=64)
raft_members = st.builds(Member, raft=IDS, http=IDS)
raft_configs = st.builds(ClusterConfig, voters=st.dictionaries(IDS, raft_members, max_size=3),
                         learners=st.dictionaries(IDS, raft_members, max_size=2))
raft_messages = st.builds(
    Message, type=st.sampled_from(MsgType), src=IDS, dst=IDS, term=U64, index=U64, log_term=U64,
    entries=st.lists(st.builds(Entry, index=U64, term=U64, kind=st.sampled_from(EntryKind), data=SMALL),
                     max_size=4).map(tuple),
    commit=U64, reject=st.booleans(), reject_hint=U64, context=SMALL,
    snapshot=st.none() | st.builds(SnapshotMeta, index=U64, term=U64, config=raft_configs),
    offset=U64, data=SMALL, done=st.booleans())


def decode_raft(payload: bytes) -> Message | None:
    """The message, or None for a CodecError: any other exception fails the test."""
    try:
        msg = decode_message(payload)
    except CodecError as exc:
        assert str(exc)
        return None
    assert isinstance(msg, Message)
    assert encode_message(msg) is not None   # what decodes is a message the codec can send on
    return msg


def frames(stream_pieces: list[bytes], max_frame: int = 1 << 20) -> list[bytes] | None:
    """Payloads a connection's decoder makes of the pieces, or None when it refused the stream."""
    decoder = FrameDecoder(max_frame)
    out: list[bytes] = []
    try:
        for piece in stream_pieces:
            out += decoder.feed(piece)
    except CodecError:
        return None
    return out


@FUZZ
@given(st.lists(raft_messages, min_size=1, max_size=4), st.lists(st.integers(0, 10_000), max_size=10),
       st.booleans())
def test_raft_messages_round_trip_through_frames_in_any_split(msgs: list[Message], cuts: list[int],
                                                              sealed: bool) -> None:
    key = bytes(32)
    sealer, opener = (FrameSealer(key), FrameOpener(key)) if sealed else (None, None)
    stream = b""
    for msg in msgs:
        payload = encode_message(msg)
        stream += encode_frame(sealer.seal(payload) if sealer else payload)
    got = frames(split(stream, cuts))
    assert got is not None
    if opener is not None:
        got = [opener.open(frame) for frame in got]
    assert [decode_message(p) for p in got] == msgs


@FUZZ
@given(st.binary(max_size=600) | st.builds(encode_message, raft_messages))
def test_raft_any_payload_decodes_or_raises_codec_error(payload: bytes) -> None:
    decode_raft(payload)


@FUZZ
@given(st.data())
def test_raft_mutated_payloads_decode_or_raise_codec_error(data: st.DataObject) -> None:
    decode_raft(mutate(encode_message(data.draw(raft_messages)), data.draw))


@FUZZ
@given(st.data())
def test_raft_well_formed_msgpack_of_the_wrong_shape_raises_codec_error(data: st.DataObject) -> None:
    valid = msgpack.unpackb(encode_message(data.draw(raft_messages)), raw=False)
    shape = data.draw(st.sampled_from(["fields", "entry", "snapshot", "any"]))
    if shape == "fields":
        raw = near_miss(valid, data.draw)
    elif shape == "entry":   # a message whose entry (or snapshot config) is the wrong shape
        valid[7] = [near_miss(e, data.draw) for e in valid[7]] or [data.draw(packable)]
        raw = valid
    elif shape == "snapshot":
        valid[12] = near_miss(valid[12] or [0, 0, {}], data.draw) if data.draw(st.booleans()) \
            else [0, 0, data.draw(packable)]
        raw = valid
    else:
        raw = data.draw(packable)
    decode_raft(msgpack.packb(raw, use_bin_type=True))


@FUZZ
@given(st.binary(max_size=400) | st.lists(st.binary(max_size=40), max_size=6).map(
    lambda ps: b"".join(encode_frame(p) for p in ps)), st.lists(st.integers(0, 10_000), max_size=10))
def test_raft_frame_decoder_any_stream_gives_the_same_frames_in_any_split(stream: bytes, cuts: list[int]) -> None:
    whole = frames([stream], max_frame=256)
    assert frames(split(stream, cuts), max_frame=256) == whole
    if whole is not None:   # what came out is a prefix of the stream, re-framed
        framed = b"".join(encode_frame(p) for p in whole)
        assert stream.startswith(framed)
        assert len(stream) - len(framed) < 4 or int.from_bytes(stream[len(framed):len(framed) + 4], "big") \
            > len(stream) - len(framed) - 4


@FUZZ
@given(st.data())
def test_raft_sealed_frames_tampered_raise_channel_error(data: st.DataObject) -> None:
    key = data.draw(st.binary(min_size=32, max_size=32))
    sealed = FrameSealer(key).seal(encode_message(data.draw(raft_messages)))
    tampered = data.draw(st.binary(max_size=200)) if data.draw(st.booleans()) else mutate(sealed, data.draw)
    opener = FrameOpener(key)
    if tampered == sealed:
        assert opener.open(tampered)
        return
    with pytest.raises(ChannelError):
        opener.open(tampered)


# ---------------------------------------------------------------- gossip

NAMES = st.text(min_size=1, max_size=gossip.MAX_NAME_LEN)
SEQ = st.integers(0, gossip.MAX_SEQ)
hosts = st.from_regex(r"[A-Za-z0-9._-]{1,30}", fullmatch=True) | st.sampled_from(["[::1]", "[fe80::1%eth0]"])
ADDRS = st.builds(lambda h, p: f"{h}:{p}", hosts, st.integers(0, 65535))
META = st.dictionaries(st.text(max_size=10), st.none() | st.booleans() | st.integers(-(1 << 63), (1 << 63) - 1)
                       | st.floats(allow_nan=False) | st.text(max_size=20), max_size=4)
CLUSTER_IDS = st.text(st.characters(codec="utf-8").filter(str.isprintable), min_size=1,
                      max_size=gossip.MAX_CLUSTER_ID_LEN)
records = st.builds(gossip.MemberRecord, NAMES, ADDRS, META, SEQ, st.sampled_from(sorted(gossip.STATUS_CODES)))
gossip_messages = st.one_of(
    st.builds(gossip.Ping, SEQ, NAMES),
    st.builds(gossip.IndirectPing, SEQ, NAMES, ADDRS, st.booleans()),
    st.builds(gossip.Ack, SEQ), st.builds(gossip.Nack, SEQ),
    st.builds(gossip.Alive, SEQ, NAMES, ADDRS, META),
    st.builds(gossip.Suspect, SEQ, NAMES, NAMES), st.builds(gossip.Dead, SEQ, NAMES, NAMES),
    st.builds(gossip.PushPull, st.booleans(), NAMES, st.lists(records, max_size=3).map(tuple),
              st.none() | CLUSTER_IDS),
    st.builds(gossip.Cluster, CLUSTER_IDS))


def packet(msgs: list, cipher: Cipher | None, wall: float = 1.7e9, boot: bytes = b"b" * 16) -> bytes:
    return gossip.Sender(cipher, boot).seal([gossip.encode_message(m) for m in msgs], wall)


def open_gossip(data: bytes, cipher: Cipher | None) -> list | None:
    """The messages, or None for a CodecError with a known drop reason: any other exception fails."""
    try:
        header, msgs = gossip.open_packet(data, cipher, GOSSIP_MAX)
    except GossipCodecError as exc:
        assert exc.reason in DROP_REASONS, exc.reason
        return None
    assert msgs and header.packet_id == data[3:3 + 16 + 8]
    for msg in msgs:   # what was accepted can be encoded again (a push-pull answer passes members on)
        gossip.encode_message(msg)
    return msgs


@FUZZ
@given(st.lists(gossip_messages, min_size=1, max_size=5), st.booleans(),
       st.floats(0, 4e9), st.binary(min_size=16, max_size=16))
def test_gossip_packets_round_trip(msgs: list, keyed: bool, wall: float, boot: bytes) -> None:
    cipher = Cipher(GOSSIP_KEY) if keyed else None
    data = packet(msgs, cipher, wall, boot)
    header, got = gossip.open_packet(data, Cipher(GOSSIP_KEY) if keyed else None, GOSSIP_MAX)
    assert got == msgs
    assert header.encrypted is keyed and header.boot == boot and header.counter == 0
    assert math.isclose(header.timestamp, gossip.timestamp_ms(wall) / 1000)


@FUZZ
@given(st.binary(max_size=600), st.booleans())
def test_gossip_any_bytes_decode_or_raise_codec_error(data: bytes, keyed: bool) -> None:
    open_gossip(data, Cipher(GOSSIP_KEY) if keyed else None)
    open_gossip(bytes([gossip.MAGIC, gossip.VERSION, 0]) + data, None)   # past the magic and version
    assert gossip.refusal_reason(data) in (None, *range(256))
    gossip.refused_by_cluster(data)


@FUZZ
@given(st.data(), st.booleans())
def test_gossip_mutated_packets_decode_or_raise_codec_error(data: st.DataObject, keyed: bool) -> None:
    cipher = Cipher(GOSSIP_KEY) if keyed else None
    valid = packet(data.draw(st.lists(gossip_messages, min_size=1, max_size=3)), cipher)
    tampered = mutate(valid, data.draw)
    got = open_gossip(tampered, Cipher(GOSSIP_KEY) if keyed else None)
    if keyed and tampered != valid:
        assert got is None   # sealed: any change to header or body fails authentication


@FUZZ
@given(st.data())
def test_gossip_well_formed_msgpack_of_the_wrong_shape_raises_codec_error(data: st.DataObject) -> None:
    msgs = [gossip._to_list(m) for m in data.draw(st.lists(gossip_messages, min_size=1, max_size=3))]
    shape = data.draw(st.sampled_from(["message", "record", "any"]))
    if shape == "message":
        at = data.draw(st.integers(0, len(msgs) - 1))
        msgs[at] = near_miss(msgs[at], data.draw)
        body = msgs
    elif shape == "record":   # a push-pull whose member records are the wrong shape
        body = [[gossip.MsgKind.PUSH_PULL, False, "n1",
                 data.draw(st.lists(st.lists(packable, max_size=6) | packable, max_size=3)), None]]
    else:
        body = data.draw(packable)
    header = gossip.HEADER.pack(gossip.MAGIC, gossip.VERSION, 0, b"b" * 16, 0, 0)
    open_gossip(header + msgpack.packb(body, use_bin_type=True), None)

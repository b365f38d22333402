"""Wire format of gossip packets and push-pull frames (version 3).

A packet (UDP) or push-pull frame (TCP) is a 35-byte header followed by a msgpack array
of messages (each a list whose first item is the MsgKind)::

    magic 0xA7 | version 3 | flags | boot id (16) | counter (u64) | timestamp ms (u64) | body

all integers big-endian.  ``boot id`` is the sender's random id for this run, ``counter``
grows by one with every packet or frame it sends, ``timestamp`` is its wall clock.  With a
key (FLAG_ENCRYPTED) the body is ChaCha20-Poly1305 sealed under the sender's boot subkey
with the counter as nonce and the whole header as associated data (see crypto), so no
header field can be altered; the receiver's replay guard (replay) then admits each
(boot id, counter) once and only near its own clock.  Several messages travel in one
packet (a compound packet); a push-pull frame carries exactly one PUSH_PULL.

The sender's cluster id (fixed at bootstrap; unknown while a node is joining) is a field of
PUSH_PULL, and a CLUSTER message opens every packet of a sender that knows it, so a receiver
of another cluster can refuse the state (version 3 added both).

A refusal (FLAG_REFUSAL) is the 4-byte ``magic version flags reason`` a push-pull server
answers to a frame it could not authenticate, so the other side can say why; a refusal for
the cluster (REFUSED_CLUSTER) is followed by the server's cluster id.  A refusal is not
authenticated and only ever feeds a log line and a counter.  Another version, or anything
malformed, is dropped: decoding validates every field and raises CodecError whose ``reason``
names the drop counter.
"""
from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Union

import msgpack

from axon.gossip.address import parse_addr
from axon.gossip.crypto import BOOT_SIZE, MAX_COUNTER, OVERHEAD, Cipher, new_boot_id
from axon.gossip.errors import CodecError, GossipError

MAGIC = 0xA7
VERSION = 3
HEADER = struct.Struct(">BBB16sQQ")
HEADER_SIZE = HEADER.size
FLAG_ENCRYPTED = 0x01
FLAG_REFUSAL = 0x02
MAX_NAME_LEN = 128
MAX_CLUSTER_ID_LEN = 128
MAX_SEQ = 2 ** 63 - 1
_PACKET_ID = slice(3, 3 + BOOT_SIZE + 8)   # boot id + counter: unique per packet

# why a push-pull server refused a frame (the byte after a refusal's flags)
REFUSED_AUTH, REFUSED_KEY_REQUIRED, REFUSED_NO_KEY, REFUSED_CLOCK, REFUSED_CLUSTER = 1, 2, 3, 4, 5
REFUSAL_FOR_DROP = {"decrypt": REFUSED_AUTH, "unencrypted": REFUSED_KEY_REQUIRED, "encrypted": REFUSED_NO_KEY,
                    "stale": REFUSED_CLOCK}

ALIVE, SUSPECT, DEAD, LEFT = "alive", "suspect", "dead", "left"
STATUS_CODES = {ALIVE: 0, SUSPECT: 1, DEAD: 2, LEFT: 3}
STATUS_NAMES = {code: name for name, code in STATUS_CODES.items()}


class MsgKind(enum.IntEnum):
    PING = 1
    INDIRECT_PING = 2
    ACK = 3
    NACK = 4
    ALIVE = 5
    SUSPECT = 6
    DEAD = 7
    PUSH_PULL = 8
    CLUSTER = 9


@dataclass(frozen=True, slots=True)
class Ping:
    seq: int
    target: str            # the receiver drops pings meant for another name


@dataclass(frozen=True, slots=True)
class IndirectPing:
    seq: int
    target: str
    target_addr: str
    nack: bool             # ask the helper to answer NACK when the target stays silent


@dataclass(frozen=True, slots=True)
class Ack:
    seq: int


@dataclass(frozen=True, slots=True)
class Nack:
    seq: int


@dataclass(frozen=True, slots=True)
class Alive:
    incarnation: int
    name: str
    addr: str
    meta: dict


@dataclass(frozen=True, slots=True)
class Suspect:
    incarnation: int
    name: str
    sender: str


@dataclass(frozen=True, slots=True)
class Dead:
    """A failure, or a graceful leave when ``sender == name``."""
    incarnation: int
    name: str
    sender: str


@dataclass(frozen=True, slots=True)
class MemberRecord:
    name: str
    addr: str
    meta: dict
    incarnation: int
    status: str


@dataclass(frozen=True, slots=True)
class PushPull:
    join: bool
    sender: str
    members: tuple[MemberRecord, ...]
    cluster: str | None = None     # the sender's cluster id; None while it is joining


@dataclass(frozen=True, slots=True)
class Cluster:
    """Opens a packet: the sender's cluster id, so a receiver of another cluster drops the packet."""
    cluster_id: str


Message = Union[Ping, IndirectPing, Ack, Nack, Alive, Suspect, Dead, PushPull, Cluster]


# ---------------------------------------------------------------- encoding

def encode_message(msg: Message) -> bytes:
    """One message -> msgpack bytes (an element of a packet's message array)."""
    return msgpack.packb(_to_list(msg), use_bin_type=True)


def _to_list(msg: Message) -> list:
    if isinstance(msg, Ping):
        return [MsgKind.PING, msg.seq, msg.target]
    if isinstance(msg, IndirectPing):
        return [MsgKind.INDIRECT_PING, msg.seq, msg.target, msg.target_addr, msg.nack]
    if isinstance(msg, Ack):
        return [MsgKind.ACK, msg.seq]
    if isinstance(msg, Nack):
        return [MsgKind.NACK, msg.seq]
    if isinstance(msg, Alive):
        return [MsgKind.ALIVE, msg.incarnation, msg.name, msg.addr, msg.meta]
    if isinstance(msg, Suspect):
        return [MsgKind.SUSPECT, msg.incarnation, msg.name, msg.sender]
    if isinstance(msg, Dead):
        return [MsgKind.DEAD, msg.incarnation, msg.name, msg.sender]
    if isinstance(msg, PushPull):
        records = [[r.name, r.addr, r.meta, r.incarnation, STATUS_CODES[r.status]] for r in msg.members]
        return [MsgKind.PUSH_PULL, msg.join, msg.sender, records, msg.cluster]
    if isinstance(msg, Cluster):
        return [MsgKind.CLUSTER, msg.cluster_id]
    raise GossipError(f"not a gossip message: {msg!r}")


def array_header(count: int) -> bytes:
    if count < 16:
        return bytes([0x90 | count])
    if count < 65536:
        return b"\xdc" + count.to_bytes(2, "big")
    raise GossipError("too many messages in one packet")


def packet_overhead(encrypted: bool) -> int:
    """Bytes a packet adds around its message array (header, and the tag when sealed)."""
    return HEADER_SIZE + (OVERHEAD if encrypted else 0)


def timestamp_ms(wall: float) -> int:
    """Wall-clock seconds -> the header's unsigned milliseconds (clamped to the field)."""
    return min(max(int(wall * 1000), 0), MAX_COUNTER)


class Sender:
    """One member's outgoing side: its boot id and packet counter, so (boot, counter) never repeats."""

    def __init__(self, cipher: Cipher | None, boot: bytes | None = None) -> None:
        self.cipher = cipher
        self.boot = boot if boot is not None else new_boot_id()
        if len(self.boot) != BOOT_SIZE:
            raise GossipError(f"a boot id is {BOOT_SIZE} bytes")
        self.counter = 0

    def seal(self, encoded_messages: list[bytes], wall: float) -> bytes:
        """Already-encoded messages -> one packet (or push-pull frame) stamped with ``wall`` seconds."""
        if self.counter > MAX_COUNTER:
            raise GossipError("packet counter exhausted; restart the agent")
        counter, self.counter = self.counter, self.counter + 1
        body = array_header(len(encoded_messages)) + b"".join(encoded_messages)
        flags = FLAG_ENCRYPTED if self.cipher else 0
        header = HEADER.pack(MAGIC, VERSION, flags, self.boot, counter, timestamp_ms(wall))
        return header + (self.cipher.seal(self.boot, counter, header, body) if self.cipher else body)


def refusal(reason: int) -> bytes:
    """The answer of a push-pull server to a frame it could not authenticate."""
    return bytes([MAGIC, VERSION, FLAG_REFUSAL, reason])


def cluster_refusal(cluster_id: str) -> bytes:
    """The answer of a push-pull server to a frame from a member of another cluster: names ours."""
    if check_cluster_id(cluster_id) is None:
        raise GossipError("a cluster refusal names the server's cluster id")
    return refusal(REFUSED_CLUSTER) + cluster_id.encode()


def refusal_reason(data: bytes) -> int | None:
    """A refusal's reason code, or None when ``data`` is not a (well-formed) refusal."""
    if len(data) < 4 or data[0] != MAGIC or data[1] != VERSION or data[2] != FLAG_REFUSAL:
        return None
    if data[3] == REFUSED_CLUSTER:
        return REFUSED_CLUSTER if refused_by_cluster(data) is not None else None
    return data[3] if len(data) == 4 else None


def refused_by_cluster(data: bytes) -> str | None:
    """The cluster id a cluster refusal names, or None when ``data`` is not a well-formed one."""
    if len(data) < 5 or data[:4] != refusal(REFUSED_CLUSTER):
        return None
    try:
        return check_cluster_id(bytes(data[4:]).decode())
    except (UnicodeDecodeError, CodecError):
        return None


def check_cluster_id(value: object) -> str | None:
    """A cluster id as it may travel: None, or printable text of at most MAX_CLUSTER_ID_LEN characters."""
    if value is None:
        return None
    # it ends up in log lines: no control characters, bounded
    if not isinstance(value, str) or not 0 < len(value) <= MAX_CLUSTER_ID_LEN or not value.isprintable():
        raise CodecError("malformed", "bad cluster id")
    return value


# ---------------------------------------------------------------- decoding

@dataclass(frozen=True, slots=True)
class Header:
    encrypted: bool
    boot: bytes
    counter: int
    timestamp: float       # the sender's wall clock, seconds
    packet_id: bytes       # boot id + counter, what the replay guard remembers


def open_packet(data: bytes, cipher: Cipher | None, max_size: int) -> tuple[Header, list[Message]]:
    """Check framing, authenticate and decrypt, decode; raises CodecError(reason)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CodecError("malformed", "not bytes")
    data = bytes(data)
    if len(data) > max_size:
        raise CodecError("oversized", f"{len(data)} > {max_size} bytes")
    if len(data) < 3:
        raise CodecError("truncated", "shorter than a header")
    if data[0] != MAGIC:
        raise CodecError("foreign", "bad magic byte")
    if data[1] != VERSION:
        raise CodecError("version", f"protocol version {data[1]}")
    flags = data[2]
    if flags & ~FLAG_ENCRYPTED:
        raise CodecError("malformed", "unknown flags")
    if len(data) <= HEADER_SIZE:
        raise CodecError("truncated", "shorter than a header")
    _, _, _, boot, counter, stamp = HEADER.unpack_from(data)
    header = Header(bool(flags & FLAG_ENCRYPTED), boot, counter, stamp / 1000, data[_PACKET_ID])
    body = data[HEADER_SIZE:]
    if header.encrypted:
        if cipher is None:
            raise CodecError("encrypted", "sealed packet but no key configured")
        body = cipher.open(boot, counter, data[:HEADER_SIZE], body)
    elif cipher is not None:
        raise CodecError("unencrypted", "plain packet but a key is configured")
    return header, decode_messages(body, max_size)


def decode_messages(body: bytes, max_size: int) -> list[Message]:
    try:
        raw = msgpack.unpackb(body, raw=False, strict_map_key=True, use_list=True, max_str_len=max_size,
                              max_bin_len=0, max_array_len=max_size, max_map_len=max_size, max_ext_len=0)
    except (ValueError, msgpack.UnpackException) as exc:  # ExtraData, FormatError, StackError, bad UTF-8...
        raise CodecError("malformed", f"msgpack: {exc.__class__.__name__}") from None
    if not isinstance(raw, list) or not raw:
        raise CodecError("malformed", "not a non-empty message array")
    return [_from_list(item) for item in raw]


def _from_list(item: object) -> Message:
    if not isinstance(item, list) or not item or type(item[0]) is not int:
        raise CodecError("malformed", "message is not [kind, ...]")
    kind, args = item[0], item[1:]
    decoder = _DECODERS.get(kind)
    if decoder is None:
        raise CodecError("malformed", f"unknown message kind {kind}")
    arity = _ARITY[kind]
    if len(args) != arity:
        raise CodecError("malformed", f"kind {kind} wants {arity} fields, got {len(args)}")
    return decoder(*args)


def _int(value: object, what: str) -> int:
    if type(value) is not int or not 0 <= value <= MAX_SEQ:
        raise CodecError("malformed", f"bad {what}")
    return value


def _name(value: object, what: str = "name") -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_NAME_LEN:
        raise CodecError("malformed", f"bad {what}")
    return value


def _addr(value: object) -> str:
    try:
        parse_addr(value)  # type: ignore[arg-type]
    except GossipError:
        raise CodecError("malformed", "bad address") from None
    return value  # type: ignore[return-value]


def _bool(value: object) -> bool:
    if type(value) is not bool:
        raise CodecError("malformed", "bad flag")
    return value


def _meta(value: object) -> dict:
    if not isinstance(value, dict):
        raise CodecError("malformed", "meta is not a map")
    for k, v in value.items():
        if not isinstance(k, str) or not (v is None or isinstance(v, (str, int, float, bool))):
            raise CodecError("malformed", "meta holds only scalar values under string keys")
    return value


def _cluster_id(value: object) -> str:
    """A CLUSTER message's id: never None (a sender without an id sends no CLUSTER message)."""
    if value is None:
        raise CodecError("malformed", "bad cluster id")
    return check_cluster_id(value)  # type: ignore[return-value]


def _status(value: object) -> str:
    if type(value) is not int or value not in STATUS_NAMES:
        raise CodecError("malformed", "bad member status")
    return STATUS_NAMES[value]


def _records(value: object) -> tuple[MemberRecord, ...]:
    if not isinstance(value, list):
        raise CodecError("malformed", "member list is not an array")
    out = []
    for rec in value:
        if not isinstance(rec, list) or len(rec) != 5:
            raise CodecError("malformed", "bad member record")
        out.append(MemberRecord(_name(rec[0]), _addr(rec[1]), _meta(rec[2]), _int(rec[3], "incarnation"),
                                _status(rec[4])))
    return tuple(out)


_DECODERS = {
    MsgKind.PING: lambda seq, target: Ping(_int(seq, "seq"), _name(target)),
    MsgKind.INDIRECT_PING: lambda seq, target, addr, nack: IndirectPing(_int(seq, "seq"), _name(target),
                                                                       _addr(addr), _bool(nack)),
    MsgKind.ACK: lambda seq: Ack(_int(seq, "seq")),
    MsgKind.NACK: lambda seq: Nack(_int(seq, "seq")),
    MsgKind.ALIVE: lambda inc, name, addr, meta: Alive(_int(inc, "incarnation"), _name(name), _addr(addr),
                                                       _meta(meta)),
    MsgKind.SUSPECT: lambda inc, name, sender: Suspect(_int(inc, "incarnation"), _name(name), _name(sender)),
    MsgKind.DEAD: lambda inc, name, sender: Dead(_int(inc, "incarnation"), _name(name), _name(sender)),
    MsgKind.PUSH_PULL: lambda join, sender, records, cluster: PushPull(_bool(join), _name(sender),
                                                                       _records(records), check_cluster_id(cluster)),
    MsgKind.CLUSTER: lambda cluster: Cluster(_cluster_id(cluster)),
}
_ARITY = {MsgKind.PING: 2, MsgKind.INDIRECT_PING: 4, MsgKind.ACK: 1, MsgKind.NACK: 1, MsgKind.ALIVE: 4,
          MsgKind.SUSPECT: 3, MsgKind.DEAD: 3, MsgKind.PUSH_PULL: 4, MsgKind.CLUSTER: 1}

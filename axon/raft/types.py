"""Value types shared by the Raft core, the WAL, the codec and the driver.

Everything here is plain data: no I/O, no clocks.  The wire codec (``codec.py``)
and the write-ahead log (``wal.py``) encode exactly these types.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Mapping


class EntryKind(enum.IntEnum):
    NORMAL = 0   # data for the state machine (opaque bytes)
    CONFIG = 1   # data is an encoded ClusterConfig (see ``encode_config``)
    NOOP = 2     # appended by a new leader to commit entries of earlier terms


@dataclass(frozen=True, slots=True)
class Entry:
    index: int
    term: int
    kind: EntryKind = EntryKind.NORMAL
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class HardState:
    """What must be durable before any message that depends on it is sent."""
    term: int = 0
    vote: str | None = None


@dataclass(frozen=True, slots=True)
class Member:
    """A member's addresses; the core only uses the id, the driver uses the addresses."""
    raft: str = ""
    http: str = ""


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    voters: Mapping[str, Member] = field(default_factory=dict)
    learners: Mapping[str, Member] = field(default_factory=dict)

    def members(self) -> dict[str, Member]:
        out = dict(self.learners)
        out.update(self.voters)
        return out

    def is_member(self, node_id: str) -> bool:
        return node_id in self.voters or node_id in self.learners

    def quorum(self) -> int:
        return len(self.voters) // 2 + 1


def encode_config(config: ClusterConfig) -> dict:
    """ClusterConfig -> plain dict (msgpack/JSON friendly)."""
    return {
        "voters": {k: [m.raft, m.http] for k, m in sorted(config.voters.items())},
        "learners": {k: [m.raft, m.http] for k, m in sorted(config.learners.items())},
    }


def decode_config(raw: dict) -> ClusterConfig:
    def members(d: dict) -> dict[str, Member]:
        return {str(k): Member(str(v[0]), str(v[1])) for k, v in d.items()}
    return ClusterConfig(voters=members(raw.get("voters", {})),
                         learners=members(raw.get("learners", {})))


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    """The position a snapshot covers: every entry up to ``index`` is in it."""
    index: int = 0
    term: int = 0
    config: ClusterConfig = field(default_factory=ClusterConfig)


class MsgType(enum.IntEnum):
    APPEND = 1            # AppendEntries (also empty, as a probe)
    APPEND_RESP = 2
    VOTE = 3
    VOTE_RESP = 4
    PREVOTE = 5
    PREVOTE_RESP = 6
    HEARTBEAT = 7         # carries commit and a read-barrier sequence in ``context``
    HEARTBEAT_RESP = 8
    SNAPSHOT = 9          # one chunk of InstallSnapshot; ``snapshot`` set, ``data`` the chunk
    SNAPSHOT_RESP = 10
    TIMEOUT_NOW = 11      # leadership transfer: start an election now


@dataclass(frozen=True, slots=True)
class Message:
    """One Raft message; fields a type does not use keep their defaults.

    APPEND:        index/log_term = previous entry, entries, commit; done = a commit notice
                   (no entries): its follower answers only a rejection
    APPEND_RESP:   index = last index matched (or hint when reject), reject; done = its sender
                   commits by what the leader tells it of its disk.  Also sent by the leader
                   to its followers after its own sync: index = how far its log is durable
                   (RaftCore._tell_followers_durable)
    VOTE/PREVOTE:  index/log_term = candidate's last entry, context = b"transfer" when forced
    *_RESP:        reject = vote denied
    HEARTBEAT:     commit, context = read-barrier sequence (decimal ascii) or b""
    SNAPSHOT:      snapshot meta, offset, data, done
    SNAPSHOT_RESP: index = installed snapshot index, reject
    """
    type: MsgType
    src: str
    dst: str
    term: int
    index: int = 0
    log_term: int = 0
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    reject: bool = False
    reject_hint: int = 0
    context: bytes = b""
    snapshot: SnapshotMeta | None = None
    offset: int = 0
    data: bytes = b""
    done: bool = False

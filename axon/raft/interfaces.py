"""What the Raft driver needs of its surroundings: a transport and a state machine.

Protocols only; ``axon.raft.transport.TcpTransport`` and ``axon.kv.store.Store`` implement them.
"""
from __future__ import annotations

from typing import Any, Iterator, Mapping, Protocol, Sequence

from axon.raft.types import ClusterConfig, Entry, Message, SnapshotMeta


class Transport(Protocol):
    """Delivers messages to peers, best effort: a message may be dropped, never reordered."""

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def set_peers(self, peers: Mapping[str, str]) -> None: ...
    def send(self, msg: Message) -> None: ...
    def backlog(self, peer_id: str) -> int: ...


class StateMachine(Protocol):
    """What the driver needs of the store."""
    applied_index: int
    applied_term: int
    config: ClusterConfig | None

    def apply(self, entries: Sequence[Entry]) -> list[list[Any]]: ...
    def sync(self) -> None:
        """Make everything applied durable (blocking only the calling greenlet, not the loop)."""
    def snapshot_reader(self, chunk_size: int = ...) -> tuple[SnapshotMeta, Iterator[bytes]]: ...
    def restore(self, meta: SnapshotMeta, chunks: Any) -> None: ...
    def reopen(self) -> None:
        """Open the storage again after a write failed (the driver then applies the same entries)."""

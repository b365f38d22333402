"""Started Raft transports on loopback for the transport and peer-channel tests."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator

from axon.raft.transport import TcpTransport
from axon.raft.types import Message


class Node:
    """A started transport plus the list of messages it delivered."""

    def __init__(self, node_id: str, listen: str = "127.0.0.1:0", **kwargs: Any) -> None:
        self.received: list[Message] = []
        self.transport = TcpTransport(node_id, listen, self.received.append, **kwargs)
        self.transport.start()

    @property
    def address(self) -> str:
        return self.transport.address


@contextmanager
def node_maker(**defaults: Any) -> Iterator[Callable[..., Node]]:
    """``make(node_id, **kwargs)`` starts a Node (``defaults`` under ``kwargs``); all are stopped at the end."""
    nodes: list[Node] = []

    def make(node_id: str, **kwargs: Any) -> Node:
        nodes.append(Node(node_id, **{**defaults, **kwargs}))
        return nodes[-1]

    try:
        yield make
    finally:
        for node in nodes:
            node.transport.stop()

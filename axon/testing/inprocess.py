"""Nodes of the HTTP API in one process: a fake Raft node, the real service and the real
middleware chain each, talking to one another through a LoopbackNet (no sockets).

Web-level tests send ``axon.web.wire.Request`` objects to ``node.handler`` (or use
``node.call``) and see exactly what a client would.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from axon.api.service import KVService
from axon.client.http import HttpPool
from axon.config import NodeConfig
from axon.raft.types import Member
from axon.testing.fake_raft import FakeRaftNode
from axon.testing.loopback import LoopbackNet
from axon.web.app import build_app
from axon.web.middleware import Handler, Middleware
from axon.web.wire import Request, Response

CLIENT_HOST = "192.0.2.7"   # TEST-NET-1: no member lives there


def member(i: int) -> Member:
    """Node n<i> lives on host 10.0.0.<i> (one host a node, so address checks mean something)."""
    return Member(f"10.0.0.{i}:7001", f"10.0.0.{i}:7000")


def request(method: str, target: str, body: bytes = b"", headers: Mapping[str, str] | None = None,
            remote: str = CLIENT_HOST) -> Request:
    path, _, query = target.partition("?")
    return Request(method=method, path=path, query=query, version="HTTP/1.1",
                   headers={k.lower(): v for k, v in (headers or {}).items()}, body=body,
                   keep_alive=True, remote=remote)


@dataclass
class ApiNode:
    node_id: str
    raft: FakeRaftNode
    service: KVService
    handler: Handler
    net: LoopbackNet          # the nodes' HTTP between them (``net.sent``: what went through)

    def call(self, method: str, target: str, payload: Any = None, headers: Mapping[str, str] | None = None,
             remote: str = CLIENT_HOST, body: bytes | None = None) -> Response:
        """One request through the whole chain; ``payload`` is sent as JSON."""
        if body is None:
            body = json.dumps(payload).encode() if payload is not None else b""
        return self.handler(request(method, target, body, headers, remote))


def api_cluster(size: int = 3, leader: str | None = "n1", cluster_key: bytes | None = None,
                extra: Sequence[Middleware] = (), max_value_bytes: int = 1000,
                cluster_id: str | None = None) -> dict[str, ApiNode]:
    """Nodes n1..n<size>, every one a voter, all agreeing on ``leader`` (and on ``cluster_id``)."""
    members = {f"n{i}": member(i) for i in range(1, size + 1)}
    net = LoopbackNet()
    # what gossip would say: every node alive (a removed node stays in the view)
    gossip = [{"node_id": nid, "status": "alive", "http": m.http, "raft": m.raft, "gossip": "", "role": ""}
              for nid, m in members.items()]
    nodes = {}
    for node_id, m in members.items():
        config = NodeConfig(node_id=node_id, data_dir="unused", http=m.http, raft=m.raft,
                            cluster_key=cluster_key, max_value_bytes=max_value_bytes, request_timeout=1.0)
        raft = FakeRaftNode(node_id, members, leader=leader)
        pool: Any = net.pool(remote=m.http.rpartition(":")[0])   # an HttpPool in all it is asked
        service = KVService(config, raft, raft.store, HttpPool(), lambda: gossip,
                            cluster_id=lambda: cluster_id)
        handler = build_app(config, service, pool, extra)
        net.attach(m.http, handler)
        nodes[node_id] = ApiNode(node_id, raft, service, handler, net)
    return nodes

"""In-process HTTP between nodes: an HttpPool stand-in that hands requests to a node's Handler.

Web-level tests wire several nodes' handlers together with it (forwarding to the leader,
peer headers) without a socket.  Each node gets its own pool, whose requests arrive from
that node's host, as they would over TCP.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Mapping

from axon.client.http import ClientError
from axon.client.http import Response as ClientResponse
from axon.web.middleware import Handler
from axon.web.wire import Request


class LoopbackNet:
    """http address -> the Handler serving it."""

    def __init__(self) -> None:
        self.handlers: dict[str, Handler] = {}
        self.sent: list[Request] = []     # every request that went through, in order

    def attach(self, addr: str, handler: Handler) -> None:
        self.handlers[addr] = handler

    def detach(self, addr: str) -> None:
        self.handlers.pop(addr, None)

    def pool(self, remote: str) -> "LoopbackPool":
        """A pool whose requests come from host ``remote``."""
        return LoopbackPool(self, remote)


class LoopbackPool:
    def __init__(self, net: LoopbackNet, remote: str) -> None:
        self.net = net
        self.remote = remote

    def request(self, method: str, addr: str, path: str, body: bytes | None = None,
                headers: Mapping[str, str] | None = None, timeout: float | None = None) -> ClientResponse:
        handler = self.net.handlers.get(addr)
        if handler is None:
            raise ClientError(f"{addr}: connection refused")
        sent = {"content-type": "application/json"} if body is not None else {}
        sent.update({name.lower(): value for name, value in (headers or {}).items()})
        path, _, query = path.partition("?")
        req = Request(method=method, path=path, query=query, version="HTTP/1.1", headers=sent,
                      body=body or b"", keep_alive=True, remote=self.remote)
        self.net.sent.append(replace(req, headers=dict(sent)))   # as sent: the receiver may strip headers
        resp = handler(req)
        return ClientResponse(resp.status, {name.lower(): value for name, value in resp.headers}, resp.body)

    def close(self) -> None:
        pass

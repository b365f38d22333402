"""Peer trust for the internal headers: signing this node's forwards, judging those received.

A node that passes a request on to the leader marks it with ``X-Axon-Forwarded`` (hops so
far) and ``X-Axon-Origin`` (its id).  Only peers may say so, or a client could pose as a
member forwarding.  With a cluster key the forwarder signs origin, method, target and time
(HMAC-SHA256 under a key derived from the cluster key) in ``X-Axon-Peer`` and
``X-Axon-Peer-Time``; without one (a loopback cluster, say) the request must come from
the host of the member it names.  Anyone else's internal headers are stripped.

A forward from a node that is no longer a member (signed, or keyless from the host that
node had, as gossip still knows it) is refused: a removed node may never learn of its
removal itself, and would go on passing writes to the leader.
"""
from __future__ import annotations

import hashlib
import hmac
import time
from typing import Callable, Mapping, Protocol

from axon.api.errors import Unavailable
from axon.api.validate import ascii_digits
from axon.config import ConfigError, parse_addr
from axon.web import params
from axon.web.middleware import Handler
from axon.web.wire import Request, Response

FORWARDED = "x-axon-forwarded"
ORIGIN = "x-axon-origin"
SIGNATURE = "x-axon-peer"
TIMESTAMP = "x-axon-peer-time"
INTERNAL_HEADERS = (FORWARDED, ORIGIN, SIGNATURE, TIMESTAMP)
MAX_CLOCK_SKEW = 60               # seconds a signed forward stays valid
KEY_INFO = b"axon forward v1"


class Directory(Protocol):
    """Who is in the cluster now, and who was (the API service answers this)."""

    def member_addresses(self) -> Mapping[str, str]: ...
    def known_addresses(self) -> Mapping[str, str]: ...
    def leader(self) -> str | None: ...


def derive_key(cluster_key: bytes) -> bytes:
    """The forward-signing key: HKDF-SHA256 of the cluster key, apart from the key's other uses."""
    # imported here: cryptography takes ~80 ms to load, and only a node with a key needs it
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=KEY_INFO).derive(cluster_key)


def forwarded_hops(req: Request) -> int:
    """How often the request was forwarded before it reached us (0: straight from a client)."""
    raw = req.headers.get(FORWARDED)
    if raw is None:
        return 0
    # A peer never sends anything but a small number; anything else counts as forwarded once.
    return int(raw) if ascii_digits(raw) and len(raw) < 4 else 1


class PeerTrust:
    """Signs this node's forwards; as a middleware, keeps internal headers of peers only."""

    def __init__(self, node_id: str, cluster_key: bytes | None, directory: Directory,
                 clock: Callable[[], float] = time.time) -> None:
        self.node_id = node_id
        self.directory = directory
        self.clock = clock
        self._key = derive_key(cluster_key) if cluster_key is not None else None

    def forward_headers(self, method: str, target: str, hops: int) -> dict[str, str]:
        """The internal headers of a request this node forwards."""
        headers = {FORWARDED: str(hops), ORIGIN: self.node_id}
        if self._key is not None:
            stamp = str(int(self.clock()))
            headers[TIMESTAMP] = stamp
            headers[SIGNATURE] = self._sign(self.node_id, method, target, stamp)
        return headers

    def __call__(self, req: Request, handler: Handler) -> Response:
        headers = req.headers
        # rare: only forwards (and impostors) carry any of them
        if FORWARDED in headers or ORIGIN in headers or SIGNATURE in headers or TIMESTAMP in headers:
            self._judge(req)
        return handler(req)

    def _judge(self, req: Request) -> None:
        """Keep the internal headers of a member's forward, refuse a former member's, strip the rest."""
        origin = req.headers.get(ORIGIN, "")
        members = self.directory.member_addresses()
        if origin in members and self._from_peer(req, origin, members[origin]):
            return
        if origin and origin not in members and self._from_former_peer(req, origin):
            raise Unavailable(f"node {origin} is not a member of the cluster", leader=self.directory.leader())
        for name in INTERNAL_HEADERS:
            req.headers.pop(name, None)

    def _from_peer(self, req: Request, origin: str, http: str) -> bool:
        if self._key is not None:
            return self._signed(req, origin)
        return req.remote == _host(http)

    def _from_former_peer(self, req: Request, origin: str) -> bool:
        if self._key is not None:
            return self._signed(req, origin)
        http = self.directory.known_addresses().get(origin)
        return http is not None and req.remote == _host(http)

    def _signed(self, req: Request, origin: str) -> bool:
        signature = req.headers.get(SIGNATURE, "")
        stamp = req.headers.get(TIMESTAMP, "")
        if not signature.isascii() or not ascii_digits(stamp) or len(stamp) > 12:
            return False
        if abs(self.clock() - int(stamp)) > MAX_CLOCK_SKEW:
            return False
        return hmac.compare_digest(signature, self._sign(origin, req.method, params.target(req), stamp))

    def _sign(self, origin: str, method: str, target: str, stamp: str) -> str:
        assert self._key is not None
        message = "\n".join((origin, method, target, stamp)).encode("utf-8", "surrogatepass")
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()


def _host(http: str) -> str | None:
    try:
        return parse_addr(http)[0]
    except ConfigError:
        return None

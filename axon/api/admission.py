"""Join admission: a joiner's proof that it holds the cluster key, and the leader's check of it.

A proof is ``{"time": unix seconds, "nonce": 16 random bytes as hex, "mac": hex}`` where
``mac`` is HMAC-SHA256, under ``derive_key(cluster_key, b"join")`` (HKDF, apart from the
key's other uses), over every field of the join request, the time and the nonce, each
length-prefixed (``proof_message``).  The leader accepts a proof whose time is within
MAX_SKEW seconds of its own clock and whose nonce it has not accepted before; a nonce is
remembered until its time has left that window, so a recorded join cannot be played again
while it would still pass the time check.  Only proofs that verified are remembered, so
someone without the key cannot fill the memory.  Without a cluster key nothing is checked
(a loopback-only cluster: see NodeConfig.validate).
"""
from __future__ import annotations

import hashlib
import hmac
import os
import re
import struct
import time
from typing import Callable

from axon.api.errors import Unauthenticated, Unavailable
from axon.api.validate import JoinRequest

JOIN_KEY_USE = b"join"
MAX_SKEW = 60               # seconds a proof's time may differ from the leader's clock
NONCE_BYTES = 16
MAX_TIME = 1 << 40          # seconds; a proof's time is below it
MAX_NONCES = 4096           # proofs accepted within one window; past it joins must wait
_DOMAIN = b"axon join proof v1\n"
_NONCE = re.compile(r"[0-9a-f]{32}")
_MAC = re.compile(r"[0-9a-f]{64}")


def join_key(cluster_key: bytes) -> bytes:
    """The key of join proofs, derived from the cluster key for this use only."""
    # imported here: cryptography takes ~80 ms to load, and only a node with a key needs it
    from axon.security.channel import derive_key
    return derive_key(cluster_key, JOIN_KEY_USE)


def proof_message(req: JoinRequest, stamp: int, nonce: str) -> bytes:
    """The bytes a proof covers: each field length-prefixed, so two requests never share them."""
    fields = (req.node_id, req.raft, req.http, req.gossip, req.cluster_id or "", str(stamp), nonce)
    return _DOMAIN + b"".join(_prefixed(field.encode("utf-8")) for field in fields)


def make_proof(key: bytes, req: JoinRequest, clock: Callable[[], float] = time.time) -> dict:
    """The "proof" of a join body for ``req``; ``key`` is ``join_key(cluster key)``."""
    stamp = int(clock())
    nonce = os.urandom(NONCE_BYTES).hex()
    return {"time": stamp, "nonce": nonce, "mac": _mac(key, req, stamp, nonce)}


class JoinAdmission:
    """The leader's check of join proofs; with no cluster key every join passes."""

    def __init__(self, cluster_key: bytes | None, clock: Callable[[], float] = time.time,
                 max_nonces: int = MAX_NONCES) -> None:
        self._key = join_key(cluster_key) if cluster_key is not None else None
        self.clock = clock
        self.max_nonces = max_nonces
        self._accepted: dict[str, int] = {}     # nonce -> the time its proof named

    @property
    def required(self) -> bool:
        """Whether a join must carry a proof (the node has a cluster key)."""
        return self._key is not None

    def check(self, req: JoinRequest, proof: object) -> None:
        """Return if ``proof`` admits ``req``; else raise Unauthenticated (Unavailable when flooded)."""
        if self._key is None:
            return
        stamp, nonce, mac = _parse(proof)
        now = self.clock()
        if abs(now - stamp) > MAX_SKEW:
            raise Unauthenticated(f"join refused: the proof of the cluster key is dated {int(now - stamp)} s "
                                  f"from this node's clock (more than {MAX_SKEW} s; are the clocks apart?)")
        if not hmac.compare_digest(mac, _mac(self._key, req, stamp, nonce)):
            raise Unauthenticated("join refused: the proof does not verify under the leader's cluster key")
        self._forget_expired(now)
        if nonce in self._accepted:
            raise Unauthenticated("join refused: this proof of the cluster key was used before (a replay?)")
        if len(self._accepted) >= self.max_nonces:
            raise Unavailable("too many joins in the last minute; retry later")
        self._accepted[nonce] = stamp

    def _forget_expired(self, now: float) -> None:
        """Drop nonces whose proofs the time check refuses by now anyway."""
        if self._accepted:
            self._accepted = {n: t for n, t in self._accepted.items() if now - t <= MAX_SKEW}


def _parse(proof: object) -> tuple[int, str, str]:
    if proof is None:
        raise Unauthenticated("join refused: this cluster requires a proof of the cluster key, and none was given")
    if not isinstance(proof, dict):
        raise Unauthenticated("join refused: the proof of the cluster key is malformed")
    stamp, nonce, mac = proof.get("time"), proof.get("nonce"), proof.get("mac")
    # type(...) is int: JSON true/false would pass isinstance(..., int); the bound keeps a huge
    # number from overflowing the float the clock is compared as
    if (type(stamp) is not int or not 0 <= stamp < MAX_TIME
            or not isinstance(nonce, str) or not _NONCE.fullmatch(nonce)
            or not isinstance(mac, str) or not _MAC.fullmatch(mac)):
        raise Unauthenticated("join refused: the proof of the cluster key is malformed")
    return stamp, nonce, mac


def _mac(key: bytes, req: JoinRequest, stamp: int, nonce: str) -> str:
    return hmac.new(key, proof_message(req, stamp, nonce), hashlib.sha256).hexdigest()


def _prefixed(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data

"""Authenticated encryption of a peer connection's frames, keyed from the cluster key.

Pure: no sockets.  Both ends of a connection contribute a fresh random nonce; the
session keys come from HKDF-SHA256 over the cluster key with both nonces as salt and
both node ids (and the use, e.g. "raft") in the info, so every connection, direction and
use has its own keys and a recorded connection's keys are useless on the next one.
Each direction then seals frames with ChaCha20-Poly1305 under a 96-bit nonce that is
the frame's sequence number: a frame dropped, repeated, reordered or moved to another
connection fails to open.  The handshake proofs are HMAC-SHA256 over the whole
transcript with a key of their own, so each side shows it holds the cluster key and
saw the same exchange.  docs/security.md says why this is sound.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_SIZE = 32
NONCE_SIZE = 32          # each side's handshake nonce
TAG_SIZE = 16            # Poly1305 tag added to each sealed frame
MAX_SEQUENCE = (1 << 64) - 1
_INFO = b"axon peer channel v1"


class ChannelError(Exception):
    """A frame failed authentication (tampered, replayed, reordered) or a proof did not verify."""


def fresh_nonce() -> bytes:
    return os.urandom(NONCE_SIZE)


def derive_key(cluster_key: bytes, use: bytes, length: int = KEY_SIZE, salt: bytes | None = None) -> bytes:
    """A key for one use (b"gossip", b"join", ...) derived from the cluster key by HKDF-SHA256."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=_INFO + b"|" + use).derive(cluster_key)


@dataclass(frozen=True)
class SessionKeys:
    """One connection's keys: a sealing key per direction and the handshake proof key."""
    client_to_server: bytes
    server_to_client: bytes
    proof: bytes


def session_keys(cluster_key: bytes, use: str, client_id: str, server_id: str,
                 client_nonce: bytes, server_nonce: bytes) -> SessionKeys:
    """Keys of one connection from the cluster key and what both sides said in the handshake."""
    if len(client_nonce) != NONCE_SIZE or len(server_nonce) != NONCE_SIZE:
        raise ChannelError("handshake nonces must be 32 bytes")
    info = b"|".join((b"session", use.encode(), _length_prefixed(client_id), _length_prefixed(server_id)))
    material = derive_key(cluster_key, info, 3 * KEY_SIZE, salt=client_nonce + server_nonce)
    return SessionKeys(material[:KEY_SIZE], material[KEY_SIZE:2 * KEY_SIZE], material[2 * KEY_SIZE:])


def transcript_proof(keys: SessionKeys, role: bytes, transcript: bytes) -> bytes:
    """HMAC of the handshake transcript for ``role`` (b"client" or b"server")."""
    return hmac.new(keys.proof, role + b"|" + transcript, hashlib.sha256).digest()


def check_proof(keys: SessionKeys, role: bytes, transcript: bytes, proof: object) -> None:
    if not isinstance(proof, bytes) or not hmac.compare_digest(transcript_proof(keys, role, transcript), proof):
        raise ChannelError(f"the {role.decode()} proof does not verify (another cluster key?)")


class FrameSealer:
    """Seals one direction's frames in order: the sequence number is the AEAD nonce."""

    def __init__(self, key: bytes) -> None:
        self._aead = ChaCha20Poly1305(key)
        self._seq = 0

    def seal(self, frame: bytes) -> bytes:
        if self._seq > MAX_SEQUENCE:
            raise ChannelError("sequence numbers exhausted; reconnect")
        sealed = self._aead.encrypt(_nonce(self._seq), frame, None)
        self._seq += 1
        return sealed


class FrameOpener:
    """Opens one direction's frames; each must be the next in sequence, intact."""

    def __init__(self, key: bytes) -> None:
        self._aead = ChaCha20Poly1305(key)
        self._seq = 0

    def open(self, sealed: bytes) -> bytes:
        try:
            frame = self._aead.decrypt(_nonce(self._seq), sealed, None)
        except InvalidTag:
            raise ChannelError("frame failed authentication (tampered, replayed or out of order)") from None
        self._seq += 1
        return frame


def _nonce(seq: int) -> bytes:
    return b"\0\0\0\0" + struct.pack(">Q", seq)


def _length_prefixed(text: str) -> bytes:
    data = text.encode()
    return struct.pack(">H", len(data)) + data

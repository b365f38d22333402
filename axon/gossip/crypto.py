"""AES-GCM sealing of gossip packets (key files are read by axon.keys)."""
from __future__ import annotations

import os
from typing import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from axon.gossip.errors import CodecError, GossipError

KEY_SIZES = (16, 24, 32)
NONCE_SIZE = 12
TAG_SIZE = 16
OVERHEAD = NONCE_SIZE + TAG_SIZE


def check_key(key: bytes) -> bytes:
    """key as bytes if it is 16, 24 or 32 bytes long (AES-128/192/256); raises GossipError."""
    if not isinstance(key, (bytes, bytearray)) or len(key) not in KEY_SIZES:
        raise GossipError("gossip key must be 16, 24 or 32 bytes")
    return bytes(key)


class Cipher:
    """Seals with a fresh random nonce; the packet header is authenticated as associated data."""

    def __init__(self, key: bytes, nonce_source: Callable[[int], bytes] = os.urandom) -> None:
        self._aead = AESGCM(check_key(key))
        self._nonce_source = nonce_source

    def seal(self, header: bytes, plaintext: bytes) -> bytes:
        nonce = self._nonce_source(NONCE_SIZE)
        return nonce + self._aead.encrypt(nonce, plaintext, header)

    def open(self, header: bytes, sealed: bytes) -> bytes:
        if len(sealed) < OVERHEAD:
            raise CodecError("truncated", "shorter than nonce and tag")
        try:
            return self._aead.decrypt(sealed[:NONCE_SIZE], sealed[NONCE_SIZE:], header)
        except InvalidTag:
            raise CodecError("decrypt", "authentication failed (wrong key or tampered)") from None

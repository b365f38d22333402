"""AES-GCM sealing of gossip packets and loading of the shared gossip key."""
from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path
from typing import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from axon.gossip.errors import CodecError, GossipError

KEY_SIZES = (16, 24, 32)
NONCE_SIZE = 12
TAG_SIZE = 16
OVERHEAD = NONCE_SIZE + TAG_SIZE


def check_key(key: bytes) -> bytes:
    if not isinstance(key, (bytes, bytearray)) or len(key) not in KEY_SIZES:
        raise GossipError("gossip key must be 16, 24 or 32 bytes")
    return bytes(key)


def load_key(path: str | os.PathLike) -> bytes:
    """Read a key file: raw 16/24/32 bytes, or that many bytes as base64 or hex text."""
    raw = Path(path).read_bytes()
    if len(raw) in KEY_SIZES:
        return raw
    text = raw.strip()
    for decode in (_from_hex, _from_base64):
        key = decode(text)
        if key is not None and len(key) in KEY_SIZES:
            return key
    raise GossipError(f"{path}: not a 16/24/32-byte key (raw, hex or base64)")


def _from_hex(text: bytes) -> bytes | None:
    try:
        return binascii.unhexlify(text)
    except (binascii.Error, ValueError):
        return None


def _from_base64(text: bytes) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


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

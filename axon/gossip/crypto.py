"""Sealing of gossip packets: keys derived from the cluster key, one subkey per sender boot.

The gossip key is ``derive_key(cluster_key, b"gossip")`` (HKDF-SHA256, 32 bytes), so
gossip never uses the cluster key itself and a gossip key reveals nothing about the Raft
keys.  Every sender start ("boot") picks a random 16-byte boot id and seals its packets
under ``HKDF(gossip_key, salt=boot id)`` with ChaCha20-Poly1305, the AEAD of the Raft
channel (axon.security.channel).  The 96-bit nonce is the sender's packet counter, which
only grows within a boot: nonces never repeat under one key, by construction rather than
by chance -- random nonces under a key shared by every member would approach the
birthday bound over a long-lived cluster.  Key files are read by axon.keys.
"""
from __future__ import annotations

import logging
import os
import struct
from collections import OrderedDict

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from axon.gossip.errors import CodecError, GossipError
from axon.security.channel import derive_key

KEY_SIZES = (16, 24, 32)
KEY_SIZE = 32
BOOT_SIZE = 16
TAG_SIZE = 16
OVERHEAD = TAG_SIZE
MAX_COUNTER = (1 << 64) - 1
_BOOT_KEYS_CACHED = 256          # senders whose subkey we keep ready; more only costs an HKDF each
_NONCE_PAD = b"\0\0\0\0"


def check_key(key: bytes) -> bytes:
    """key as bytes if it is 16, 24 or 32 bytes long; raises GossipError."""
    if not isinstance(key, (bytes, bytearray)) or len(key) not in KEY_SIZES:
        raise GossipError("gossip key must be 16, 24 or 32 bytes")
    return bytes(key)


def gossip_key_for(cluster_key: bytes | None, legacy_gossip_key: bytes | None = None,
                   log: logging.Logger | None = None) -> bytes | None:
    """The gossip key of a node: derived from the cluster key, else from the deprecated gossip key file.

    The old ``--gossip-key-file`` is an alias of the cluster key for gossip only: derived the
    same way, so a file given as ``--gossip-key-file`` to one node and ``--cluster-key-file``
    to another gives both the same gossip key.  Logs one warning line when the alias is used.
    """
    log = log or logging.getLogger("axon.gossip")
    if cluster_key is not None:
        if legacy_gossip_key is not None:
            log.warning("--gossip-key-file is ignored: gossip is keyed from --cluster-key-file "
                        "(drop --gossip-key-file / AXON_GOSSIP_KEY_FILE)")
        return derive_key(cluster_key, b"gossip")
    if legacy_gossip_key is not None:
        log.warning("--gossip-key-file is deprecated: give the same file as --cluster-key-file, "
                    "which keys Raft, gossip and join admission")
        return derive_key(legacy_gossip_key, b"gossip")
    return None


def new_boot_id() -> bytes:
    """A sender's random id for one run: its packets' subkey and replay identity."""
    return os.urandom(BOOT_SIZE)


def boot_key(gossip_key: bytes, boot: bytes) -> bytes:
    """The subkey one sender boot seals with."""
    return derive_key(gossip_key, b"gossip packet", salt=boot)


class Cipher:
    """Seals and opens packets under per-boot subkeys of one gossip key."""

    def __init__(self, key: bytes) -> None:
        self._key = check_key(key)
        self._aeads: OrderedDict[bytes, ChaCha20Poly1305] = OrderedDict()

    def seal(self, boot: bytes, counter: int, header: bytes, plaintext: bytes) -> bytes:
        """Ciphertext and tag; the caller guarantees (boot, counter) is never used twice."""
        aead = self._aeads.get(boot)
        if aead is None:
            aead = self._remember(boot, ChaCha20Poly1305(boot_key(self._key, boot)))
        return aead.encrypt(_nonce(counter), plaintext, header)

    def open(self, boot: bytes, counter: int, header: bytes, sealed: bytes) -> bytes:
        """The plaintext; CodecError("decrypt") when the tag does not verify."""
        if len(sealed) < TAG_SIZE:
            raise CodecError("truncated", "shorter than the tag")
        aead = self._aeads.get(boot)
        known = aead is not None
        if aead is None:
            aead = ChaCha20Poly1305(boot_key(self._key, boot))
        try:
            plaintext = aead.decrypt(_nonce(counter), sealed, header)
        except InvalidTag:
            raise CodecError("decrypt", "authentication failed (wrong key or tampered)") from None
        if known:
            self._aeads.move_to_end(boot)
        else:
            # cached only once authentic: forged boot ids cannot push real senders out
            self._remember(boot, aead)
        return plaintext

    def _remember(self, boot: bytes, aead: ChaCha20Poly1305) -> ChaCha20Poly1305:
        self._aeads[boot] = aead
        if len(self._aeads) > _BOOT_KEYS_CACHED:
            self._aeads.popitem(last=False)
        return aead


def _nonce(counter: int) -> bytes:
    return _NONCE_PAD + struct.pack(">Q", counter)

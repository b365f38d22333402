"""axon.keys: one decoding of a key file for every reader, private key files, and new keys."""
from __future__ import annotations

import base64
import os
import stat
import sys

import pytest

from axon import config, keys
from axon.gossip.crypto import Cipher
from axon.testing.cluster import REPO_ROOT


def key_file(tmp_path, contents: bytes, mode: int = 0o600, name: str = "k"):
    path = tmp_path / name
    path.write_bytes(contents)
    path.chmod(mode)
    return path


@pytest.mark.parametrize("contents, key", [
    (b"00112233445566778899aabbccddeeff", bytes.fromhex("00112233445566778899aabbccddeeff")),
    (b"  00112233445566778899AABBCCDDEEFF\n", bytes.fromhex("00112233445566778899aabbccddeeff")),
    (base64.b64encode(bytes(range(32))) + b"\n", bytes(range(32))),
    (base64.b64encode(bytes(range(24))), bytes(range(24))),
    (b"a-shared-secret-of-enough-bytes\n", b"a-shared-secret-of-enough-bytes"),
    (b"0123456789abcdef0123456789abcdefX", b"0123456789abcdef0123456789abcdefX"),   # not hex: as is
    (b"abc", b"abc"),   # odd-length hex and bad base64: as is
])
def test_decoding_order_hex_then_base64_then_as_is(contents: bytes, key: bytes) -> None:
    assert keys.decode_key(contents) == key


def test_keygen_output_is_never_read_as_hex() -> None:
    for _ in range(200):
        key = keys.new_key()
        assert len(key) == keys.KEY_BYTES
        assert keys.decode_key(keys.encode_key(key)) == key


def test_the_same_file_is_the_same_key_everywhere(tmp_path) -> None:
    """32 hex characters were once 16 bytes to the node and 32 raw bytes to bench/gossip_node.py."""
    path = key_file(tmp_path, b"00112233445566778899aabbccddeeff")   # no newline: the old trap
    expected = bytes.fromhex("00112233445566778899aabbccddeeff")
    assert keys.load_key(path) == expected
    assert config.read_cluster_key(str(path)) == expected
    assert config.read_gossip_key(str(path)) == expected
    Cipher(expected)   # the gossip agent takes it
    sys.path.insert(0, os.path.join(REPO_ROOT, "bench"))
    try:
        import gossip_node
    finally:
        sys.path.remove(os.path.join(REPO_ROOT, "bench"))
    assert gossip_node.load_key is keys.load_key
    import axon.gossip.crypto
    assert not hasattr(axon.gossip.crypto, "load_key")   # no second loader


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o660, 0o666, 0o700 | 0o004])
def test_a_key_file_others_may_access_is_refused(tmp_path, mode: int) -> None:
    path = key_file(tmp_path, keys.encode_key(keys.new_key()), mode)
    with pytest.raises(keys.KeyFileError, match="chmod 600"):
        keys.load_key(path, "cluster key")
    with pytest.raises(config.ConfigError, match=f"cluster key file {path} .*chmod 600 {path}"):
        config.read_cluster_key(str(path))


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o700])
def test_private_key_files_are_read(tmp_path, mode: int) -> None:
    key = keys.new_key()
    assert keys.load_key(key_file(tmp_path, keys.encode_key(key), mode)) == key


def test_short_missing_and_oversized_key_files(tmp_path) -> None:
    with pytest.raises(keys.KeyFileError, match="too short"):
        keys.load_key(key_file(tmp_path, b"short\n"))
    with pytest.raises(keys.KeyFileError, match="too short"):
        keys.load_key(key_file(tmp_path, b"00112233445566778899aabbccddee", name="k2"))   # 15 bytes
    with pytest.raises(config.ConfigError, match="cannot read cluster key file"):
        config.read_cluster_key(str(tmp_path / "missing"))
    with pytest.raises(keys.KeyFileError, match="larger than"):
        keys.load_key(key_file(tmp_path, b"x" * (keys.MAX_KEY_FILE_BYTES + 1), name="big"))
    assert config.read_cluster_key(None) is None and config.read_gossip_key("") is None


def test_a_gossip_key_must_be_an_aes_key_size(tmp_path) -> None:
    path = key_file(tmp_path, b"a-shared-secret-of-enough-bytes")   # 31 bytes: fine for Raft's HMAC
    assert config.read_cluster_key(str(path)) == b"a-shared-secret-of-enough-bytes"
    with pytest.raises(config.ConfigError, match="16, 24 or 32"):
        config.read_gossip_key(str(path))


def test_write_key_file_is_0600_whatever_the_umask(tmp_path) -> None:
    old = os.umask(0)
    try:
        keys.write_key_file(tmp_path / "k", bytes(32))
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "k").st_mode) == 0o600
    assert (tmp_path / "k").read_bytes() == base64.b64encode(bytes(32)) + b"\n"
    with pytest.raises(keys.KeyFileError, match="already exists"):
        keys.write_key_file(tmp_path / "k", bytes(32))

"""The peer channel's key schedule and frame sealing (pure, no sockets)."""
from __future__ import annotations

import os

import pytest

from axon.security.channel import (ChannelError, FrameOpener, FrameSealer, check_proof, derive_key,
                                   fresh_nonce, session_keys, transcript_proof)

KEY = bytes(range(32))


def _pair(key: bytes = KEY, cn: bytes | None = None, sn: bytes | None = None):
    cn, sn = cn or fresh_nonce(), sn or fresh_nonce()
    return session_keys(key, "raft", "n1", "n2", cn, sn), cn, sn


def test_both_sides_derive_the_same_keys_and_directions_differ():
    keys, cn, sn = _pair()
    again = session_keys(KEY, "raft", "n1", "n2", cn, sn)
    assert keys == again
    assert len({keys.client_to_server, keys.server_to_client, keys.proof}) == 3


@pytest.mark.parametrize("change", ["key", "use", "client", "server", "client_nonce", "server_nonce"])
def test_any_input_changes_every_key(change):
    keys, cn, sn = _pair()
    args = dict(cluster_key=KEY, use="raft", client_id="n1", server_id="n2", client_nonce=cn, server_nonce=sn)
    args[{"key": "cluster_key", "use": "use", "client": "client_id", "server": "server_id",
          "client_nonce": "client_nonce", "server_nonce": "server_nonce"}[change]] = {
        "key": os.urandom(32), "use": "gossip", "client": "n3", "server": "n4",
        "client_nonce": fresh_nonce(), "server_nonce": fresh_nonce()}[change]
    other = session_keys(**args)
    assert other.client_to_server != keys.client_to_server
    assert other.server_to_client != keys.server_to_client
    assert other.proof != keys.proof


def test_ids_cannot_be_shifted_between_fields():
    cn, sn = fresh_nonce(), fresh_nonce()
    assert session_keys(KEY, "raft", "n1", "2n", cn, sn) != session_keys(KEY, "raft", "n12", "n", cn, sn)


def test_frames_round_trip_in_order():
    keys, _, _ = _pair()
    sealer, opener = FrameSealer(keys.client_to_server), FrameOpener(keys.client_to_server)
    frames = [b"", b"a", os.urandom(5000)]
    for f in frames:
        sealed = sealer.seal(f)
        assert len(f) < 64 or f not in sealed   # encrypted, not just signed
        assert opener.open(sealed) == f


def test_replayed_reordered_tampered_or_cross_direction_frames_fail():
    keys, _, _ = _pair()
    sealer = FrameSealer(keys.client_to_server)
    one, two = sealer.seal(b"one"), sealer.seal(b"two")
    opener = FrameOpener(keys.client_to_server)
    with pytest.raises(ChannelError):
        opener.open(two)                      # out of order
    opener = FrameOpener(keys.client_to_server)
    assert opener.open(one) == b"one"
    with pytest.raises(ChannelError):
        opener.open(one)                      # replayed
    opener = FrameOpener(keys.client_to_server)
    tampered = bytearray(one)
    tampered[0] ^= 1
    with pytest.raises(ChannelError):
        opener.open(bytes(tampered))
    with pytest.raises(ChannelError):
        FrameOpener(keys.server_to_client).open(one)   # reflected back at its sender


def test_frame_of_another_connection_fails():
    a, _, _ = _pair()
    b, _, _ = _pair()
    with pytest.raises(ChannelError):
        FrameOpener(b.client_to_server).open(FrameSealer(a.client_to_server).seal(b"x"))


def test_proofs_bind_role_transcript_and_key():
    keys, cn, sn = _pair()
    proof = transcript_proof(keys, b"client", b"transcript")
    check_proof(keys, b"client", b"transcript", proof)
    for role, transcript, k in ((b"server", b"transcript", keys), (b"client", b"other", keys),
                                (b"client", b"transcript", session_keys(os.urandom(32), "raft", "n1", "n2", cn, sn))):
        with pytest.raises(ChannelError):
            check_proof(k, role, transcript, proof)
    with pytest.raises(ChannelError):
        check_proof(keys, b"client", b"transcript", "not bytes")


def test_derived_keys_differ_by_use():
    assert derive_key(KEY, b"gossip") != derive_key(KEY, b"join")
    assert len(derive_key(KEY, b"gossip", 16)) == 16

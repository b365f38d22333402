"""The raft channel under attack: sealed frames, a man in the middle, forgers, other clusters, mTLS.

Real sockets on 127.0.0.1 with gevent (no monkey patching).  A ``Relay`` sits between two
transports and sees, keeps and may rewrite every frame the connecting side sends.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import sys
from typing import Callable

import gevent
import gevent.pool
import gevent.server
import gevent.socket
import msgpack
import pytest

from axon.raft.codec import PROTOCOL_VERSION, CodecError, FrameDecoder, encode_frame, encode_message
from axon.raft.transport import (HandshakeError, PeerTls, Refusal, TransportError, _FramedSocket,
                                 check_hello, check_reply, client_handshake, cluster_conflict, load_peer_tls,
                                 loopback_peer_uid, make_hello, make_reply, parse_address, seal_frame,
                                 server_handshake, socket_owner, transcript)
from axon.raft.types import Message, MsgType
from axon.security.channel import FrameOpener, FrameSealer, fresh_nonce
from axon.security.tls import make_ca, make_node_cert, write_private
from axon.testing.polling import wait_until
from transportnodes import node_maker

LOGGER = "axon.raft.transport"
KEY = os.urandom(32)
MARKER = b"plain-text-marker-0123456789"

pytestmark = pytest.mark.usefixtures("info_logs")


@pytest.fixture
def info_logs(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)


def log_text(caplog) -> str:
    return "\n".join(r.getMessage() for r in caplog.records)


def read_until_closed(sock: gevent.socket.socket) -> None:
    with gevent.Timeout(3, AssertionError("the node did not close the connection")):
        try:
            while sock.recv(4096):
                pass
        except ConnectionResetError:
            pass


def msg(src: str, dst: str, index: int = 0, **fields) -> Message:
    return Message(MsgType.APPEND, src, dst, term=1, index=index, **fields)


@pytest.fixture
def make_node():
    with node_maker(max_backoff=0.2) as make:
        yield make


Tamper = Callable[[int, int, bytes], bytes]   # (connection, frame number, payload) -> bytes to forward


class Relay:
    """A man in the middle: forwards client->server frames through ``tamper``, the rest as is."""

    def __init__(self, target: str, tamper: Tamper | None = None, frames: bool = True) -> None:
        """``frames=False``: forward bytes as they come (for TLS, whose records are not our frames)."""
        self.target = parse_address(target)
        self.tamper = tamper or (lambda _c, _f, payload: encode_frame(payload))
        self.parse = frames
        self.frames: list[list[bytes]] = []      # per connection, client->server payloads as sent
        self.wire = bytearray()                  # every byte the clients sent
        self.server_closed: list[bool] = []      # per connection: the server hung up on it
        self.sockets: list[gevent.socket.socket] = []
        self.server = gevent.server.StreamServer(("127.0.0.1", 0), self._handle, spawn=gevent.pool.Pool(16))
        self.server.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.server_port}"

    def _handle(self, client: gevent.socket.socket, _addr) -> None:
        number = len(self.frames)
        frames: list[bytes] = []
        self.frames.append(frames)
        self.server_closed.append(False)
        upstream = gevent.socket.create_connection(self.target)
        self.sockets += [client, upstream]
        down = gevent.spawn(self._down, upstream, client, number)
        decoder = FrameDecoder(1 << 30)
        try:
            while True:
                data = client.recv(65536)
                if not data:
                    break
                self.wire += data
                if not self.parse:
                    upstream.sendall(data)
                    continue
                for payload in decoder.feed(data):
                    frames.append(payload)
                    upstream.sendall(self.tamper(number, len(frames) - 1, payload))
        except OSError:
            pass
        finally:
            down.join(timeout=2)
            client.close()
            upstream.close()

    def _down(self, upstream, client, number: int) -> None:
        try:
            while True:
                data = upstream.recv(65536)
                if not data:
                    break
                client.sendall(data)
        except OSError:
            pass
        self.server_closed[number] = True
        client.close()

    def cut(self) -> None:
        """Close every connection it relays (the clients reconnect)."""
        for sock in self.sockets:
            sock.close()

    def stop(self) -> None:
        self.cut()
        self.server.stop(timeout=0.5)


@pytest.fixture
def relays():
    made: list[Relay] = []

    def make(target: str, tamper: Tamper | None = None, frames: bool = True) -> Relay:
        made.append(Relay(target, tamper, frames))
        return made[-1]

    yield make
    for relay in made:
        relay.stop()


def through_relay(make_node, relays, tamper: Tamper | None = None, key: bytes | None = KEY):
    """n1 -> relay -> n2, both with ``key``; returns n1, n2 and the relay."""
    n1, n2 = make_node("n1", cluster_key=key), make_node("n2", cluster_key=key)
    relay = relays(n2.address, tamper)
    n1.transport.set_peers({"n2": relay.address})
    return n1, n2, relay


SEALED = 2    # the client's frames 0 and 1 are the hello and the answer; then messages


def flip_byte(connection: int, frame: int) -> Tamper:
    def tamper(c: int, f: int, payload: bytes) -> bytes:
        if (c, f) == (connection, frame):
            payload = payload[:5] + bytes([payload[5] ^ 0x01]) + payload[6:]
        return encode_frame(payload)
    return tamper


# ---------------------------------------------------------------- pure steps

def test_transcript_is_canonical_and_covers_every_field() -> None:
    hello = make_hello("n1", True, "c1", fresh_nonce(), "127.0.0.1:7001")
    reply = make_reply("n2", "c1", fresh_nonce())
    shown = transcript(hello, reply)
    assert transcript(dict(reversed(list(hello.items()))), dict(reversed(list(reply.items())))) == shown
    for name in hello:
        assert transcript({**hello, name: "changed"}, reply) != shown, name
    for name in reply:
        assert transcript(hello, {**reply, name: "changed"}) != shown, name
    assert transcript({**hello, "extra": 1}, reply) != shown
    assert transcript(reply, hello) != shown


def test_hello_checks() -> None:
    hello = make_hello("n1", True, "c1", fresh_nonce(), None)
    peer = check_hello(hello, keyed_here=True, cluster_here="c1", remote="10.0.0.1:5555")
    assert (peer.node_id, peer.cluster, peer.nonce) == ("n1", "c1", hello["nonce"])
    assert check_hello({**hello, "cluster": None}, keyed_here=True, cluster_here="c1", remote="r").cluster is None
    assert check_hello(hello, keyed_here=True, cluster_here=None, remote="r").node_id == "n1"
    with pytest.raises(Refusal) as refused:
        check_hello(hello, keyed_here=True, cluster_here="c2", remote="10.0.0.1:5555")
    assert refused.value.line("10.0.0.1:5555") == \
        "raft peer n1 at 10.0.0.1 belongs to cluster c1, this node to cluster c2; refusing"
    assert refused.value.wire()["cluster"] == "c2"
    with pytest.raises(Refusal, match="its certificate names 'n9'"):
        check_hello(hello, keyed_here=True, cluster_here=None, remote="r", cert_id="n9")
    with pytest.raises(Refusal, match="uses a cluster key but none is configured here"):
        check_hello(hello, keyed_here=False, cluster_here=None, remote="r")
    with pytest.raises(Refusal, match="protocol version 1 not supported"):
        check_hello({**hello, "version": 1}, keyed_here=True, cluster_here=None, remote="r")
    for bad in ({"nonce": b"short"}, {"cluster": 5}, {"cluster": "a\nb"}, {"node": ""}, {"node": "x\ny"}):
        with pytest.raises(HandshakeError, match="malformed"):
            check_hello({**hello, **bad}, keyed_here=True, cluster_here=None, remote="r")


def test_reply_checks() -> None:
    reply = make_reply("n2", "c1", fresh_nonce())
    where = "raft peer n2 at 127.0.0.1:7001"
    args = dict(where=where, peer_id="n2", address="127.0.0.1:7001")
    assert check_reply(reply, cluster_here="c1", **args) == reply["nonce"]
    assert check_reply(reply, cluster_here=None, **args) == reply["nonce"]
    with pytest.raises(Refusal, match="127.0.0.1:7001 belongs to cluster c1, this node to cluster c9; refusing"):
        check_reply(reply, cluster_here="c9", **args)
    with pytest.raises(Refusal, match="identifies as 'n3', expected 'n2'"):
        check_reply({**reply, "node": "n3"}, cluster_here=None, **args)
    with pytest.raises(Refusal, match="presents a certificate for 'n3'"):
        check_reply(reply, cluster_here=None, cert_id="n3", **args)


def test_cluster_conflict_only_when_both_sides_know() -> None:
    assert cluster_conflict("a", "b")
    assert not cluster_conflict("a", "a") and not cluster_conflict(None, "b") and not cluster_conflict("a", None)


def test_a_frame_that_cannot_be_sent_does_not_use_a_sequence_number(monkeypatch) -> None:
    sealer, opener = FrameSealer(KEY), FrameOpener(KEY)
    monkeypatch.setattr("axon.raft.transport.TAG_SIZE", 1 << 32)   # as if the payload were huge
    with pytest.raises(CodecError):
        seal_frame(sealer, b"too big")
    monkeypatch.undo()
    frame = seal_frame(sealer, b"next")
    assert opener.open(FrameDecoder().feed(frame)[0]) == b"next"


# ---------------------------------------------------------------- sealed frames

@pytest.mark.parametrize("key", [KEY, None], ids=["key", "no-key"])
def test_round_trip_through_a_relay(make_node, relays, key) -> None:
    n1, n2, relay = through_relay(make_node, relays, key=key)
    for i in range(100):
        n1.transport.send(msg("n1", "n2", i, data=MARKER))
    wait_until(lambda: len(n2.received) == 100, what="delivery")
    assert [m.index for m in n2.received] == list(range(100))
    assert all(m.data == MARKER for m in n2.received)
    # with a key the values cross the wire unreadable; without one they are there in clear
    assert (MARKER in bytes(relay.wire)) is (key is None)
    assert n2.transport.auth_failures == 0


def test_frames_are_sealed_in_both_the_fast_path_and_the_writer(make_node, relays) -> None:
    """A lone message goes from the caller's greenlet, a burst through the writer: both sealed, in order."""
    n1, n2, relay = through_relay(make_node, relays)
    n1.transport.send(msg("n1", "n2", 0, data=MARKER))
    wait_until(lambda: len(n2.received) == 1, what="the link")
    for i in range(1, 2000):
        n1.transport.send(msg("n1", "n2", i, data=MARKER))
    wait_until(lambda: len(n2.received) == 2000, what="delivery")
    assert [m.index for m in n2.received] == list(range(2000))
    assert MARKER not in bytes(relay.wire)


def test_a_flipped_byte_is_refused_counted_and_closes_the_connection(make_node, relays, caplog) -> None:
    n1, n2, relay = through_relay(make_node, relays, flip_byte(0, SEALED + 2))
    for i in range(5):
        n1.transport.send(msg("n1", "n2", i))
    wait_until(lambda: relay.server_closed and relay.server_closed[0], what="the server to hang up")
    assert [m.index for m in n2.received] == [0, 1]     # nothing from the tampered frame on
    assert n2.transport.auth_failures == 1
    assert "a frame failed authentication (tampered, replayed or forged)" in log_text(caplog)
    wait_until(lambda: not n1.transport.is_connected("n2"), what="the client to notice")
    n1.transport.send(msg("n1", "n2", 9))             # a new connection has new keys: it works
    wait_until(lambda: [m.index for m in n2.received] == [0, 1, 9], what="delivery on a new connection")


def test_a_changed_length_prefix_is_refused(make_node, relays) -> None:
    def tamper(c: int, f: int, payload: bytes) -> bytes:
        if (c, f) == (0, SEALED + 1):
            return encode_frame(payload[:-1]) + payload[-1:]   # cut the frame one byte short
        return encode_frame(payload)

    n1, n2, relay = through_relay(make_node, relays, tamper)
    n1.transport.send(msg("n1", "n2", 0))
    wait_until(lambda: len(n2.received) == 1, what="the first message")
    n1.transport.send(msg("n1", "n2", 1))
    wait_until(lambda: relay.server_closed[0], what="the server to hang up")
    assert [m.index for m in n2.received] == [0]
    assert n2.transport.auth_failures == 1


def test_a_replayed_frame_is_refused(make_node, relays) -> None:
    def tamper(c: int, f: int, payload: bytes) -> bytes:
        if (c, f) == (0, SEALED + 1):     # the first message again, where the second belongs
            return encode_frame(relay.frames[0][SEALED]) + encode_frame(payload)
        return encode_frame(payload)

    n1, n2, relay = through_relay(make_node, relays, tamper)
    n1.transport.send(msg("n1", "n2", 0))
    wait_until(lambda: len(n2.received) == 1, what="the first message")
    n1.transport.send(msg("n1", "n2", 1))
    wait_until(lambda: relay.server_closed[0], what="the server to hang up")
    assert [m.index for m in n2.received] == [0]
    assert n2.transport.auth_failures == 1


def test_a_frame_of_an_earlier_connection_is_refused(make_node, relays) -> None:
    def tamper(c: int, f: int, payload: bytes) -> bytes:
        if (c, f) == (1, SEALED):         # the recorded first message of connection 0
            return encode_frame(relay.frames[0][SEALED])
        return encode_frame(payload)

    n1, n2, relay = through_relay(make_node, relays, tamper)
    n1.transport.send(msg("n1", "n2", 0))
    wait_until(lambda: len(n2.received) == 1, what="the first message")
    relay.cut()
    wait_until(lambda: not n1.transport.is_connected("n2"), what="the cut to be noticed")
    n1.transport.send(msg("n1", "n2", 1))
    wait_until(lambda: len(relay.server_closed) == 2 and relay.server_closed[1], what="the server to hang up")
    assert [m.index for m in n2.received] == [0]
    assert n2.transport.auth_failures == 1


def test_a_forger_without_the_key_gets_nothing_delivered(make_node) -> None:
    """A raw socket that speaks the handshake, claiming to be the leader, without the key."""
    n2 = make_node("n2", cluster_key=KEY)
    forged = encode_frame(encode_message(msg("n1", "n2", 7, data=b"evil")))
    attempts = [
        {"ok": True, "proof": os.urandom(32)},     # a proof made up
        {"ok": True},                             # no proof at all
        None,                                     # no answer: straight to a message
    ]
    for answer in attempts:
        sock = gevent.socket.create_connection(parse_address(n2.address), timeout=2)
        conn = _FramedSocket(sock, 65536)
        conn.write_map(make_hello("n1", True, None, fresh_nonce(), None))
        reply = conn.read_map()
        assert "proof" in reply
        if answer is not None:
            conn.write_map(answer)
        sock.sendall(forged + forged)
        read_until_closed(sock)
        sock.close()
    # and one that says it has no key, or lies about the version
    for hello in (make_hello("n1", False, None, fresh_nonce(), None),):
        sock = gevent.socket.create_connection(parse_address(n2.address), timeout=2)
        conn = _FramedSocket(sock, 65536)
        conn.write_map(hello)
        assert conn.read_map()["reason"] == "key-required"
        sock.close()
    gevent.sleep(0.2)
    assert n2.received == []
    assert not n2.transport._learned


def test_without_a_key_the_channel_is_unauthenticated_as_documented(make_node) -> None:
    """The known limit of a cluster without a key (loopback only): any claimed id is believed."""
    n2 = make_node("n2")
    sock = gevent.socket.create_connection(parse_address(n2.address), timeout=2)
    client_handshake(_FramedSocket(sock, 65536), "n1", None, "n2", n2.address)
    sock.sendall(encode_frame(encode_message(msg("n1", "n2", 7))))
    wait_until(lambda: len(n2.received) == 1, what="delivery")
    sock.close()


# ---------------------------------------------------------------- clusters, keys, versions

def test_another_cluster_is_refused_with_a_line_on_both_sides(make_node, caplog) -> None:
    n1 = make_node("n1", cluster_key=KEY, cluster_id=lambda: "aaaa")
    n2 = make_node("n2", cluster_key=KEY, cluster_id=lambda: "bbbb")
    n1.transport.set_peers({"n2": n2.address})
    n1.transport.send(msg("n1", "n2"))
    expected = [f"raft peer n2 at {n2.address} belongs to cluster bbbb, this node to cluster aaaa; refusing",
                f"raft peer n1 at {n1.address} belongs to cluster aaaa, this node to cluster bbbb; refusing"]
    wait_until(lambda: all(line in log_text(caplog) for line in expected), what="both lines")
    n1.transport.send(msg("n1", "n2"))
    gevent.sleep(0.5)   # retries (backoff 0.2 s) must not repeat the lines
    assert [log_text(caplog).count(line) for line in expected] == [1, 1]
    assert n2.received == []


def test_a_node_without_a_cluster_id_yet_is_accepted_and_learns_one(make_node) -> None:
    ids = {"n1": None}
    n1 = make_node("n1", cluster_key=KEY, cluster_id=lambda: ids["n1"])
    n2 = make_node("n2", cluster_key=KEY, cluster_id=lambda: "cccc")
    n3 = make_node("n3", cluster_key=KEY)          # no cluster_id at all
    n1.transport.set_peers({"n2": n2.address, "n3": n3.address})
    n2.transport.set_peers({"n1": n1.address})
    n1.transport.send(msg("n1", "n2", 1))
    n1.transport.send(msg("n1", "n3", 1))
    n2.transport.send(msg("n2", "n1", 1))
    wait_until(lambda: n2.received and n3.received and n1.received, what="delivery")
    ids["n1"] = "cccc"                               # joined: the next handshakes carry it
    n1.transport._links["n2"].close()
    n1.transport.set_peers({})
    n1.transport.set_peers({"n2": n2.address})
    n1.transport.send(msg("n1", "n2", 2))
    wait_until(lambda: len(n2.received) == 2, what="delivery with the id")


def test_an_old_peer_is_refused_with_a_version_line(make_node, caplog) -> None:
    n2 = make_node("n2")
    sock = gevent.socket.create_connection(parse_address(n2.address), timeout=2)
    conn = _FramedSocket(sock, 65536)
    conn.write_map({"hello": "axon-raft", "version": 1, "node": "n1", "keyed": False})   # as v1 sent it
    assert conn.read_map()["detail"] == f"protocol version 1 not supported (ours {PROTOCOL_VERSION})"
    sock.close()
    wait_until(lambda: f"protocol version 1 not supported (ours {PROTOCOL_VERSION})" in log_text(caplog),
               what="the server's line")


def test_an_old_server_refusal_reads_clearly_at_the_client(caplog) -> None:
    def old_server(sock, _addr) -> None:
        conn = _FramedSocket(sock, 65536)
        conn.read_map()
        conn.write_map({"ok": False, "reason": "version", "detail": "protocol version 2 not supported (ours 1)"})

    server = gevent.server.StreamServer(("127.0.0.1", 0), old_server, spawn=gevent.pool.Pool(4))
    server.start()
    try:
        sock = gevent.socket.create_connection(("127.0.0.1", server.server_port), timeout=2)
        with pytest.raises(HandshakeError, match="refused our connection: protocol version 2 not supported"):
            client_handshake(_FramedSocket(sock, 65536), "n1", KEY, "n2", "127.0.0.1:1")
        sock.close()
    finally:
        server.stop(timeout=0.5)


def test_handshake_functions_agree_on_keys(make_node) -> None:
    """The client's and the server's session keys match: a sealed frame opens on the other side."""
    accepted: list = []

    def server(sock, _addr) -> None:
        conn = _FramedSocket(sock, 65536)
        accepted.append(server_handshake(conn, "n2", KEY, cluster="c", remote="r"))
        accepted.append(conn.read())

    listener = gevent.server.StreamServer(("127.0.0.1", 0), server, spawn=gevent.pool.Pool(4))
    listener.start()
    try:
        sock = gevent.socket.create_connection(("127.0.0.1", listener.server_port), timeout=2)
        keys = client_handshake(_FramedSocket(sock, 65536), "n1", KEY, "n2", "x:1", cluster="c")
        sock.sendall(seal_frame(FrameSealer(keys.client_to_server), b"hello"))
        wait_until(lambda: len(accepted) == 2, what="the sealed frame")
        session, sealed = accepted
        assert session.keys == keys and session.peer.node_id == "n1"
        assert FrameOpener(session.keys.client_to_server).open(sealed) == b"hello"
        sock.close()
    finally:
        listener.stop(timeout=0.5)


# ---------------------------------------------------------------- peer mTLS

@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, tuple[str, str, str]]:
    """name -> (cert, key, ca) files: n1..n3 of the cluster CA, "n9" of it too, "rogue-n2" of another CA."""
    directory = tmp_path_factory.mktemp("pki")
    ca, other = make_ca(), make_ca("Other CA")
    paths = {}
    for label, issuer in (("ca", ca), ("other-ca", other)):
        paths[label] = str(directory / f"{label}.crt")
        (directory / f"{label}.crt").write_bytes(issuer.cert_pem)
    out = {}
    for name, node_id, issuer, trust in (("n1", "n1", ca, "ca"), ("n2", "n2", ca, "ca"), ("n3", "n3", ca, "ca"),
                                         ("n9", "n9", ca, "ca"), ("rogue-n2", "n2", other, "ca"),
                                         ("rogue-ca-n2", "n2", other, "other-ca")):
        issued = make_node_cert(issuer, node_id, ["127.0.0.1"])
        cert, key = str(directory / f"{name}.crt"), str(directory / f"{name}.key")
        (directory / f"{name}.crt").write_bytes(issued.cert_pem)
        write_private(key, issued.key_pem)
        out[name] = (cert, key, paths[trust])
    return out


def tls(pki, name: str) -> PeerTls:
    return load_peer_tls(*pki[name])


@pytest.mark.parametrize("key", [None, KEY], ids=["tls", "tls+key"])
def test_mtls_with_matching_certificates_works(make_node, relays, pki, key, caplog) -> None:
    n1, n2 = make_node("n1", peer_tls=tls(pki, "n1"), cluster_key=key), make_node("n2", peer_tls=tls(pki, "n2"),
                                                                                cluster_key=key)
    relay = relays(n2.address, frames=False)
    n1.transport.set_peers({"n2": relay.address})
    n2.transport.set_peers({"n1": n1.address})
    for i in range(300):
        n1.transport.send(msg("n1", "n2", i, data=MARKER))
    n2.transport.send(msg("n2", "n1", 0))
    wait_until(lambda: len(n2.received) == 300 and len(n1.received) == 1, what="delivery over TLS")
    assert [m.index for m in n2.received] == list(range(300))
    assert MARKER not in bytes(relay.wire)
    assert "connected to raft peer n2" in log_text(caplog) and "(TLS" in log_text(caplog)


def test_mtls_refuses_a_server_certificate_of_another_ca(make_node, pki, caplog) -> None:
    n1, n2 = make_node("n1", peer_tls=tls(pki, "n1")), make_node("n2", peer_tls=tls(pki, "rogue-ca-n2"))
    n1.transport.set_peers({"n2": n2.address})
    n1.transport.send(msg("n1", "n2"))
    wait_until(lambda: f"raft peer n2 at {n2.address}: TLS failed: CERTIFICATE_VERIFY_FAILED" in log_text(caplog),
               what="the client's line")
    wait_until(lambda: "refused raft connection from 127.0.0.1:" in log_text(caplog)
               and "TLS failed" in log_text(caplog), what="the server's line")
    assert n2.received == []


def test_mtls_refuses_a_client_certificate_of_another_ca(make_node, pki, caplog) -> None:
    n1, n2 = make_node("n1", peer_tls=tls(pki, "rogue-n2")), make_node("n2", peer_tls=tls(pki, "n2"))
    n1.transport.set_peers({"n2": n2.address})
    n1.transport.send(msg("n1", "n2"))
    wait_until(lambda: "TLS failed: CERTIFICATE_VERIFY_FAILED" in log_text(caplog)
               and "refused raft connection from 127.0.0.1:" in log_text(caplog), what="the server's line")
    wait_until(lambda: f"raft peer n2 at {n2.address}: TLS failed" in log_text(caplog), what="the client's line")
    assert n2.received == [] and not n1.transport.is_connected("n2")


def test_mtls_refuses_a_node_id_its_certificate_does_not_name(make_node, pki, caplog) -> None:
    impostor = make_node("n1", peer_tls=tls(pki, "n9"))     # a valid certificate, but of n9
    n2 = make_node("n2", peer_tls=tls(pki, "n2"))
    impostor.transport.set_peers({"n2": n2.address})
    impostor.transport.send(msg("n1", "n2"))
    wait_until(lambda: "peer claims node id n1 but its certificate names 'n9'" in log_text(caplog),
               what="the server's line")
    wait_until(lambda: f"raft peer n2 at {n2.address} refused our connection: your certificate names 'n9', "
                       f"not 'n1'" in log_text(caplog), what="the client's line")
    assert n2.received == []


def test_mtls_client_refuses_a_server_whose_certificate_names_another_node(make_node, pki, caplog) -> None:
    n1 = make_node("n1", peer_tls=tls(pki, "n1"))
    n2 = make_node("n2", peer_tls=tls(pki, "n3"))            # answers as n2 with n3's certificate
    n1.transport.set_peers({"n2": n2.address})
    n1.transport.send(msg("n1", "n2"))
    wait_until(lambda: f"raft peer n2 at {n2.address} presents a certificate for 'n3'; refusing"
               in log_text(caplog), what="the client's line")
    wait_until(lambda: "refused our handshake: your certificate names 'n3', not 'n2'" in log_text(caplog),
               what="the server's line")
    assert n2.received == []


def test_mtls_refuses_a_plain_client(make_node, pki, caplog) -> None:
    n2 = make_node("n2", peer_tls=tls(pki, "n2"))
    sock = gevent.socket.create_connection(parse_address(n2.address), timeout=2)
    with pytest.raises((HandshakeError, OSError)):
        client_handshake(_FramedSocket(sock, 65536), "n1", None, "n2", n2.address)
    sock.close()
    wait_until(lambda: "TLS failed" in log_text(caplog), what="the server's line")
    assert n2.received == []


def test_peer_tls_files_go_together(pki, tmp_path) -> None:
    cert, key, ca = pki["n1"]
    assert load_peer_tls(None, None, None) is None
    with pytest.raises(TransportError, match="go together"):
        load_peer_tls(cert, key, None)
    with pytest.raises(TransportError, match="peer TLS: cannot load"):
        load_peer_tls(str(tmp_path / "missing.crt"), key, ca)


def test_unknown_refusal_fields_do_not_reach_the_log_unsafely(make_node, caplog) -> None:
    def hostile(sock, _addr) -> None:
        conn = _FramedSocket(sock, 65536)
        conn.read_map()
        conn.write_map({"ok": False, "reason": "x", "detail": "line one\nforged: line two"})

    server = gevent.server.StreamServer(("127.0.0.1", 0), hostile, spawn=gevent.pool.Pool(4))
    server.start()
    try:
        sock = gevent.socket.create_connection(("127.0.0.1", server.server_port), timeout=2)
        with pytest.raises(HandshakeError) as refused:
            client_handshake(_FramedSocket(sock, 65536), "n1", None, "n2", "127.0.0.1:1")
        assert "\n" not in str(refused.value)
        sock.close()
    finally:
        server.stop(timeout=0.5)


def test_hello_with_garbage_map_keys_is_malformed() -> None:
    decoder_input = msgpack.packb({1: "x"})
    sock_pair = gevent.socket.socketpair()
    try:
        sock_pair[0].sendall(encode_frame(decoder_input))
        with pytest.raises(HandshakeError, match="malformed"):
            _FramedSocket(sock_pair[1], 65536).read_map()
    finally:
        for s in sock_pair:
            s.close()


# ---------------------------------------------------------------- no key: this user's processes only

TCP_TABLE = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1B59 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 1 1 0 100 0 0 10 0
   1: 0100007F:D2AE 0100007F:1B59 01 00000000:00000000 00:00000000 00000000  1001        0 2 1 0 20 4 30 10 -1
   2: 0100007F:1B59 0100007F:D2AE 01 00000000:00000000 00:00000000 00000000  1000        0 3 1 0 20 4 30 10 -1
"""
TCP6_TABLE = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr
   0: 0000000000000000FFFF00000100007F:D2AF 0000000000000000FFFF00000100007F:1B59 01 00000000:00000000 00:0 0  1002 0 4
   1: 00000000000000000000000001000000:D2B0 00000000000000000000000001000000:1B59 01 00000000:00000000 00:0 0  1003 0 5
"""


@pytest.mark.skipif(sys.byteorder != "little", reason="the tables above were written on a little-endian host")
def test_socket_owner_reads_proc_net_tcp() -> None:
    assert socket_owner(TCP_TABLE, ("127.0.0.1", 53934), ("127.0.0.1", 7001)) == 1001
    assert socket_owner(TCP_TABLE, ("127.0.0.1", 7001), ("127.0.0.1", 53934)) == 1000
    assert socket_owner(TCP_TABLE, ("127.0.0.1", 1), ("127.0.0.1", 7001)) is None
    assert socket_owner(TCP6_TABLE, ("127.0.0.1", 53935), ("127.0.0.1", 7001)) == 1002   # v4-mapped
    assert socket_owner(TCP6_TABLE, ("::1", 53936), ("::1", 7001)) == 1003
    assert socket_owner("header only\n", ("127.0.0.1", 1), ("127.0.0.1", 2)) is None


def test_a_loopback_peer_of_this_user_is_known_as_such() -> None:
    listener = gevent.socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client = gevent.socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    try:
        expected = os.geteuid() if os.path.exists("/proc/net/tcp") else None
        assert loopback_peer_uid(server) == expected and loopback_peer_uid(client) == expected
    finally:
        for sock in (client, server, listener):
            sock.close()


NOBODY = 65534
as_root_on_linux = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0
                                      or not os.path.exists("/proc/net/tcp"),
                                      reason="runs a process as another user (needs root, Linux)")


def as_nobody(work: Callable[[int], None]) -> tuple[int, int]:
    """Fork a child that drops to uid nobody and runs ``work(pipe)``; returns (pid, read end of the pipe)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:   # the child: stdlib sockets only, never back into pytest
        code = 1
        try:
            os.close(read_end)
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            work(write_end)
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    return pid, read_end


def reap(pid: int) -> None:
    """Wait for the child without blocking the hub."""
    wait_until(lambda: os.waitpid(pid, os.WNOHANG)[0] == pid, timeout=10, what="the child to exit")


@as_root_on_linux
def test_without_a_key_another_users_process_is_refused(make_node, caplog) -> None:
    n2 = make_node("n2")
    host, port = parse_address(n2.address)

    def connect(pipe: int) -> None:
        with socket.create_connection((host, port), timeout=5) as sock:
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
        os.write(pipe, data)

    pid, pipe = as_nobody(connect)
    reap(pid)
    [refusal] = FrameDecoder().feed(os.read(pipe, 65536))
    os.close(pipe)
    assert msgpack.unpackb(refusal)["reason"] == "user"
    wait_until(lambda: f"a process of another user (uid {NOBODY})" in log_text(caplog), what="the line")
    assert n2.received == []


@as_root_on_linux
def test_without_a_key_a_port_held_by_another_user_is_not_trusted(make_node, caplog) -> None:

    def listen(pipe: int) -> None:
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(8)
            os.write(pipe, str(listener.getsockname()[1]).encode())
            os.close(pipe)
            while True:
                listener.accept()[0].recv(65536)

    pid, pipe = as_nobody(listen)
    try:
        port = int(os.read(pipe, 100))
        n1 = make_node("n1")
        n1.transport.set_peers({"n2": f"127.0.0.1:{port}"})
        n1.transport.send(msg("n1", "n2", data=MARKER))
        wait_until(lambda: f"raft peer n2 at 127.0.0.1:{port} is served by a process of another user "
                           f"(uid {NOBODY}); refusing without a cluster key" in log_text(caplog), what="the line")
        assert not n1.transport.is_connected("n2")
    finally:
        os.close(pipe)
        os.kill(pid, signal.SIGKILL)
        reap(pid)

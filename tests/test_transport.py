"""Tests for the TCP transport over real sockets on 127.0.0.1 (gevent, no monkey patching)."""
from __future__ import annotations

import logging
import os
import time
from typing import Callable

import gevent
import gevent.pool
import gevent.server
import gevent.socket
import msgpack
import pytest

from axon.raft.codec import PROTOCOL_VERSION, encode_frame, encode_message
from axon.raft.transport import (HandshakeError, TcpTransport, TransportError, _FramedSocket, _Rest,
                                 client_handshake, parse_address, server_handshake)
from axon.raft.types import Message, MsgType, SnapshotMeta
from axon.testing.polling import wait_until
from transportnodes import Node, node_maker

LOGGER = "axon.raft.transport"
HELLO = {"hello": "axon-raft", "version": PROTOCOL_VERSION, "node": "n1", "keyed": False, "cluster": None,
         "nonce": b"n" * 32}


def stays_true(condition: Callable[[], bool], duration: float) -> bool:
    """Poll ``condition`` for ``duration`` seconds; False as soon as it fails."""
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        if not condition():
            return False
        gevent.sleep(0.01)
    return condition()


@pytest.fixture
def make_node():
    with node_maker() as make:
        yield make


def connect_all(*nodes: Node) -> None:
    peers = {n.transport.node_id: n.address for n in nodes}
    for node in nodes:
        node.transport.set_peers(peers)


def msg(src: str, dst: str, index: int = 0, **fields) -> Message:
    return Message(MsgType.APPEND, src, dst, term=1, index=index, **fields)


def log_text(caplog) -> str:
    return "\n".join(r.getMessage() for r in caplog.records)


def free_port() -> int:
    sock = gevent.socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def raw_connect(address: str) -> gevent.socket.socket:
    return gevent.socket.create_connection(parse_address(address), timeout=2)


def read_until_closed(sock: gevent.socket.socket, timeout: float = 3.0) -> bytes:
    """Everything the server sends until it closes; fails if it does not close in time."""
    data = b""
    with gevent.Timeout(timeout, AssertionError("server did not close the connection")):
        while True:
            try:
                chunk = sock.recv(4096)
            except ConnectionResetError:
                return data
            if not chunk:
                return data
            data += chunk


def handshaken_client(address: str, node_id: str, peer_id: str, key: bytes | None = None):
    """A raw client socket that completed the handshake as ``node_id``."""
    sock = raw_connect(address)
    client_handshake(_FramedSocket(sock, 65536), node_id, key, peer_id, address)
    return sock


# ---------------------------------------------------------------- delivery

KEYS = pytest.mark.parametrize("key", [None, b"k" * 32], ids=["plain", "sealed"])


@KEYS
def test_two_transports_exchange_messages_in_order(make_node, key) -> None:
    n1, n2 = make_node("n1", cluster_key=key), make_node("n2", cluster_key=key)
    connect_all(n1, n2)
    for i in range(200):
        n1.transport.send(msg("n1", "n2", i))
        n2.transport.send(msg("n2", "n1", i))
    wait_until(lambda: len(n1.received) == 200 and len(n2.received) == 200, what="delivery")
    assert [m.index for m in n2.received] == list(range(200))
    assert [m.index for m in n1.received] == list(range(200))
    assert all(m.src == "n2" and m.dst == "n1" for m in n1.received)
    assert n1.transport.dropped == n2.transport.dropped == 0


def test_three_transports_all_to_all(make_node) -> None:
    nodes = [make_node(f"n{i}") for i in range(1, 4)]
    connect_all(*nodes)
    ids = [n.transport.node_id for n in nodes]
    for i in range(50):
        for node in nodes:
            for dst in ids:
                if dst != node.transport.node_id:
                    node.transport.send(msg(node.transport.node_id, dst, i))
    wait_until(lambda: all(len(n.received) == 100 for n in nodes), what="all-to-all delivery")
    for node in nodes:
        for src in ids:
            if src != node.transport.node_id:
                assert [m.index for m in node.received if m.src == src] == list(range(50))


@KEYS
def test_big_snapshot_chunks_pass(make_node, key) -> None:
    n1, n2 = make_node("n1", cluster_key=key), make_node("n2", cluster_key=key)
    connect_all(n1, n2)
    chunks = [os.urandom(1 << 20) for _ in range(3)]
    for offset, chunk in enumerate(chunks):
        n1.transport.send(Message(MsgType.SNAPSHOT, "n1", "n2", 2, snapshot=SnapshotMeta(100, 2),
                                  offset=offset << 20, data=chunk, done=offset == 2))
    wait_until(lambda: len(n2.received) == 3, what="snapshot chunks")
    assert [m.data for m in n2.received] == chunks
    assert n2.received[-1].done


def connected_pair(make_node, key: bytes | None = None) -> tuple[Node, Node, object]:
    """n1 -> n2 with the link up and idle (one message delivered); returns n1, n2 and the link."""
    n1, n2 = make_node("n1", cluster_key=key), make_node("n2", cluster_key=key)
    connect_all(n1, n2)
    n1.transport.send(msg("n1", "n2", 0))
    wait_until(lambda: len(n2.received) == 1, what="the link to come up")
    return n1, n2, n1.transport._links["n2"]


@KEYS
def test_idle_link_writes_at_once_and_a_partial_write_keeps_order(make_node, key) -> None:
    """With a key the big frame is sealed before its first byte goes: its rest keeps its place."""
    n1, n2, link = connected_pair(make_node, key)
    big = os.urandom(8 << 20)   # more than the socket buffers take in one send
    n1.transport.send(Message(MsgType.SNAPSHOT, "n1", "n2", 2, snapshot=SnapshotMeta(100, 2), data=big))
    assert isinstance(link._queue.peek_nowait(), _Rest), "an idle link writes from the caller"
    for i in range(1, 50):
        n1.transport.send(msg("n1", "n2", i))   # queued behind the rest of the big frame
    wait_until(lambda: len(n2.received) == 51, timeout=10.0, what="delivery")
    assert n2.received[1].data == big
    assert [m.index for m in n2.received if m.type is MsgType.APPEND] == list(range(50))
    assert n1.transport.dropped == 0
    assert n2.transport.auth_failures == 0


@KEYS
def test_rest_of_a_frame_is_never_sent_on_a_new_connection(make_node, key) -> None:
    n1, n2, link = connected_pair(make_node, key)
    stale = _Rest(object(), b"garbage that would corrupt the stream")
    link._queue.put_nowait(stale)   # as if the connection it belonged to had since been replaced
    n1.transport.send(msg("n1", "n2", 1))
    wait_until(lambda: len(n2.received) == 2, what="delivery after the stale rest")
    assert n2.received[1].index == 1


def test_send_to_unknown_peer_is_dropped_and_counted(make_node) -> None:
    n1 = make_node("n1")
    n1.transport.send(msg("n1", "nobody"))
    assert n1.transport.dropped == 1


def test_handler_exception_does_not_cut_connection(make_node, caplog) -> None:
    n1 = make_node("n1")
    seen: list[Message] = []

    def flaky(m: Message) -> None:
        seen.append(m)
        if m.index == 0:
            raise RuntimeError("boom")

    n2 = make_node("n2")
    n2.transport._on_message = flaky
    connect_all(n1, n2)
    n1.transport.send(msg("n1", "n2", 0))
    n1.transport.send(msg("n1", "n2", 1))
    wait_until(lambda: len(seen) == 2, what="both messages")
    assert "handler failed" in log_text(caplog)


# ---------------------------------------------------------------- reconnects and queues

@KEYS
def test_reconnect_after_peer_restarts_on_same_port(make_node, key) -> None:
    n1, n2 = make_node("n1", cluster_key=key), make_node("n2", cluster_key=key)
    connect_all(n1, n2)
    n1.transport.send(msg("n1", "n2", 1))
    wait_until(lambda: len(n2.received) == 1, what="first delivery")
    address = n2.address
    n2.transport.stop()
    wait_until(lambda: not n1.transport.is_connected("n2"), what="disconnect noticed")

    n2b = make_node("n2", listen=address, cluster_key=key)
    assert n2b.address == address
    counter = iter(range(100, 10_000))

    def delivered() -> bool:
        n1.transport.send(msg("n1", "n2", next(counter)))   # Raft keeps retransmitting too
        return len(n2b.received) > 0

    wait_until(delivered, what="delivery after restart")
    indexes = [m.index for m in n2b.received]
    assert indexes == sorted(indexes)


def test_bounded_queue_drops_instead_of_blocking_when_peer_down(make_node) -> None:
    n1 = make_node("n1", queue_size=10, max_backoff=0.2)
    n1.transport.set_peers({"n2": f"127.0.0.1:{free_port()}"})
    started = time.monotonic()
    for i in range(1000):
        n1.transport.send(msg("n1", "n2", i))
    assert time.monotonic() - started < 1.0
    assert n1.transport.dropped >= 990
    assert not n1.transport.is_connected("n2")


def test_queued_messages_flow_once_peer_appears(make_node) -> None:
    port = free_port()
    n1 = make_node("n1", queue_size=50, max_backoff=0.1)
    n1.transport.set_peers({"n2": f"127.0.0.1:{port}"})
    for i in range(5):
        n1.transport.send(msg("n1", "n2", i))
    gevent.sleep(0.05)   # let a connect attempt fail first
    n2 = make_node("n2", listen=f"127.0.0.1:{port}")
    wait_until(lambda: len(n2.received) == 5, what="queued delivery")
    assert [m.index for m in n2.received] == list(range(5))


def test_set_peers_removes_and_retargets(make_node) -> None:
    n1, n2 = make_node("n1"), make_node("n2")
    connect_all(n1, n2)
    n1.transport.send(msg("n1", "n2", 1))
    wait_until(lambda: len(n2.received) == 1, what="first delivery")

    n1.transport.set_peers({})
    before = n1.transport.dropped
    n1.transport.send(msg("n1", "n2", 2))
    assert n1.transport.dropped == before + 1

    n2b = make_node("n2")   # same id, new address
    n1.transport.set_peers({"n2": n2b.address})
    n1.transport.send(msg("n1", "n2", 3))
    wait_until(lambda: len(n2b.received) == 1, what="delivery to new address")
    assert n2b.received[0].index == 3 and len(n2.received) == 1


def test_a_peer_missing_from_the_configuration_is_answered_where_it_listens(make_node) -> None:
    """A member that missed the change adding n4 must still answer n4 (e.g. n4 leads now)."""
    n2, n4 = make_node("n2"), make_node("n4")
    n4.transport.set_peers({"n2": n2.address})
    n2.transport.set_peers({})
    n4.transport.send(msg("n4", "n2", 1))
    wait_until(lambda: len(n2.received) == 1, what="delivery to the member that missed the change")
    n2.transport.send(msg("n2", "n4", 2))
    wait_until(lambda: len(n4.received) == 1, what="the answer")
    assert n4.received[0].index == 2
    n2.transport.set_peers({"n3": n4.address})     # a later configuration still without n4
    n2.transport.send(msg("n2", "n4", 3))
    wait_until(lambda: len(n4.received) == 2, what="an answer after set_peers")


def test_learned_addresses_are_bounded(make_node, monkeypatch) -> None:
    monkeypatch.setattr("axon.raft.transport.MAX_LEARNED_PEERS", 1)
    n2, n4, n5 = make_node("n2"), make_node("n4"), make_node("n5")
    for sender in (n4, n5):
        sender.transport.set_peers({"n2": n2.address})
        sender.transport.send(msg(sender.transport.node_id, "n2", 1))
    wait_until(lambda: len(n2.received) == 2, what="both deliveries")
    before = n2.transport.dropped
    n2.transport.send(msg("n2", "n4", 2))
    n2.transport.send(msg("n2", "n5", 2))
    wait_until(lambda: len(n4.received) + len(n5.received) == 1, what="the answer to the first")
    assert n2.transport.dropped == before + 1


def test_the_configuration_wins_over_an_address_a_peer_gives(make_node) -> None:
    n2, n4, n4b = make_node("n2"), make_node("n4"), make_node("n4")
    n2.transport.set_peers({"n4": n4b.address})
    n4.transport.set_peers({"n2": n2.address})
    n4.transport.send(msg("n4", "n2", 1))
    wait_until(lambda: len(n2.received) == 1, what="delivery")
    n2.transport.send(msg("n2", "n4", 2))
    wait_until(lambda: len(n4b.received) == 1, what="delivery to the configured address")
    assert n4.received == []


def test_set_peers_rejects_bad_address(make_node) -> None:
    n1 = make_node("n1")
    with pytest.raises(TransportError):
        n1.transport.set_peers({"n2": "no-port"})


def test_wrong_identity_at_address_is_refused(make_node, caplog) -> None:
    n1, n3 = make_node("n1"), make_node("n3")
    n1.transport.set_peers({"n2": n3.address})
    n1.transport.send(msg("n1", "n2"))
    wait_until(lambda: "identifies as 'n3', expected 'n2'" in log_text(caplog), what="identity log")
    assert n3.received == []


def test_stop_is_idempotent_and_closes_listener(make_node) -> None:
    n1, n2 = make_node("n1"), make_node("n2")
    connect_all(n1, n2)
    n1.transport.send(msg("n1", "n2"))
    wait_until(lambda: len(n2.received) == 1, what="delivery")
    n2.transport.stop()
    n2.transport.stop()
    with pytest.raises(OSError):
        raw_connect(n2.address)
    n2.transport.send(msg("n2", "n1"))
    assert n2.transport.dropped == 1


def test_listen_on_busy_port_raises_transport_error(make_node) -> None:
    n1 = make_node("n1")
    other = TcpTransport("n2", n1.address, lambda m: None)
    with pytest.raises(TransportError):
        other.start()


# ---------------------------------------------------------------- authentication

def test_matching_cluster_key_works(make_node) -> None:
    key = b"s3cret-cluster-key"
    n1, n2 = make_node("n1", cluster_key=key), make_node("n2", cluster_key=key)
    connect_all(n1, n2)
    n1.transport.send(msg("n1", "n2", 1))
    n2.transport.send(msg("n2", "n1", 2))
    wait_until(lambda: len(n1.received) == 1 and len(n2.received) == 1, what="keyed delivery")


def test_wrong_cluster_key_refused_both_ways(make_node, caplog) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    n1 = make_node("n1", cluster_key=b"key-one")
    n2 = make_node("n2", cluster_key=b"key-two")
    connect_all(n1, n2)
    n1.transport.send(msg("n1", "n2"))
    n2.transport.send(msg("n2", "n1"))
    expected = [
        # each client: the server's proof does not verify; each server: the client said so
        f"raft peer n2 at {n2.address} failed authentication: cluster key mismatch (its proof does not verify)",
        f"raft peer n1 at {n1.address} failed authentication: cluster key mismatch (its proof does not verify)",
        f"raft peer n1 at {n1.address} failed authentication: cluster key mismatch (it could not verify our proof)",
        f"raft peer n2 at {n2.address} failed authentication: cluster key mismatch (it could not verify our proof)",
    ]
    wait_until(lambda: all(line in log_text(caplog) for line in expected), what="refusal log lines")
    assert stays_true(lambda: not n1.received and not n2.received, 0.3)
    assert not n1.transport.is_connected("n2") and not n2.transport.is_connected("n1")
    assert "key-one" not in log_text(caplog) and "key-two" not in log_text(caplog)


def test_key_versus_no_key_refused_with_clear_lines(make_node, caplog) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    keyed = make_node("n1", cluster_key=b"the-key")
    plain = make_node("n2")
    connect_all(keyed, plain)
    keyed.transport.send(msg("n1", "n2"))
    plain.transport.send(msg("n2", "n1"))
    expected = [
        "peer n1 uses a cluster key but none is configured here",                 # plain's server
        f"raft peer n2 at {plain.address} refused our connection: it has no cluster key",  # keyed client
        "peer n2 has no cluster key but one is required here",                    # keyed's server
        f"raft peer n1 at {keyed.address} requires a cluster key but none is configured here",
    ]
    wait_until(lambda: all(line in log_text(caplog) for line in expected), what="key/no-key lines")
    assert stays_true(lambda: not keyed.received and not plain.received, 0.3)


def test_client_detects_server_without_the_key(caplog) -> None:
    """A fake server that answers with any proof must fail our check of its proof."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    answers: list[dict] = []

    def fake(sock, _addr) -> None:
        conn = _FramedSocket(sock, 65536)
        conn.read_map()
        conn.write_map({"node": "n2", "cluster": None, "nonce": os.urandom(32), "proof": os.urandom(32)})
        answers.append(conn.read_map())
        gevent.sleep(2)

    server = gevent.server.StreamServer(("127.0.0.1", 0), fake, spawn=gevent.pool.Pool(4))
    server.start()
    n1 = Node("n1", cluster_key=b"real-key")
    try:
        n1.transport.set_peers({"n2": f"127.0.0.1:{server.server_port}"})
        n1.transport.send(msg("n1", "n2"))
        wait_until(lambda: "failed authentication: cluster key mismatch" in log_text(caplog),
                   what="client-side refusal")
        assert not n1.transport.is_connected("n2")
        assert answers[0] == {"ok": False, "reason": "key-mismatch", "detail": "cluster key mismatch"}
    finally:
        n1.transport.stop()
        server.stop(timeout=0.5)


def test_raw_client_with_wrong_key_gets_refusal(make_node) -> None:
    n2 = make_node("n2", cluster_key=b"right")
    sock = raw_connect(n2.address)
    with pytest.raises(HandshakeError, match="failed authentication: cluster key mismatch"):
        client_handshake(_FramedSocket(sock, 65536), "n1", b"wrong", "n2", n2.address)
    read_until_closed(sock)
    sock.close()


# ---------------------------------------------------------------- hostile input

@pytest.mark.parametrize("garbage", [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"\xff\xff\xff\xff" + b"x" * 100,          # absurd frame length
    encode_frame(b"\xc1\xc1\xc1"),             # a frame that is not msgpack
    encode_frame(msgpack.packb([1, 2, 3])),    # msgpack but not a hello
    encode_frame(msgpack.packb({"hello": "axon-raft", "version": 1, "node": "n1", "keyed": False})),  # old
    encode_frame(msgpack.packb({**HELLO, "node": 5})),
    encode_frame(msgpack.packb({**HELLO, "raft": 7001})),
    encode_frame(msgpack.packb({**HELLO, "raft": "no-port"})),
    encode_frame(msgpack.packb({**HELLO, "nonce": b"short"})),
    encode_frame(msgpack.packb({**HELLO, "cluster": 7})),
    encode_frame(msgpack.packb({**HELLO, "node": "n1\nforged log line"})),
    encode_frame(msgpack.packb({**HELLO, 5: "integer field name"}, strict_types=False)),
])
def test_garbage_to_listener_does_not_crash_it(make_node, caplog, garbage: bytes) -> None:
    n1, n2 = make_node("n1"), make_node("n2")
    sock = raw_connect(n2.address)
    sock.sendall(garbage)
    read_until_closed(sock)
    sock.close()
    assert "refused raft connection from 127.0.0.1:" in log_text(caplog)
    connect_all(n1, n2)
    n1.transport.send(msg("n1", "n2"))
    wait_until(lambda: len(n2.received) == 1, what="good delivery after garbage")


def test_bad_message_after_handshake_closes_only_that_connection(make_node, caplog) -> None:
    n1, n2 = make_node("n1"), make_node("n2")
    sock = handshaken_client(n2.address, "n9", "n2")
    sock.sendall(encode_frame(encode_message(msg("n9", "n2", 7))) + encode_frame(b"\x93garbage"))
    read_until_closed(sock)
    sock.close()
    wait_until(lambda: "bad message" in log_text(caplog), what="bad message warning")
    assert [m.index for m in n2.received] == [7]     # the good one before the garbage got through
    connect_all(n1, n2)
    n1.transport.send(msg("n1", "n2", 8))
    wait_until(lambda: len(n2.received) == 2, what="good delivery afterwards")


def test_version_mismatch_refused(make_node, caplog) -> None:
    n2 = make_node("n2")
    sock = raw_connect(n2.address)
    conn = _FramedSocket(sock, 65536)
    conn.write_map({"hello": "axon-raft", "version": 99, "node": "n1", "keyed": False})
    reply = conn.read_map()
    assert reply["ok"] is False and reply["reason"] == "version"
    read_until_closed(sock)
    sock.close()
    assert "protocol version 99 not supported" in log_text(caplog)


def test_silent_client_hits_handshake_timeout(make_node, caplog) -> None:
    n2 = make_node("n2", handshake_timeout=0.3)
    sock = raw_connect(n2.address)
    read_until_closed(sock, timeout=3.0)
    sock.close()
    assert "handshake timed out" in log_text(caplog)


def test_dst_mismatch_dropped_and_counted(make_node) -> None:
    n2 = make_node("n2")
    sock = handshaken_client(n2.address, "n1", "n2")
    sock.sendall(encode_frame(encode_message(msg("n1", "n3", 1)))       # not for us
                 + encode_frame(encode_message(msg("n7", "n2", 2)))     # spoofed source
                 + encode_frame(encode_message(msg("n1", "n2", 3))))
    wait_until(lambda: len(n2.received) == 1, what="the valid message")
    assert n2.received[0].index == 3
    assert n2.transport.misrouted == 2
    sock.close()


def test_stalled_peer_hits_write_timeout_and_drops(caplog) -> None:
    """A peer that completes the handshake but never reads must not wedge the writer."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    accepted: list = []

    def never_reads(sock, _addr) -> None:
        server_handshake(_FramedSocket(sock, 65536), "n2", None)
        accepted.append(sock)
        gevent.sleep(30)

    server = gevent.server.StreamServer(("127.0.0.1", 0), never_reads, spawn=gevent.pool.Pool(4))
    server.start()
    n1 = Node("n1", write_timeout=0.3, queue_size=4)
    try:
        n1.transport.set_peers({"n2": f"127.0.0.1:{server.server_port}"})
        chunk = b"x" * (1 << 20)
        counter = iter(range(10_000))

        def timed_out() -> bool:
            n1.transport.send(msg("n1", "n2", next(counter), data=chunk))
            return "write timed out" in log_text(caplog)

        wait_until(timed_out, timeout=10.0, what="write timeout")
        assert n1.transport.dropped > 0
    finally:
        n1.transport.stop()
        server.stop(timeout=0.5)


@pytest.mark.parametrize("listen", ["nonsense", "127.0.0.1:notaport", "127.0.0.1:70000", ":80"])
def test_bad_listen_address_raises_transport_error(listen: str) -> None:
    with pytest.raises(TransportError):
        TcpTransport("n1", listen, lambda m: None)


def test_bad_constructor_arguments_raise_transport_error() -> None:
    with pytest.raises(TransportError):
        TcpTransport("", "127.0.0.1:0", lambda m: None)
    with pytest.raises(TransportError):
        TcpTransport("n1", "127.0.0.1:0", lambda m: None, cluster_key="text")  # type: ignore[arg-type]
    with pytest.raises(TransportError):
        TcpTransport("n1", "127.0.0.1:0", lambda m: None, queue_size=0)

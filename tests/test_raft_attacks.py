"""Attacks on a real cluster's raft port: a script that claims to be the leader and sends a
follower one APPEND holding a Put (the measured attack of the issue "Peer trust").

With a cluster key every way in is refused and nothing is applied; without one (a
loopback-only cluster) the same script gets its entry applied, which shows the attack is
real and the keyed result meaningful.
"""
from __future__ import annotations

import os
import time

import gevent
import gevent.socket
import pytest

from axon.keys import new_key, write_key_file
from axon.kv.commands import Put, encode_commands
from axon.raft.codec import encode_message
from axon.raft.transport import (HandshakeError, _FramedSocket, _wrap_tls, client_handshake, load_peer_tls,
                                 make_hello, parse_address, seal_frame)
from axon.raft.types import Entry, EntryKind, Message, MsgType
from axon.security.channel import FrameSealer, fresh_nonce
from axon.security.tls import make_ca, make_node_cert, write_private
from axon.testing.cluster import Cluster, NodeHandle

pytestmark = pytest.mark.slow

FORGED_KEY = "forged/by-attacker"


def forged_append(leader: str, follower: NodeHandle) -> Message:
    """An APPEND from ``leader`` extending the follower's log by one Put and committing it."""
    st = follower.status()
    last = st["last_index"]
    entry = Entry(last + 1, st["term"], EntryKind.NORMAL, encode_commands([Put(FORGED_KEY, "evil")]))
    return Message(MsgType.APPEND, leader, follower.node_id, term=st["term"], index=last,
                   log_term=st["term"], entries=(entry,), commit=last + 1)


def drain(sock: gevent.socket.socket, timeout: float = 3.0) -> None:
    """Read until the node closes the connection (or the timeout passes)."""
    try:
        with gevent.Timeout(timeout, False):
            while sock.recv(65536):
                pass
    except OSError:
        pass


def attack(follower: NodeHandle, leader: str, claimed_key: bytes | None) -> str:
    """Speak the raft handshake as ``leader`` (with ``claimed_key``: a key we wrongly hold) and send
    the forged APPEND; returns how far it got."""
    sock = gevent.socket.create_connection(parse_address(follower.raft), timeout=5)
    try:
        conn = _FramedSocket(sock, 1 << 20)
        try:
            keys = client_handshake(conn, leader, claimed_key, follower.node_id, follower.raft)
        except HandshakeError as exc:
            return f"refused: {exc}"
        sealer = FrameSealer(keys.client_to_server) if keys is not None else None
        sock.sendall(seal_frame(sealer, encode_message(forged_append(leader, follower))))
        drain(sock, 1.0)
        return "sent"
    finally:
        sock.close()


def attack_raw(follower: NodeHandle, leader: str) -> None:
    """A hello that claims a key, a made-up proof, then the APPEND in clear and "sealed" with a guess."""
    sock = gevent.socket.create_connection(parse_address(follower.raft), timeout=5)
    try:
        conn = _FramedSocket(sock, 1 << 20)
        conn.write_map(make_hello(leader, True, None, fresh_nonce(), None))
        conn.read_map()
        conn.write_map({"ok": True, "proof": os.urandom(32)})
        payload = encode_message(forged_append(leader, follower))
        sock.sendall(seal_frame(None, payload) + seal_frame(FrameSealer(os.urandom(32)), payload))
        drain(sock)
    finally:
        sock.close()


def local_items(node: NodeHandle) -> list[tuple[str, str, int]]:
    page = node.client.list_page("", limit=1000, stale=True)
    assert page["next"] is None
    return [(i["key"], i["value"], i["revision"]) for i in page["items"]]


def assert_same_everywhere(cluster: Cluster) -> list:
    cluster.wait_converged()
    statuses = [node.status() for node in cluster.nodes]
    assert len({(st["commit_index"], st["applied_index"]) for st in statuses}) == 1, statuses
    snapshots = [local_items(node) for node in cluster.nodes]
    assert all(items == snapshots[0] for items in snapshots), snapshots
    return snapshots[0]


def key_file(tmp_path) -> str:
    path = str(tmp_path / "cluster.key")
    write_key_file(path, new_key())
    return path


def test_a_forged_append_is_refused_with_a_cluster_key(tmp_path) -> None:
    cluster = Cluster(tmp_path, n=3, extra_args=["--cluster-key-file", key_file(tmp_path)])
    try:
        leader = cluster.leader()
        leader.client.put("before", "1")
        cluster.wait_converged()
        follower = next(node for node in cluster.nodes if node is not leader)

        outcomes = [attack(follower, leader.node_id, None), attack(follower, leader.node_id, new_key())]
        attack_raw(follower, leader.node_id)
        assert outcomes[0].startswith("refused") and "requires a cluster key" in outcomes[0], outcomes
        assert outcomes[1].startswith("refused") and "cluster key mismatch" in outcomes[1], outcomes

        leader.client.put("after", "2")          # the cluster goes on; the forged entry is nowhere
        items = assert_same_everywhere(cluster)
        assert {k for k, _, _ in items} == {"before", "after"}
        for node in cluster.nodes:
            assert node.client.get(FORGED_KEY, stale=True) is None
        log = follower.log_text()
        assert "has no cluster key but one is required here" in log
        assert "failed authentication: cluster key mismatch" in log
    finally:
        cluster.close()


def test_without_a_key_the_same_attack_succeeds_which_is_why_such_clusters_stay_on_loopback(tmp_path) -> None:
    cluster = Cluster(tmp_path, n=3)
    try:
        leader = cluster.leader()
        leader.client.put("before", "1")
        cluster.wait_converged()
        follower = next(node for node in cluster.nodes if node is not leader)
        assert attack(follower, leader.node_id, None) == "sent"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if follower.client.get(FORGED_KEY, stale=True)["value"] == "evil":
                    break
            except Exception:
                pass
            time.sleep(0.05)
        assert follower.client.get(FORGED_KEY, stale=True)["value"] == "evil"
        assert all(FORGED_KEY not in {k for k, _, _ in local_items(n)} for n in cluster.nodes if n is not follower)
    finally:
        cluster.close()


def test_a_cluster_with_peer_mtls_and_a_key_replicates_and_a_forger_with_a_stranger_certificate_fails(
        tmp_path) -> None:
    pki = tmp_path / "pki"
    pki.mkdir()
    ca, stranger_ca = make_ca(), make_ca("stranger")
    (pki / "ca.crt").write_bytes(ca.cert_pem)

    def material(name: str, node_id: str, issuer) -> dict[str, str]:
        issued = make_node_cert(issuer, node_id, ["127.0.0.1"])
        (pki / f"{name}.crt").write_bytes(issued.cert_pem)
        write_private(str(pki / f"{name}.key"), issued.key_pem)
        return {"AXON_PEER_CERT_FILE": str(pki / f"{name}.crt"), "AXON_PEER_KEY_FILE": str(pki / f"{name}.key"),
                "AXON_PEER_CA_FILE": str(pki / "ca.crt")}

    cluster = Cluster(tmp_path, n=3, extra_args=["--cluster-key-file", key_file(tmp_path)],
                      node_options=lambda node_id: {"env": material(node_id, node_id, ca)})
    try:
        leader = cluster.leader()
        for i in range(20):
            leader.client.put(f"k{i}", str(i))
        assert len(assert_same_everywhere(cluster)) == 20
        assert all("(TLS, sealed with the cluster key)" in node.log_text() for node in cluster.nodes)

        # The stranger holds the cluster key but a certificate of another CA: TLS refuses it first.
        follower = next(node for node in cluster.nodes if node is not leader)
        env = material("stranger", leader.node_id, stranger_ca)
        tls = load_peer_tls(env["AXON_PEER_CERT_FILE"], env["AXON_PEER_KEY_FILE"], env["AXON_PEER_CA_FILE"])
        sock = _wrap_tls(tls.client, gevent.socket.create_connection(parse_address(follower.raft), timeout=5),
                         server_side=False)
        with pytest.raises(OSError):
            sock.do_handshake()
            client_handshake(_FramedSocket(sock, 1 << 20), leader.node_id, None, follower.node_id, follower.raft)
        sock.close()
        cluster.wait_for(lambda: "TLS failed" in follower.log_text(), message="the follower's line")
        leader.client.put("after", "x")
        assert len(assert_same_everywhere(cluster)) == 21
    finally:
        cluster.close()

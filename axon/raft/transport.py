"""Raft transport: persistent TCP connections on gevent, sealed with the cluster key.

Each member keeps one outbound connection per peer (a writer greenlet draining a
bounded queue) and accepts inbound connections on its raft address (a reader
greenlet per connection).  Messages only flow outbound->inbound, so a pair of
members uses two connections.  Every connection starts with a handshake:

    client -> {hello, version, node, keyed, raft, cluster, nonce}     the hello
    server -> {node, cluster, nonce, proof?}                          the reply
    client -> {ok: true, proof?}                                      the answer
    server -> {ok: true}

``raft`` is where the client listens, ``cluster`` the cluster id (None on a node that has
none yet), ``nonce`` 32 fresh random bytes from each side.  With a cluster key the
connection's keys are ``session_keys(key, "raft", client id, server id, client nonce,
server nonce)`` (axon.security.channel), the server's proof is ``transcript_proof(keys,
b"server", T)`` and the client's ``transcript_proof(keys, b"client", T)``, where T is the
canonical encoding of the hello and of the reply's fields before the proof
(``transcript``): only a holder of the key who saw the same exchange can make them.  From
then on every frame is ``u32 length || ChaCha20-Poly1305(direction key, nonce = frame
number, payload)``; a frame that does not open (tampered, replayed, reordered, forged) is
counted in ``auth_failures``, logged, never delivered, and closes the connection.

Without a cluster key the same exchange runs without proofs and frames are plain msgpack:
NOTHING IS AUTHENTICATED, anyone who reaches the raft port can claim any node id.  Such a
cluster belongs on loopback only (docs/security.md), where one check remains possible: on
Linux the kernel says which user holds the other end of a loopback connection, and a
process of another user is refused both ways (``loopback_peer_uid``).

With peer TLS (``PeerTls``: mTLS as etcd does it) every connection is TLS first, both sides
present a certificate of the cluster CA, and the node id a peer claims must be its
certificate's common name.  TLS and the cluster key combine: both layers stay.

Any refusal is ``{ok: false, reason, detail}`` followed by a close, and both sides log one
clear line (a peer of another cluster, a wrong key, a version from another release...).

A peer's address normally comes from the cluster configuration (``set_peers``).  A member
that missed the change adding a peer (paused or cut off meanwhile) cannot answer that peer
until its log catches up, which needs that peer's answers when it is the leader; so an
inbound connection's ``raft`` address is used for peers the configuration does not name.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import random
import socket
import ssl
import struct
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import gevent
import gevent.pool
import gevent.queue
import gevent.server
import gevent.socket
import gevent.ssl
import msgpack

from axon.address import AddressError, parse_addr
from axon.raft.codec import (DEFAULT_MAX_FRAME, MAX_ID_LEN, PROTOCOL_VERSION, CodecError,
                             FrameDecoder, decode_message, encode_frame, encode_message)
from axon.raft.interfaces import Transport
from axon.raft.types import Message
from axon.security.channel import (NONCE_SIZE, TAG_SIZE, ChannelError, FrameOpener, FrameSealer,
                                   SessionKeys, check_proof, fresh_nonce, session_keys,
                                   transcript_proof)

HANDSHAKE_MAX_FRAME = 64 * 1024      # unauthenticated peers must not make us buffer much
INITIAL_BACKOFF = 0.05
MAX_BATCH_MESSAGES = 1024
MAX_INBOUND_CONNECTIONS = 1024
RECV_SIZE = 256 * 1024
REFUSAL_LOG_INTERVAL = 30.0          # repeated identical refusals are logged at debug
MAX_LEARNED_PEERS = 64               # addresses learned from inbound connections
MAX_CLUSTER_ID_LEN = 128
CHANNEL_USE = "raft"                 # the HKDF use of raft connections' session keys
_HELLO = "axon-raft"
_TRANSCRIPT_LABEL = "axon-raft-handshake"
_CLIENT, _SERVER = b"client", b"server"


class TransportError(Exception):
    """Transport misuse or a failure the caller should see (e.g. a bad address)."""


class HandshakeError(TransportError):
    """The handshake failed.  The client logs str() as is; the server logs ``line(remote)``."""

    full_line = False   # True: str() is the whole server-side line already

    def line(self, remote: str) -> str:
        return str(self) if self.full_line else f"refused raft connection from {remote}: {self}"


class Refusal(HandshakeError):
    """A failure the other side is told about ({ok: false, reason, detail}) before we close."""

    def __init__(self, text: str, reason: str, detail: str, *, full_line: bool = False, **extra: Any) -> None:
        super().__init__(text)
        self.reason = reason
        self.detail = detail
        self.full_line = full_line
        self.extra = extra

    def wire(self) -> dict:
        return {"ok": False, "reason": self.reason, "detail": self.detail, **self.extra}


class _PeerRefused(HandshakeError):
    """The client refused the server (the server logs the client's reason)."""

    full_line = True


class _ConnectionClosed(TransportError):
    """The peer closed the connection."""


# ---------------------------------------------------------------- pure helpers

def parse_address(address: str) -> tuple[str, int]:
    """"host:port" (or "[v6]:port") -> (host, port) by axon.address; raises TransportError."""
    try:
        return parse_addr(address, "raft address")
    except AddressError as exc:
        raise TransportError(str(exc)) from None


def _format_peer(addr: Any) -> str:
    try:
        host, port = addr[0], addr[1]
    except (TypeError, IndexError):
        return str(addr)
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def _host_of(remote: str) -> str:
    return remote.rpartition(":")[0] or remote


def _printable(value: Any, limit: int = 200) -> str:
    """A peer's text made safe for one log line (peers are not trusted)."""
    text = str(value)[:limit]
    return "".join(c if c.isprintable() else "?" for c in text)


def transcript(hello: Mapping[str, Any], reply: Mapping[str, Any]) -> bytes:
    """The handshake both proofs cover: every field of the hello and of the reply before its proof.

    Canonical (fields sorted by name, msgpack), so both sides encode the same exchange the same
    way whatever order the fields came in; a field added, removed or changed on the way changes it.
    """
    return msgpack.packb([_TRANSCRIPT_LABEL, sorted(hello.items()), sorted(reply.items())],
                         use_bin_type=True)


def cluster_conflict(theirs: str | None, ours: str | None) -> bool:
    """Two cluster ids that say the sides belong to different clusters (None: not known yet)."""
    return theirs is not None and ours is not None and theirs != ours


def cluster_refusal(peer: str, at: str, theirs: str, ours: str) -> Refusal:
    return Refusal(f"raft peer {peer} at {at} belongs to cluster {theirs}, this node to cluster {ours}; "
                   f"refusing", "cluster", f"this node belongs to cluster {ours}", full_line=True,
                   cluster=ours)


def seal_frame(sealer: FrameSealer | None, payload: bytes) -> bytes:
    """The frame for ``payload``, sealed when there is a sealer.

    Every check happens before the seal: a sequence number once used must reach the wire, or
    every later frame of the connection fails to open at the peer.
    """
    if sealer is None:
        return encode_frame(payload)
    if len(payload) + TAG_SIZE >= 1 << 32:
        raise CodecError(f"payload too large for a frame: {len(payload)} bytes")
    return encode_frame(sealer.seal(payload))


# ---------------------------------------------------------------- framed socket

class _FramedSocket:
    """A socket speaking length-prefixed frames; handshake maps are msgpack too."""

    def __init__(self, sock: gevent.socket.socket, max_frame: int) -> None:
        self.sock = sock
        self.decoder = FrameDecoder(max_frame)
        self._pending: deque[bytes] = deque()

    def read(self) -> bytes:
        while not self._pending:
            data = self.sock.recv(RECV_SIZE)
            if not data:
                raise _ConnectionClosed("connection closed by peer")
            self._pending.extend(self.decoder.feed(data))
        return self._pending.popleft()

    def write_map(self, fields: dict) -> None:
        self.sock.sendall(encode_frame(msgpack.packb(fields, use_bin_type=True)))

    def read_map(self) -> dict:
        try:
            payload = self.read()
        except CodecError as exc:
            raise HandshakeError(f"malformed handshake ({exc})") from None
        try:
            fields = msgpack.unpackb(payload, raw=False, strict_map_key=True)
        except Exception as exc:  # any msgpack failure means garbage from the peer
            raise HandshakeError(f"malformed handshake ({exc.__class__.__name__})") from None
        if not isinstance(fields, dict) or not all(isinstance(k, str) for k in fields):
            raise HandshakeError("malformed handshake (not a map of names)")
        return fields


def _send_quietly(conn: _FramedSocket, fields: dict) -> None:
    """Best effort (we close right after): tell the peer why."""
    try:
        conn.write_map(fields)
    except OSError:
        pass


def _field(fields: dict, name: str, kind: type, what: str) -> Any:
    value = fields.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise HandshakeError(f"malformed handshake ({what} missing or invalid)")
    return value


def _node_field(fields: dict) -> str:
    node = _field(fields, "node", str, "node id")
    if not node or len(node) > MAX_ID_LEN or not node.isprintable():
        raise HandshakeError("malformed handshake (node id missing or invalid)")
    return node


def _nonce_field(fields: dict) -> bytes:
    nonce = _field(fields, "nonce", bytes, "nonce")
    if len(nonce) != NONCE_SIZE:
        raise HandshakeError("malformed handshake (bad nonce)")
    return nonce


def _cluster_field(fields: dict) -> str | None:
    cluster = fields.get("cluster")
    if cluster is None:
        return None
    if not isinstance(cluster, str) or not cluster or len(cluster) > MAX_CLUSTER_ID_LEN \
            or not cluster.isprintable():
        raise HandshakeError("malformed handshake (cluster id invalid)")
    return cluster


def _raft_field(hello: dict) -> str | None:
    """The optional listen address in a hello."""
    raft = hello.get("raft")
    if raft is None:
        return None
    try:
        if not isinstance(raft, str) or len(raft) > 300 or not raft.isprintable():
            raise TransportError(raft)
        parse_address(raft)
    except TransportError:
        raise HandshakeError("malformed handshake (raft address invalid)") from None
    return raft


# ---------------------------------------------------------------- handshake, pure steps

@dataclass(frozen=True, slots=True)
class PeerHello:
    """Who connected: its node id, where it listens for raft, its cluster id and nonce."""
    node_id: str
    raft: str | None
    cluster: str | None = None
    nonce: bytes = b""


@dataclass(frozen=True, slots=True)
class Accepted:
    """An inbound connection's peer and, with a cluster key, the connection's keys."""
    peer: PeerHello
    keys: SessionKeys | None


def make_hello(node_id: str, keyed: bool, cluster: str | None, nonce: bytes, raft: str | None) -> dict:
    hello = {"hello": _HELLO, "version": PROTOCOL_VERSION, "node": node_id, "keyed": keyed,
             "cluster": cluster, "nonce": nonce}
    if raft is not None:
        hello["raft"] = raft
    return hello


def check_hello(hello: dict, *, keyed_here: bool, cluster_here: str | None, remote: str,
                cert_id: str | None = None) -> PeerHello:
    """The server's checks of a hello; raises HandshakeError (Refusal: tell the peer).

    ``cert_id`` is the common name of the peer's verified TLS certificate ("" for none), or
    None when the connection has no TLS.
    """
    if hello.get("hello") != _HELLO:
        raise HandshakeError("not an axon raft peer (bad hello)")
    version = hello.get("version")
    if version != PROTOCOL_VERSION or isinstance(version, bool):
        detail = f"protocol version {_printable(version, 20)} not supported (ours {PROTOCOL_VERSION})"
        raise Refusal(detail, "version", detail)
    peer = PeerHello(_node_field(hello), _raft_field(hello), _cluster_field(hello), _nonce_field(hello))
    keyed = _field(hello, "keyed", bool, "keyed flag")
    if cert_id is not None and cert_id != peer.node_id:
        raise Refusal(f"peer claims node id {peer.node_id} but its certificate names {cert_id!r}",
                      "certificate", f"your certificate names {cert_id!r}, not {peer.node_id!r}")
    if not keyed_here and keyed:
        raise Refusal(f"peer {peer.node_id} uses a cluster key but none is configured here",
                      "no-key", "no cluster key is configured on this node")
    if keyed_here and not keyed:
        raise Refusal(f"peer {peer.node_id} has no cluster key but one is required here",
                      "key-required", "this node requires a cluster key")
    if cluster_conflict(peer.cluster, cluster_here):
        raise cluster_refusal(peer.node_id, peer.raft or _host_of(remote), peer.cluster, cluster_here)
    return peer


def make_reply(node_id: str, cluster: str | None, nonce: bytes) -> dict:
    """The server's reply before its proof (what the transcript covers)."""
    return {"node": node_id, "cluster": cluster, "nonce": nonce}


def check_reply(reply: dict, *, where: str, peer_id: str, address: str, cluster_here: str | None,
                cert_id: str | None = None) -> bytes:
    """The client's checks of a reply; returns the server's nonce, raises HandshakeError."""
    claimed = reply.get("node")
    if claimed != peer_id:
        raise Refusal(f"raft peer at {address} identifies as {_printable(claimed, 80)!r}, expected {peer_id!r}",
                      "identity", f"expected node {peer_id} at this address")
    if cert_id is not None and cert_id != peer_id:
        raise Refusal(f"{where} presents a certificate for {cert_id!r}; refusing",
                      "certificate", f"your certificate names {cert_id!r}, not {peer_id!r}")
    theirs = _cluster_field(reply)
    if cluster_conflict(theirs, cluster_here):
        raise cluster_refusal(peer_id, address, theirs, cluster_here)
    return _nonce_field(reply)


def _without_proof(reply: dict) -> dict:
    return {name: value for name, value in reply.items() if name != "proof"}


# ---------------------------------------------------------------- handshake, server side

def server_handshake(conn: _FramedSocket, node_id: str, key: bytes | None, *, cluster: str | None = None,
                     remote: str = "?", cert_id: str | None = None) -> Accepted:
    """Run the accepting side; returns the peer (and keys) or raises HandshakeError."""
    try:
        hello = conn.read_map()
        peer = check_hello(hello, keyed_here=key is not None, cluster_here=cluster, remote=remote,
                           cert_id=cert_id)
        nonce = fresh_nonce()
        reply = make_reply(node_id, cluster, nonce)
        keys = None
        if key is not None:
            keys = session_keys(key, CHANNEL_USE, peer.node_id, node_id, peer.nonce, nonce)
            shown = transcript(hello, reply)
            reply = {**reply, "proof": transcript_proof(keys, _SERVER, shown)}
        conn.write_map(reply)
        answer = conn.read_map()
        _check_answer(answer, peer, remote)
        if keys is not None:
            try:
                check_proof(keys, _CLIENT, shown, answer.get("proof"))
            except ChannelError:
                raise Refusal(f"peer {peer.node_id} failed authentication: cluster key mismatch "
                              f"(its proof does not verify)", "key-mismatch", "cluster key mismatch") from None
    except Refusal as refusal:
        _send_quietly(conn, refusal.wire())
        raise
    conn.write_map({"ok": True})
    return Accepted(peer, keys)


def _check_answer(answer: dict, peer: PeerHello, remote: str) -> None:
    if answer.get("ok") is False:
        at = peer.raft or _host_of(remote)
        raise _PeerRefused(_peer_refusal_line(f"raft peer {peer.node_id} at {at}", answer, server=True))
    if answer.get("ok") is not True:
        raise HandshakeError("malformed handshake (answer)")


# ---------------------------------------------------------------- handshake, client side

def client_handshake(conn: _FramedSocket, node_id: str, key: bytes | None, peer_id: str, address: str,
                     raft: str | None = None, *, cluster: str | None = None,
                     cert_id: str | None = None) -> SessionKeys | None:
    """Run the connecting side; returns the keys (None without a cluster key).

    Raises HandshakeError whose text is a complete log line.  ``raft`` is where this node
    listens, for a peer that has no address for it yet.
    """
    where = f"raft peer {peer_id} at {address}"
    hello = make_hello(node_id, key is not None, cluster, fresh_nonce(), raft)
    conn.write_map(hello)
    reply = _read_reply(conn, where, cluster)
    answer: dict = {"ok": True}
    keys = None
    try:
        server_nonce = check_reply(reply, where=where, peer_id=peer_id, address=address,
                                   cluster_here=cluster, cert_id=cert_id)
        if key is not None:
            keys = session_keys(key, CHANNEL_USE, node_id, peer_id, hello["nonce"], server_nonce)
            shown = transcript(hello, _without_proof(reply))
            try:
                check_proof(keys, _SERVER, shown, reply.get("proof"))
            except ChannelError:
                raise Refusal(f"{where} failed authentication: cluster key mismatch (its proof does not verify)",
                              "key-mismatch", "cluster key mismatch") from None
            answer["proof"] = transcript_proof(keys, _CLIENT, shown)
    except Refusal as refusal:
        _send_quietly(conn, refusal.wire())
        raise
    conn.write_map(answer)
    if _read_reply(conn, where, cluster).get("ok") is not True:
        raise HandshakeError(f"{where} sent an unexpected handshake reply")
    return keys


def _read_reply(conn: _FramedSocket, where: str, cluster: str | None) -> dict:
    try:
        reply = conn.read_map()
    except HandshakeError as exc:
        raise HandshakeError(f"{where}: {exc}") from None
    if reply.get("ok") is False:
        raise HandshakeError(_peer_refusal_line(where, reply, cluster=cluster))
    return reply


def _peer_refusal_line(where: str, refusal: dict, *, cluster: str | None = None, server: bool = False) -> str:
    """Our log line for a refusal the other side sent (``where`` names it)."""
    reason, detail = refusal.get("reason"), _printable(refusal.get("detail") or "")
    if reason == "key-mismatch":
        return f"{where} failed authentication: cluster key mismatch (it could not verify our proof)"
    if reason == "cluster" and isinstance(refusal.get("cluster"), str):
        return f"{where} belongs to cluster {_printable(refusal['cluster'], MAX_CLUSTER_ID_LEN)}, " \
               f"this node to cluster {cluster}; refusing"
    if reason == "key-required":
        return f"{where} requires a cluster key but none is configured here"
    if reason == "no-key":
        return f"{where} refused our connection: it has no cluster key but one is configured here"
    verb = "refused our handshake" if server else "refused our connection"
    return f"{where} {verb}: {detail or _printable(reason)}"


# ---------------------------------------------------------------- no key: the same user only

def _proc_endpoint(text: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    """"0100007F:1F90" of /proc/net/tcp (each 32-bit word in host order) -> (address, port)."""
    address, _, port = text.partition(":")
    raw = b"".join(struct.pack("=I", int(address[i:i + 8], 16)) for i in range(0, len(address), 8))
    return _unmapped(ipaddress.ip_address(raw)), int(port, 16)


def _unmapped(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """::ffff:a.b.c.d -> a.b.c.d: a dual-stack socket shows an IPv4 peer either way."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def socket_owner(table: str, local: tuple[str, int], remote: tuple[str, int]) -> int | None:
    """The uid of the TCP socket at ``local`` connected to ``remote`` in a /proc/net/tcp(6) table."""
    want = tuple((_unmapped(ipaddress.ip_address(host)), port) for host, port in (local, remote))
    for line in table.splitlines()[1:]:
        fields = line.split()
        try:
            if (_proc_endpoint(fields[1]), _proc_endpoint(fields[2])) == want:
                return int(fields[7])
        except (IndexError, ValueError):
            continue
    return None


def loopback_peer_uid(sock: Any) -> int | None:
    """The uid of the process at the other end of a loopback connection (Linux), None if unknown.

    Without a cluster key nothing authenticates a peer; on loopback the kernel still knows who
    holds the other end, so other users of the host cannot speak raft to us, nor pose as a peer.
    """
    try:
        ours, theirs = sock.getsockname()[:2], sock.getpeername()[:2]
        if not ipaddress.ip_address(theirs[0]).is_loopback:
            return None
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(table) as f:
                uid = socket_owner(f.read(), theirs, ours)
            if uid is not None:
                return uid
    except (OSError, ValueError):
        pass
    return None


def _other_user(sock: Any) -> int | None:
    """The uid of a loopback peer that runs as another user than this process, else None."""
    uid = loopback_peer_uid(sock)
    return uid if uid is not None and uid != os.geteuid() else None


# ---------------------------------------------------------------- TLS

@dataclass(frozen=True)
class PeerTls:
    """Peer mTLS: the contexts for accepting and for connecting, both requiring certificates."""
    server: ssl.SSLContext
    client: ssl.SSLContext


def load_peer_tls(cert_file: str | None, key_file: str | None, ca_file: str | None) -> PeerTls | None:
    """PeerTls from the --peer-*-file flags (None when none is given); raises TransportError."""
    given = [f for f in (cert_file, key_file, ca_file) if f]
    if not given:
        return None
    if len(given) != 3:
        raise TransportError("--peer-cert-file, --peer-key-file and --peer-ca-file go together")
    # imported here: only a node with peer TLS needs x509 loading
    from axon.security.tls import TlsError, client_context, server_context
    try:
        # The peer's node id is checked against its certificate instead of a host name: the
        # certificate names the node, whatever address reaches it.
        return PeerTls(server_context(cert_file, key_file, client_ca_file=ca_file),
                       client_context(ca_file, cert_file, key_file, check_hostname=False))
    except TlsError as exc:
        raise TransportError(f"peer TLS: {exc}") from None


def _wrap_tls(context: ssl.SSLContext, sock: gevent.socket.socket, server_side: bool) -> gevent.ssl.SSLSocket:
    """A cooperative TLS socket over ``sock`` (handshake not done yet).

    gevent's SSLSocket directly: a stdlib context (no monkey patching, as in tests) would
    make a blocking stdlib socket.
    """
    return gevent.ssl.SSLSocket(sock=sock, server_side=server_side, do_handshake_on_connect=False,
                                _context=context)


def _tls_peer_id(sock: Any) -> str:
    """The node id in a TLS peer's verified certificate; "" (matches no node) when it names none."""
    from axon.security.tls import peer_node_id
    return peer_node_id(sock.getpeercert(binary_form=True)) or ""


def _tls_problem(exc: ssl.SSLError) -> str:
    """A TLS failure in a few words, e.g. "CERTIFICATE_VERIFY_FAILED: unable to get local issuer certificate"."""
    parts = [p for p in (exc.reason, getattr(exc, "verify_message", None)) if p]
    return _printable(": ".join(map(str, parts)) or exc)


# ---------------------------------------------------------------- outbound link

@dataclass(slots=True, eq=False)
class _Connection:
    """One live outbound connection: its socket and, with a cluster key, its frame sealer."""
    sock: Any
    sealer: FrameSealer | None
    tls: bool


@dataclass(slots=True)
class _Rest:
    """The unsent end of a frame, valid only on the connection it was started (and sealed) on."""
    conn: Any            # the _Connection
    data: bytes


class _PeerLink:
    """One peer's outbound side: a bounded queue and a writer greenlet that owns the socket."""

    def __init__(self, transport: "TcpTransport", peer_id: str, address: str) -> None:
        self.peer_id = peer_id
        self.address = address
        self._transport = transport
        self._queue: gevent.queue.Queue = gevent.queue.Queue(maxsize=transport.queue_size)
        self._conn: _Connection | None = None
        self._writer: gevent.Greenlet | None = None
        self._watcher: gevent.Greenlet | None = None
        self._backoff = INITIAL_BACKOFF
        self._last_problem: str | None = None
        self._closed = False
        self._busy = False   # the writer greenlet is in the middle of a write

    @property
    def connected(self) -> bool:
        return self._conn is not None

    def start(self) -> None:
        if self._writer is None and not self._closed:
            self._writer = gevent.spawn(self._run)

    def enqueue(self, msg: Message) -> bool:
        conn = self._conn
        # TLS writes stay with the writer: an SSL write that would block must be retried with
        # the same bytes, and gevent's SSL send cannot be told not to wait.
        if conn is not None and not conn.tls and not self._busy and self._queue.empty() \
                and self._send_now(conn, msg):
            return True
        try:
            self._queue.put_nowait(msg)
            return True
        except gevent.queue.Full:
            return False

    def _frame(self, conn: _Connection, msg: Message) -> bytes | None:
        """The frame of ``msg`` on ``conn`` (sealed: its turn in the sequence is taken now)."""
        try:
            return seal_frame(conn.sealer, encode_message(msg))
        except CodecError as exc:
            self._transport.log.error("dropping unencodable raft message to %s: %s", self.peer_id, exc)
            return None

    def _send_now(self, conn: _Connection, msg: Message) -> bool:
        """Write from the caller's greenlet when nothing is queued or being written.

        Waking the writer greenlet for a lone message cost more than the write itself; the
        socket is never made to wait here (a partial write leaves the rest to the writer,
        ahead of anything queued later).  False: the connection is gone, queue it instead.
        """
        frame = self._frame(conn, msg)
        if frame is None:
            return True
        try:
            sent = conn.sock.send(frame, 0, 0.0)   # timeout 0: never block the caller
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._transport.log.info("raft connection to %s at %s lost: %s", self.peer_id, self.address, exc)
            self._disconnect(conn)
            return False   # the frame dies with its connection; the message is sealed anew on the next
        if sent < len(frame):
            # A sealed frame must reach the wire whole, or the peer's next frame fails to open.
            self._queue.put_nowait(_Rest(conn, frame[sent:]))   # the queue is empty: nothing jumps ahead
        return True

    def close(self) -> None:
        self._closed = True
        for greenlet in (self._writer, self._watcher):
            if greenlet is not None and greenlet is not gevent.getcurrent():
                greenlet.kill(block=False)
        self._disconnect(self._conn)

    # -- writer greenlet

    def _run(self) -> None:
        while not self._closed:
            self._queue.peek()               # connect lazily: only when there is work
            if self._conn is None and not self._connect():
                self._sleep_backoff()
                continue
            batch = self._drain()
            if not self._write(batch):
                self._transport.dropped += len(batch)   # Raft retransmits what matters

    def _drain(self) -> list[Message | _Rest]:
        batch = [self._queue.get()]
        while len(batch) < MAX_BATCH_MESSAGES and not self._queue.empty():
            batch.append(self._queue.get_nowait())
        return batch

    def _write(self, batch: list[Message | _Rest]) -> bool:
        conn = self._conn
        if conn is None:
            return False
        frames = []
        for item in batch:
            if isinstance(item, _Rest):   # the rest of a frame _send_now could not finish
                if item.conn is conn:     # on a new connection it would be garbage
                    frames.append(item.data)
                continue
            frame = self._frame(conn, item)
            if frame is not None:
                frames.append(frame)
        self._busy = True
        try:
            # A peer that vanished without FIN would block sendall for many minutes.
            with gevent.Timeout(self._transport.write_timeout, OSError("write timed out")):
                conn.sock.sendall(b"".join(frames))
            return True
        except OSError as exc:
            self._transport.log.info("raft connection to %s at %s lost: %s", self.peer_id, self.address, exc)
            self._disconnect(conn)
            return False
        finally:
            self._busy = False

    def _sleep_backoff(self) -> None:
        gevent.sleep(self._backoff * random.uniform(0.8, 1.0))
        self._backoff = min(self._backoff * 2, self._transport.max_backoff)

    def _connect(self) -> bool:
        where = f"raft peer {self.peer_id} at {self.address}"
        sock = None
        try:
            host, port = parse_address(self.address)
            sock = gevent.socket.create_connection((host, port), timeout=self._transport.connect_timeout)
            _tune(sock)
            if self._transport.peer_tls is not None:
                sock = _wrap_tls(self._transport.peer_tls.client, sock, server_side=False)   # no I/O yet
            with gevent.Timeout(self._transport.handshake_timeout, HandshakeError(f"{where}: handshake timed out")):
                keys = self._handshake(sock)
            sock.settimeout(None)
        except HandshakeError as exc:
            self._note_problem(str(exc), logging.WARNING)
            self._backoff = self._transport.max_backoff   # a refusal will not fix itself quickly
            _close_quietly(sock)
            return False
        except ssl.SSLError as exc:
            self._note_problem(f"{where}: TLS failed: {_tls_problem(exc)}", logging.WARNING)
            self._backoff = self._transport.max_backoff
            _close_quietly(sock)
            return False
        except (OSError, TransportError) as exc:
            self._note_problem(f"cannot connect to {where}: {exc}", logging.DEBUG)
            _close_quietly(sock)
            return False
        sealer = FrameSealer(keys.client_to_server) if keys is not None else None
        self._conn = conn = _Connection(sock, sealer, self._transport.peer_tls is not None)
        self._backoff = INITIAL_BACKOFF
        self._last_problem = None
        self._transport.log.info("connected to raft peer %s at %s%s", self.peer_id, self.address,
                                 _channel_text(keys is not None, conn.tls))
        self._watcher = gevent.spawn(self._watch, conn)
        return True

    def _handshake(self, sock: Any) -> SessionKeys | None:
        """The TLS handshake (on a TLS socket) and the raft handshake of a new connection."""
        transport = self._transport
        cert_id = None
        if transport.peer_tls is not None:
            sock.do_handshake()
            cert_id = _tls_peer_id(sock)
        elif transport.cluster_key is None and (uid := _other_user(sock)) is not None:
            # Our messages would reach a process of another user that took the port: refuse.
            raise HandshakeError(f"raft peer {self.peer_id} at {self.address} is served by a process of "
                                 f"another user (uid {uid}); refusing without a cluster key")
        return client_handshake(_FramedSocket(sock, HANDSHAKE_MAX_FRAME), transport.node_id,
                                transport.cluster_key, self.peer_id, self.address, transport.address,
                                cluster=transport.current_cluster_id(), cert_id=cert_id)

    def _note_problem(self, line: str, level: int) -> None:
        # The same refusal on every retry would flood the log; say it once per change.
        if line != self._last_problem:
            self._transport.log.log(level, "%s", line)
            self._last_problem = line
        else:
            self._transport.log.debug("%s", line)

    def _watch(self, conn: _Connection) -> None:
        """Notice a peer closing our outbound connection before the next write does."""
        try:
            data = conn.sock.recv(1024)
        except OSError:
            data = b""
        if not data:
            self._transport.log.debug("raft peer %s closed our connection", self.peer_id)
        else:
            self._transport.log.warning("raft peer %s sent unexpected data; reconnecting", self.peer_id)
        self._disconnect(conn)

    def _disconnect(self, conn: _Connection | None) -> None:
        if conn is None:
            return
        if conn is self._conn:
            self._conn = None
        _close_quietly(conn.sock)


def _channel_text(keyed: bool, tls: bool) -> str:
    layers = [name for name, on in (("TLS", tls), ("sealed with the cluster key", keyed)) if on]
    return f" ({', '.join(layers)})" if layers else " (unauthenticated: no cluster key)"


def _tune(sock: gevent.socket.socket) -> None:
    # Raft messages are small and latency-bound; keepalive reaps half-open peers eventually.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)


def _close_quietly(sock: Any) -> None:
    if sock is not None:
        try:
            sock.close()
        except OSError:
            pass


# ---------------------------------------------------------------- the transport

class TcpTransport(Transport):
    """Raft transport over persistent TCP connections (gevent; works with or without monkey patching).

    ``cluster_id`` is asked at every handshake (a fresh node learns its cluster's id when it
    joins); ``peer_tls`` wraps every connection in mutual TLS.
    """

    def __init__(self, node_id: str, listen: str, on_message: Callable[[Message], None], *,
                 cluster_key: bytes | None = None, queue_size: int = 4096,
                 connect_timeout: float = 1.0, max_backoff: float = 2.0, logger: logging.Logger | None = None,
                 handshake_timeout: float = 5.0, write_timeout: float = 10.0,
                 max_frame: int = DEFAULT_MAX_FRAME, cluster_id: Callable[[], str | None] | None = None,
                 peer_tls: PeerTls | None = None) -> None:
        if not isinstance(node_id, str) or not node_id or len(node_id) > MAX_ID_LEN:
            raise TransportError(f"bad node id {node_id!r}")
        if cluster_key is not None and (not isinstance(cluster_key, bytes) or not cluster_key):
            raise TransportError("cluster key must be non-empty bytes")
        if queue_size < 1:
            raise TransportError("queue_size must be at least 1")
        self._listen = parse_address(listen)
        self.node_id = node_id
        self.cluster_key = cluster_key
        self.peer_tls = peer_tls
        self.queue_size = queue_size
        self.connect_timeout = connect_timeout
        self.max_backoff = max(max_backoff, INITIAL_BACKOFF)
        self.handshake_timeout = handshake_timeout
        self.write_timeout = write_timeout
        self.max_frame = max_frame
        self.log = logger or logging.getLogger("axon.raft.transport")
        self.dropped = 0        # outbound: queue full, unknown peer, or lost with a broken connection
        self.misrouted = 0      # inbound: dst is not us, or src is not the connection's peer
        self.auth_failures = 0  # inbound: frames that did not open (tampered, replayed, forged)
        self._cluster_id = cluster_id
        self._on_message = on_message
        self._listen_text = listen
        self._links: dict[str, _PeerLink] = {}
        self._configured: dict[str, str] = {}   # from set_peers: always wins
        self._learned: dict[str, str] = {}      # from inbound hellos, for peers not configured
        self._inbound: set[Any] = set()
        self._refusals: dict[tuple[str, str], float] = {}
        self._server: gevent.server.StreamServer | None = None
        self._started = False
        self._stopped = False

    # -- lifecycle

    @property
    def address(self) -> str:
        """The actual "host:port" (after start, port 0 is replaced by the chosen port)."""
        if self._server is None:
            return self._listen_text
        host, port = self._server.address[:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def current_cluster_id(self) -> str | None:
        """This node's cluster id now (None: not known yet, e.g. waiting to join)."""
        return self._cluster_id() if self._cluster_id is not None else None

    def start(self) -> None:
        if self._started or self._stopped:
            return
        pool = gevent.pool.Pool(MAX_INBOUND_CONNECTIONS)
        self._server = gevent.server.StreamServer(self._listen, self._handle, spawn=pool)
        try:
            self._server.start()
        except OSError as exc:
            self._server = None
            raise TransportError(f"cannot listen on {self._listen_text}: {exc}") from exc
        self._started = True
        for link in self._links.values():
            link.start()
        self.log.info("raft transport %s listening on %s%s", self.node_id, self.address,
                      _channel_text(self.cluster_key is not None, self.peer_tls is not None))

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        for link in self._links.values():
            link.close()
        for sock in list(self._inbound):
            _close_quietly(sock)
        if self._server is not None:
            self._server.stop(timeout=1)

    # -- outbound

    def set_peers(self, peers: Mapping[str, str]) -> None:
        wanted = {peer: address for peer, address in peers.items() if peer != self.node_id}
        for address in wanted.values():
            parse_address(address)     # validate everything before changing anything
        self._configured = wanted
        self._sync_links()

    def _sync_links(self) -> None:
        wanted = {**self._learned, **self._configured}
        for peer in list(self._links):
            if wanted.get(peer) != self._links[peer].address:
                self._links.pop(peer).close()
        for peer, address in wanted.items():
            if peer not in self._links:
                link = _PeerLink(self, peer, address)
                self._links[peer] = link
                if self._started and not self._stopped:
                    link.start()

    def _learn(self, peer: PeerHello) -> None:
        """Keep the address a connecting peer gave, for when the configuration has none."""
        if (self._stopped or peer.raft is None or peer.node_id == self.node_id
                or peer.node_id in self._configured or self._learned.get(peer.node_id) == peer.raft):
            return
        if peer.node_id not in self._learned and len(self._learned) >= MAX_LEARNED_PEERS:
            self.log.debug("not keeping the address of raft peer %s: %d learned already",
                           peer.node_id, len(self._learned))
            return
        self._learned[peer.node_id] = peer.raft
        self.log.info("raft peer %s (not in our configuration) listens on %s", peer.node_id, peer.raft)
        self._sync_links()

    def send(self, msg: Message) -> None:
        link = self._links.get(msg.dst)
        if link is None or self._stopped or not link.enqueue(msg):
            self.dropped += 1

    def backlog(self, peer_id: str) -> int:
        """Messages queued for a peer and not yet written (bulk senders wait on this)."""
        link = self._links.get(peer_id)
        return link._queue.qsize() if link is not None else 0

    def is_connected(self, peer_id: str) -> bool:
        """True while an authenticated outbound connection to ``peer_id`` is up."""
        link = self._links.get(peer_id)
        return link is not None and link.connected

    # -- inbound

    def _handle(self, sock: gevent.socket.socket, addr: Any) -> None:
        remote = _format_peer(addr)
        self._inbound.add(sock)
        try:
            _tune(sock)
            if self.peer_tls is not None:
                self._inbound.discard(sock)
                sock = _wrap_tls(self.peer_tls.server, sock, server_side=True)   # no I/O yet
                self._inbound.add(sock)
            accepted = self._accept(sock, remote)
            if accepted is not None:
                session, conn = accepted
                opener = FrameOpener(session.keys.client_to_server) if session.keys is not None else None
                self._learn(session.peer)
                self._read_messages(conn, opener, session.peer.node_id, remote)
        except OSError as exc:
            self.log.debug("raft connection from %s failed: %s", remote, exc)
        finally:
            self._inbound.discard(sock)
            _close_quietly(sock)

    def _accept(self, sock: Any, remote: str) -> tuple[Accepted, _FramedSocket] | None:
        """TLS (when configured) and the handshake; None when refused (logged)."""
        try:
            with gevent.Timeout(self.handshake_timeout, HandshakeError("handshake timed out")):
                conn = _FramedSocket(sock, HANDSHAKE_MAX_FRAME)
                cert_id = None
                if self.peer_tls is not None:
                    sock.do_handshake()
                    cert_id = _tls_peer_id(sock)
                elif self.cluster_key is None:
                    self._refuse_other_users(conn)
                accepted = server_handshake(conn, self.node_id, self.cluster_key,
                                            cluster=self.current_cluster_id(), remote=remote, cert_id=cert_id)
        except HandshakeError as exc:
            self._log_refusal(remote, exc)
            return None
        except ssl.SSLError as exc:
            self._log_refusal(remote, HandshakeError(f"TLS failed: {_tls_problem(exc)}"))
            return None
        except (OSError, _ConnectionClosed) as exc:
            self.log.debug("raft connection from %s closed during handshake: %s", remote, exc)
            return None
        conn.decoder.max_frame = self.max_frame + (TAG_SIZE if accepted.keys is not None else 0)
        return accepted, conn

    @staticmethod
    def _refuse_other_users(conn: _FramedSocket) -> None:
        """Without a key or TLS nothing authenticates a peer: on loopback, trust only our own user."""
        uid = _other_user(conn.sock)
        if uid is not None:
            refusal = Refusal(f"it comes from a process of another user (uid {uid}); without a cluster key "
                              f"only this user's processes may speak raft here", "user",
                              "without a cluster key this node accepts its own user's processes only")
            _send_quietly(conn, refusal.wire())
            raise refusal

    def _log_refusal(self, remote: str, exc: HandshakeError) -> None:
        """One line per distinct refusal and host every REFUSAL_LOG_INTERVAL; debug in between."""
        self._log_limited(_host_of(remote), str(exc), exc.line(remote))

    def _log_limited(self, host: str, reason: str, line: str) -> None:
        now = time.monotonic()
        last = self._refusals.get((host, reason))
        level = logging.DEBUG if last is not None and now - last < REFUSAL_LOG_INTERVAL else logging.WARNING
        if level == logging.WARNING:
            if len(self._refusals) > 1000:    # bound memory against a flood of distinct refusals
                self._refusals = {k: t for k, t in self._refusals.items() if now - t < REFUSAL_LOG_INTERVAL}
            self._refusals[(host, reason)] = now
        self.log.log(level, "%s", line)

    def _read_messages(self, conn: _FramedSocket, opener: FrameOpener | None,
                       peer_id: str, remote: str) -> None:
        while True:
            try:
                payload = conn.read()
                if opener is not None:
                    payload = opener.open(payload)
                msg = decode_message(payload)
            except (OSError, _ConnectionClosed):
                return
            except ChannelError:
                self.auth_failures += 1
                self._log_limited(_host_of(remote), "auth",
                                  f"closing raft connection from {remote} (node {peer_id}): a frame failed "
                                  f"authentication (tampered, replayed or forged); "
                                  f"{self.auth_failures} so far")
                return
            except CodecError as exc:
                self.log.warning("closing raft connection from %s (node %s): bad message: %s",
                                 remote, peer_id, exc)
                return
            if msg.dst != self.node_id or msg.src != peer_id:
                self.misrouted += 1
                continue
            self._deliver(msg)

    def _deliver(self, msg: Message) -> None:
        try:
            self._on_message(msg)
        except Exception:
            # The receiver's bug must not cut the connection; log it loudly instead.
            self.log.exception("raft message handler failed for %s from %s", msg.type.name, msg.src)

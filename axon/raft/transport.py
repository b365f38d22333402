"""Raft transport: persistent, optionally authenticated TCP connections on gevent.

Each member keeps one outbound connection per peer (a writer greenlet draining a
bounded queue) and accepts inbound connections on its raft address (a reader
greenlet per connection).  Messages only flow outbound->inbound, so a pair of
members uses two connections.  Every connection starts with a handshake:

    client -> {hello, version, node, keyed, raft}    (raft: where the client listens)
    server -> {ok, node}                             (no cluster key)
    server -> {challenge: nonce_s, node}             (cluster key)
    client -> {proof: HMAC(key, "axon-raft|" + nonce_s + client_id), nonce: nonce_c}
    server -> {ok, proof: HMAC(key, "axon-raft|server|" + nonce_c + server_id)}

and any refusal is ``{ok: false, reason, detail}`` followed by a close.  Both
sides log one clear line when they refuse or are refused.

A peer's address normally comes from the cluster configuration (``set_peers``).  A member
that missed the change adding a peer (paused or cut off meanwhile) cannot answer that peer
until its log catches up, which needs that peer's answers when it is the leader; so an
inbound connection's ``raft`` address is used for peers the configuration does not name.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import os
import random
import socket
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import gevent
import gevent.pool
import gevent.queue
import gevent.server
import gevent.socket
import msgpack

from axon.address import AddressError, parse_addr
from axon.raft.codec import (DEFAULT_MAX_FRAME, MAX_ID_LEN, PROTOCOL_VERSION, CodecError,
                             FrameDecoder, decode_message, encode_frame, encode_message)
from axon.raft.interfaces import Transport
from axon.raft.types import Message

HANDSHAKE_MAX_FRAME = 64 * 1024      # unauthenticated peers must not make us buffer much
NONCE_SIZE = 32
INITIAL_BACKOFF = 0.05
MAX_BATCH_MESSAGES = 1024
MAX_INBOUND_CONNECTIONS = 1024
RECV_SIZE = 256 * 1024
REFUSAL_LOG_INTERVAL = 30.0          # repeated identical refusals are logged at debug
MAX_LEARNED_PEERS = 64               # addresses learned from inbound connections
_HELLO = "axon-raft"
_CLIENT_LABEL = b"axon-raft|"
_SERVER_LABEL = b"axon-raft|server|"  # distinct label: a server proof never passes as a client proof


class TransportError(Exception):
    """Transport misuse or a failure the caller should see (e.g. a bad address)."""


class HandshakeError(TransportError):
    """The handshake failed or was refused; the message is the log line's reason."""


class _ConnectionClosed(TransportError):
    """The peer closed the connection."""


# ---------------------------------------------------------------- pure helpers

def parse_address(address: str) -> tuple[str, int]:
    """"host:port" (or "[v6]:port") -> (host, port) by axon.address; raises TransportError."""
    try:
        return parse_addr(address, "raft address")
    except AddressError as exc:
        raise TransportError(str(exc)) from None


def client_proof(key: bytes, server_nonce: bytes, client_id: str) -> bytes:
    """What the connecting side sends to prove it holds ``key``."""
    return hmac.new(key, _CLIENT_LABEL + server_nonce + client_id.encode(), hashlib.sha256).digest()


def server_proof(key: bytes, client_nonce: bytes, server_id: str) -> bytes:
    """What the accepting side sends back to prove it holds ``key`` too."""
    return hmac.new(key, _SERVER_LABEL + client_nonce + server_id.encode(), hashlib.sha256).digest()


def _format_peer(addr: Any) -> str:
    try:
        host, port = addr[0], addr[1]
    except (TypeError, IndexError):
        return str(addr)
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


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
        if not isinstance(fields, dict):
            raise HandshakeError("malformed handshake (not a map)")
        return fields


def _field(fields: dict, name: str, kind: type, what: str) -> Any:
    value = fields.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise HandshakeError(f"malformed handshake ({what} missing or invalid)")
    return value


def _node_field(fields: dict) -> str:
    node = _field(fields, "node", str, "node id")
    if not node or len(node) > MAX_ID_LEN:
        raise HandshakeError("malformed handshake (node id missing or invalid)")
    return node


def _refuse(conn: _FramedSocket, reason: str, detail: str) -> None:
    """Tell the peer why we refuse; best effort since we close right after."""
    try:
        conn.write_map({"ok": False, "reason": reason, "detail": detail})
    except OSError:
        pass


# ---------------------------------------------------------------- handshake, server side

@dataclass(frozen=True, slots=True)
class PeerHello:
    """Who connected: its node id and, when it said so, where it listens for raft."""
    node_id: str
    raft: str | None


def server_handshake(conn: _FramedSocket, node_id: str, key: bytes | None) -> PeerHello:
    """Run the accepting side; returns the authenticated peer or raises HandshakeError."""
    hello = conn.read_map()
    if hello.get("hello") != _HELLO:
        raise HandshakeError("not an axon raft peer (bad hello)")
    version = hello.get("version")
    if version != PROTOCOL_VERSION or isinstance(version, bool):
        detail = f"protocol version {version!r} not supported (ours {PROTOCOL_VERSION})"
        _refuse(conn, "version", detail)
        raise HandshakeError(detail)
    peer_id = _node_field(hello)
    peer = PeerHello(peer_id, _raft_field(hello))
    keyed = _field(hello, "keyed", bool, "keyed flag")
    if key is None and keyed:
        _refuse(conn, "no-key", "no cluster key is configured on this node")
        raise HandshakeError(f"peer {peer_id} uses a cluster key but none is configured here")
    if key is not None and not keyed:
        _refuse(conn, "key-required", "this node requires a cluster key")
        raise HandshakeError(f"peer {peer_id} has no cluster key but one is required here")
    if key is None:
        conn.write_map({"ok": True, "node": node_id})
        return peer
    nonce = os.urandom(NONCE_SIZE)
    conn.write_map({"challenge": nonce, "node": node_id})
    answer = conn.read_map()
    proof = _field(answer, "proof", bytes, "proof")
    client_nonce = _field(answer, "nonce", bytes, "nonce")
    if not hmac.compare_digest(proof, client_proof(key, nonce, peer_id)):
        _refuse(conn, "key-mismatch", "cluster key mismatch")
        raise HandshakeError("cluster key mismatch")
    if len(client_nonce) != NONCE_SIZE:
        _refuse(conn, "malformed", "bad nonce")
        raise HandshakeError("malformed handshake (bad nonce)")
    conn.write_map({"ok": True, "node": node_id, "proof": server_proof(key, client_nonce, node_id)})
    return peer


def _raft_field(hello: dict) -> str | None:
    """The optional listen address in a hello (peers before it did not send one)."""
    raft = hello.get("raft")
    if raft is None:
        return None
    try:
        if not isinstance(raft, str) or len(raft) > 300:
            raise TransportError(raft)
        parse_address(raft)
    except TransportError:
        raise HandshakeError("malformed handshake (raft address invalid)") from None
    return raft


# ---------------------------------------------------------------- handshake, client side

def client_handshake(conn: _FramedSocket, node_id: str, key: bytes | None,
                     peer_id: str, address: str, raft: str | None = None) -> None:
    """Run the connecting side; raises HandshakeError whose text is a complete log line.

    ``raft`` is where this node listens, for a peer that has no address for it yet.
    """
    where = f"raft peer {peer_id} at {address}"
    hello = {"hello": _HELLO, "version": PROTOCOL_VERSION, "node": node_id, "keyed": key is not None}
    if raft is not None:
        hello["raft"] = raft
    conn.write_map(hello)
    reply = _read_reply(conn, where)
    _check_identity(reply, peer_id, address)
    if key is None:
        if reply.get("ok") is not True:
            raise HandshakeError(f"{where} sent an unexpected handshake reply")
        return
    if reply.get("ok") is True:
        raise HandshakeError(f"{where} has no cluster key configured; refusing unauthenticated connection")
    challenge = _field(reply, "challenge", bytes, "challenge")
    if len(challenge) != NONCE_SIZE:
        raise HandshakeError(f"{where} sent a malformed challenge")
    nonce = os.urandom(NONCE_SIZE)
    conn.write_map({"proof": client_proof(key, challenge, node_id), "nonce": nonce})
    final = _read_reply(conn, where)
    proof = final.get("proof")
    if final.get("ok") is not True or not isinstance(proof, bytes) \
            or not hmac.compare_digest(proof, server_proof(key, nonce, peer_id)):
        raise HandshakeError(f"{where} failed authentication (cluster key mismatch)")


def _read_reply(conn: _FramedSocket, where: str) -> dict:
    try:
        reply = conn.read_map()
    except HandshakeError as exc:
        raise HandshakeError(f"{where}: {exc}") from None
    if reply.get("ok") is False:
        raise HandshakeError(_refusal_line(where, reply.get("reason"), reply.get("detail")))
    return reply


def _refusal_line(where: str, reason: Any, detail: Any) -> str:
    if reason == "key-mismatch":
        return f"{where} refused our cluster key"
    if reason == "key-required":
        return f"{where} requires a cluster key but none is configured here"
    if reason == "no-key":
        return f"{where} refused our connection: it has no cluster key but one is configured here"
    return f"{where} refused our connection: {str(detail)[:200] or reason}"


def _check_identity(reply: dict, peer_id: str, address: str) -> None:
    claimed = reply.get("node")
    if claimed != peer_id:
        raise HandshakeError(f"raft peer at {address} identifies as {claimed!r}, expected {peer_id!r}")


# ---------------------------------------------------------------- outbound link

@dataclass(slots=True)
class _Rest:
    """The unsent end of a frame, valid only on the connection it was started on."""
    sock: Any
    data: bytes


class _PeerLink:
    """One peer's outbound side: a bounded queue and a writer greenlet that owns the socket."""

    def __init__(self, transport: "TcpTransport", peer_id: str, address: str) -> None:
        self.peer_id = peer_id
        self.address = address
        self._transport = transport
        self._queue: gevent.queue.Queue = gevent.queue.Queue(maxsize=transport.queue_size)
        self._sock: gevent.socket.socket | None = None
        self._writer: gevent.Greenlet | None = None
        self._watcher: gevent.Greenlet | None = None
        self._backoff = INITIAL_BACKOFF
        self._last_problem: str | None = None
        self._closed = False
        self._busy = False   # the writer greenlet is in the middle of a write

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def start(self) -> None:
        if self._writer is None and not self._closed:
            self._writer = gevent.spawn(self._run)

    def enqueue(self, msg: Message) -> bool:
        if self._sock is not None and not self._busy and self._queue.empty() and self._send_now(msg):
            return True
        try:
            self._queue.put_nowait(msg)
            return True
        except gevent.queue.Full:
            return False

    def _send_now(self, msg: Message) -> bool:
        """Write from the caller's greenlet when nothing is queued or being written.

        Waking the writer greenlet for a lone message cost more than the write itself; the
        socket is never made to wait here (a partial write leaves the rest to the writer,
        ahead of anything queued later).  False: the connection is gone, queue it instead.
        """
        try:
            frame = encode_frame(encode_message(msg))
        except CodecError as exc:
            self._transport.log.error("dropping unencodable raft message to %s: %s", self.peer_id, exc)
            return True
        sock = self._sock
        try:
            sent = sock.send(frame, 0, 0.0)   # timeout 0: never block the caller
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._transport.log.info("raft connection to %s at %s lost: %s", self.peer_id, self.address, exc)
            self._disconnect(sock)
            return False
        if sent < len(frame):
            self._queue.put_nowait(_Rest(sock, frame[sent:]))   # the queue is empty: nothing jumps ahead
        return True

    def close(self) -> None:
        self._closed = True
        for greenlet in (self._writer, self._watcher):
            if greenlet is not None and greenlet is not gevent.getcurrent():
                greenlet.kill(block=False)
        self._disconnect(self._sock)

    # -- writer greenlet

    def _run(self) -> None:
        while not self._closed:
            self._queue.peek()               # connect lazily: only when there is work
            if self._sock is None and not self._connect():
                self._sleep_backoff()
                continue
            batch = self._drain()
            if not self._write(batch):
                self._transport.dropped += len(batch)   # Raft retransmits what matters

    def _drain(self) -> list[Message]:
        batch = [self._queue.get()]
        while len(batch) < MAX_BATCH_MESSAGES and not self._queue.empty():
            batch.append(self._queue.get_nowait())
        return batch

    def _write(self, batch: list[Message | _Rest]) -> bool:
        frames = []
        for msg in batch:
            if isinstance(msg, _Rest):   # the rest of a frame _send_now could not finish
                if msg.sock is self._sock:   # on a new connection it would be garbage
                    frames.append(msg.data)
                continue
            try:
                frames.append(encode_frame(encode_message(msg)))
            except CodecError as exc:
                self._transport.log.error("dropping unencodable raft message to %s: %s", self.peer_id, exc)
        sock = self._sock
        if sock is None:
            return False
        self._busy = True
        try:
            # A peer that vanished without FIN would block sendall for many minutes.
            with gevent.Timeout(self._transport.write_timeout, OSError("write timed out")):
                sock.sendall(b"".join(frames))
            return True
        except OSError as exc:
            self._transport.log.info("raft connection to %s at %s lost: %s", self.peer_id, self.address, exc)
            self._disconnect(sock)
            return False
        finally:
            self._busy = False

    def _sleep_backoff(self) -> None:
        gevent.sleep(self._backoff * random.uniform(0.8, 1.0))
        self._backoff = min(self._backoff * 2, self._transport.max_backoff)

    def _connect(self) -> bool:
        log = self._transport.log
        sock = None
        try:
            host, port = parse_address(self.address)
            sock = gevent.socket.create_connection((host, port), timeout=self._transport.connect_timeout)
            _tune(sock)
            conn = _FramedSocket(sock, HANDSHAKE_MAX_FRAME)
            timeout = HandshakeError(f"raft peer {self.peer_id} at {self.address}: handshake timed out")
            with gevent.Timeout(self._transport.handshake_timeout, timeout):
                client_handshake(conn, self._transport.node_id, self._transport.cluster_key,
                                 self.peer_id, self.address, self._transport.address)
            sock.settimeout(None)
        except HandshakeError as exc:
            self._note_problem(str(exc), logging.WARNING)
            self._backoff = self._transport.max_backoff   # a refusal will not fix itself quickly
            _close_quietly(sock)
            return False
        except (OSError, TransportError) as exc:
            self._note_problem(f"cannot connect to raft peer {self.peer_id} at {self.address}: {exc}",
                               logging.DEBUG)
            _close_quietly(sock)
            return False
        self._sock = sock
        self._backoff = INITIAL_BACKOFF
        self._last_problem = None
        log.info("connected to raft peer %s at %s", self.peer_id, self.address)
        self._watcher = gevent.spawn(self._watch, sock)
        return True

    def _note_problem(self, line: str, level: int) -> None:
        # The same refusal on every retry would flood the log; say it once per change.
        if line != self._last_problem:
            self._transport.log.log(level, "%s", line)
            self._last_problem = line
        else:
            self._transport.log.debug("%s", line)

    def _watch(self, sock: gevent.socket.socket) -> None:
        """Notice a peer closing our outbound connection before the next write does."""
        try:
            data = sock.recv(1024)
        except OSError:
            data = b""
        if not data:
            self._transport.log.debug("raft peer %s closed our connection", self.peer_id)
        else:
            self._transport.log.warning("raft peer %s sent unexpected data; reconnecting", self.peer_id)
        self._disconnect(sock)

    def _disconnect(self, sock: gevent.socket.socket | None) -> None:
        if sock is not None and sock is self._sock:
            self._sock = None
        _close_quietly(sock)


def _tune(sock: gevent.socket.socket) -> None:
    # Raft messages are small and latency-bound; keepalive reaps half-open peers eventually.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)


def _close_quietly(sock: gevent.socket.socket | None) -> None:
    if sock is not None:
        try:
            sock.close()
        except OSError:
            pass


# ---------------------------------------------------------------- the transport

class TcpTransport(Transport):
    """Raft transport over persistent TCP connections (gevent, no monkey patching)."""

    def __init__(self, node_id: str, listen: str, on_message: Callable[[Message], None], *,
                 cluster_key: bytes | None = None, queue_size: int = 4096,
                 connect_timeout: float = 1.0, max_backoff: float = 2.0, logger: logging.Logger | None = None,
                 handshake_timeout: float = 5.0, write_timeout: float = 10.0,
                 max_frame: int = DEFAULT_MAX_FRAME) -> None:
        if not isinstance(node_id, str) or not node_id or len(node_id) > MAX_ID_LEN:
            raise TransportError(f"bad node id {node_id!r}")
        if cluster_key is not None and (not isinstance(cluster_key, bytes) or not cluster_key):
            raise TransportError("cluster key must be non-empty bytes")
        if queue_size < 1:
            raise TransportError("queue_size must be at least 1")
        self._listen = parse_address(listen)
        self.node_id = node_id
        self.cluster_key = cluster_key
        self.queue_size = queue_size
        self.connect_timeout = connect_timeout
        self.max_backoff = max(max_backoff, INITIAL_BACKOFF)
        self.handshake_timeout = handshake_timeout
        self.write_timeout = write_timeout
        self.max_frame = max_frame
        self.log = logger or logging.getLogger("axon.raft.transport")
        self.dropped = 0      # outbound: queue full, unknown peer, or lost with a broken connection
        self.misrouted = 0    # inbound: dst is not us, or src is not the connection's peer
        self._on_message = on_message
        self._listen_text = listen
        self._links: dict[str, _PeerLink] = {}
        self._configured: dict[str, str] = {}   # from set_peers: always wins
        self._learned: dict[str, str] = {}      # from inbound hellos, for peers not configured
        self._inbound: set[gevent.socket.socket] = set()
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
        self.log.info("raft transport %s listening on %s", self.node_id, self.address)

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
            conn = _FramedSocket(sock, HANDSHAKE_MAX_FRAME)
            peer = self._accept_handshake(conn, remote)
            if peer is not None:
                conn.decoder.max_frame = self.max_frame
                self._learn(peer)
                self._read_messages(conn, peer.node_id, remote)
        except OSError as exc:
            self.log.debug("raft connection from %s failed: %s", remote, exc)
        finally:
            self._inbound.discard(sock)
            _close_quietly(sock)

    def _accept_handshake(self, conn: _FramedSocket, remote: str) -> PeerHello | None:
        try:
            with gevent.Timeout(self.handshake_timeout, HandshakeError("handshake timed out")):
                return server_handshake(conn, self.node_id, self.cluster_key)
        except HandshakeError as exc:
            self._log_refusal(remote, str(exc))
        except (OSError, _ConnectionClosed) as exc:
            self.log.debug("raft connection from %s closed during handshake: %s", remote, exc)
        return None

    def _log_refusal(self, remote: str, reason: str) -> None:
        host = remote.rpartition(":")[0]
        now = time.monotonic()
        last = self._refusals.get((host, reason))
        level = logging.DEBUG if last is not None and now - last < REFUSAL_LOG_INTERVAL else logging.WARNING
        if level == logging.WARNING:
            if len(self._refusals) > 1000:    # bound memory against a flood of distinct refusals
                self._refusals = {k: t for k, t in self._refusals.items() if now - t < REFUSAL_LOG_INTERVAL}
            self._refusals[(host, reason)] = now
        self.log.log(level, "refused raft connection from %s: %s", remote, reason)

    def _read_messages(self, conn: _FramedSocket, peer_id: str, remote: str) -> None:
        while True:
            try:
                msg = decode_message(conn.read())
            except (OSError, _ConnectionClosed):
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

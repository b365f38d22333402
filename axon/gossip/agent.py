"""GossipAgent: drives the pure protocol with gevent UDP/TCP sockets and the monotonic clock.

Use it from the gevent hub's thread (greenlets); member-event callbacks run in the
agent's greenlets and must not block for long.  Packets carry the wall clock
(``time.time``) for the replay window; timers run on the monotonic clock.
"""
from __future__ import annotations

import logging
import random
import socket as _stdsocket
import time
from collections import Counter
from typing import Callable

import gevent
import gevent.event
import gevent.pool
from gevent.server import StreamServer

from axon.gossip import transport
from axon.gossip.address import format_addr, parse_addr
from axon.gossip.config import GossipConfig
from axon.gossip.crypto import check_key, gossip_key_for
from axon.gossip.errors import GossipError, StreamClosedError, TransportError
from axon.gossip.protocol import (NOTICE_INTERVAL, Gossip, MemberEvent, Notice, Output, PushPullRequest, SendPacket,
                                  check_meta)
from axon.gossip.ratelimit import LogLimiter

ChangeCallback = Callable[[str, dict], None]
ClusterIdSource = Callable[[], str | None]   # a ClusterId, or any callable like it
_WILDCARDS = ("", "0.0.0.0", "::")


class GossipAgent:
    """One cluster member on real sockets: UDP for probes and gossip, TCP (same port) for push-pull.

    ``cluster_id`` is asked before every protocol input (a joining node learns its cluster's
    id late): members of another cluster are refused (see protocol).
    """

    def __init__(self, config: GossipConfig, name: str, bind: str, meta: dict, *, key: bytes | None = None,
                 logger: logging.Logger | None = None, advertise: str | None = None,
                 cluster_id: ClusterIdSource | None = None) -> None:
        self._config = config
        self._name = name
        self._bind_host, self._bind_port = parse_addr(bind)
        self._advertise = advertise
        if advertise is not None:
            parse_addr(advertise)
        self._meta = check_meta(meta, config.meta_max_size)
        self._key = check_key(key) if key is not None else None
        self._cluster_id = cluster_id
        self._log = logger or logging.getLogger("axon.gossip")
        self._callbacks: list[ChangeCallback] = []
        self._proto: Gossip | None = None
        self._udp = None
        self._server: StreamServer | None = None
        self._greenlets = gevent.pool.Group()
        self._wake = gevent.event.Event()
        self._running = False
        self._address = ""
        self._io_stats: Counter[str] = Counter()
        self._join_warnings = LogLimiter(NOTICE_INTERVAL)

    @staticmethod
    def key_for(cluster_key: bytes | None, legacy_gossip_key: bytes | None = None) -> bytes | None:
        """The ``key`` for a node with these key files (see crypto.gossip_key_for); logs deprecations."""
        return gossip_key_for(cluster_key, legacy_gossip_key)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self._proto is not None:
            raise GossipError("agent already started")
        tcp, udp, port = transport.bind_pair(self._bind_host, self._bind_port)
        self._udp = udp
        self._address = self._advertise or format_addr(self._advertised_host(), port)
        self._proto = Gossip(self._config, self._name, self._address, self._meta, random.Random(),
                             key=self._key, now=time.monotonic(), wall_clock=time.time,
                             cluster_id=self._current_cluster_id())
        self._running = True
        self._server = StreamServer(tcp, self._serve_stream)
        self._server.start()
        self._greenlets.spawn(self._receive_loop)
        self._greenlets.spawn(self._timer_loop)
        self._log.info("gossip %s listening on %s", self._name, self._address)

    def stop(self) -> None:
        """Stop at once (no leave message): peers will detect a failure."""
        if not self._running:
            return
        self._running = False
        if self._server is not None:
            self._server.close()
        self._greenlets.kill(block=True, timeout=2)
        if self._udp is not None:
            self._udp.close()

    def join(self, seeds: list[str]) -> int:
        """Push-pull with every seed (in parallel); returns how many answered."""
        proto = self._started()
        targets = [s for s in seeds if s and s != self._address]
        jobs = [self._greenlets.spawn(self._push_pull, seed, proto.join_request(time.monotonic()), True)
                for seed in targets]
        gevent.joinall(jobs)
        return sum(1 for job in jobs if job.value is True)

    def join_in_background(self, seeds: list[str]) -> gevent.Greenlet:
        """Retry ``join`` with capped exponential backoff until a seed answers; the greenlet returns True."""
        self._started()

        def run() -> bool:
            delay = min(0.5, self._config.join_backoff_max)
            while self._running:
                if self.join(seeds) > 0:
                    return True
                gevent.sleep(delay)
                delay = min(delay * 2, self._config.join_backoff_max)
            return False
        return self._greenlets.spawn(run)

    def leave(self, timeout: float = 5.0) -> bool:
        """Broadcast a graceful leave and wait (up to ``timeout``) for it to spread; stop() afterwards."""
        proto = self._started()
        self._dispatch(proto.leave(time.monotonic()))
        deadline = time.monotonic() + timeout
        while not proto.leave_spread():
            if time.monotonic() >= deadline:
                return False
            gevent.sleep(0.01)
        return True

    # ------------------------------------------------------------ queries and updates

    @property
    def address(self) -> str:
        """The advertised "host:port" (the real port when bound to port 0)."""
        self._started()
        return self._address

    @property
    def name(self) -> str:
        return self._name

    @property
    def stats(self) -> dict[str, int]:
        """Protocol counters (dropped_<reason>, packets_*, ...) plus socket-level ones."""
        merged = Counter(self._proto.stats if self._proto else {})
        merged.update(self._io_stats)
        return dict(merged)

    @property
    def auth_failures(self) -> int:
        """Packets and frames dropped because the sender's key differs from ours (or they were tampered)."""
        return self.stats.get("auth_failures", 0)

    def members(self) -> list[dict]:
        """Every known member: {"node_id", "status", "gossip", "incarnation", "meta"}."""
        return self._started().members()

    def update_meta(self, meta: dict) -> None:
        self._dispatch(self._started().update_meta(time.monotonic(), meta))

    def on_change(self, callback: ChangeCallback) -> None:
        """Call ``callback(kind, member)`` on join/alive/update/suspect/dead/left/reap events."""
        self._callbacks.append(callback)

    # ------------------------------------------------------------ I/O edges

    def _started(self) -> Gossip:
        """The protocol, told the current cluster id (every input goes through here)."""
        if self._proto is None:
            raise GossipError("agent not started")
        self._proto.set_cluster_id(self._current_cluster_id())
        return self._proto

    def _current_cluster_id(self) -> str | None:
        return self._cluster_id() if self._cluster_id is not None else None

    def _advertised_host(self) -> str:
        if self._bind_host not in _WILDCARDS:
            return self._bind_host
        return _stdsocket.gethostbyname(_stdsocket.gethostname())

    def _dispatch(self, outputs: list[Output], wake: bool = True) -> None:
        for out in outputs:
            if isinstance(out, SendPacket):
                self._send_packet(out)
            elif isinstance(out, PushPullRequest):
                self._greenlets.spawn(self._push_pull, out.addr, out.data)
            elif isinstance(out, MemberEvent):
                self._notify(out)
            elif isinstance(out, Notice):
                self._log.warning("%s", out.message)
        if wake:
            self._wake.set()   # an input may have moved the next timer deadline

    def _send_packet(self, out: SendPacket) -> None:
        try:
            self._udp.sendto(out.data, parse_addr(out.addr))
        except (OSError, GossipError):
            self._io_stats["send_errors"] += 1

    def _notify(self, event: MemberEvent) -> None:
        for callback in list(self._callbacks):
            try:
                callback(event.kind, event.member)
            except Exception:  # a faulty subscriber must not stop the protocol
                self._log.exception("gossip on_change callback failed")

    def _receive_loop(self) -> None:
        while self._running:
            try:
                data, src = self._udp.recvfrom(65536)
            except OSError:
                # e.g. ICMP port-unreachable surfaced by Linux as ECONNREFUSED
                self._io_stats["receive_errors"] += 1
                gevent.sleep(0.001)
                continue
            self._dispatch(self._started().handle_packet(time.monotonic(), format_addr(src[0], src[1]), data))

    def _timer_loop(self) -> None:
        while self._running:
            delay = self._proto.next_deadline() - time.monotonic()
            if delay > 0:
                self._wake.wait(min(delay, 1.0))
            self._wake.clear()
            self._dispatch(self._started().tick(time.monotonic()), wake=False)

    def _serve_stream(self, sock, peer) -> None:
        sock.settimeout(self._config.stream_timeout)
        try:
            frame = transport.read_frame(sock, self._config.max_stream_size)
            reply, outputs = self._started().handle_push_pull(time.monotonic(), format_addr(peer[0], peer[1]),
                                                              frame)
            self._dispatch(outputs)
            if reply is not None:
                transport.write_frame(sock, reply)
        except (OSError, TransportError):
            self._io_stats["stream_errors"] += 1
        finally:
            sock.close()

    def _push_pull(self, addr: str, data: bytes, join: bool = False) -> bool:
        try:
            reply = transport.exchange(addr, data, self._config.stream_timeout, self._config.max_stream_size)
        except (OSError, GossipError) as exc:
            self._io_stats["push_pull_failures"] += 1
            if join:
                self._warn_join_failed(addr, exc)
            return False
        if not self._running:
            return False
        ok, outputs = self._started().handle_push_pull_reply(time.monotonic(), addr, reply, join=join)
        self._dispatch(outputs)
        return ok

    def _warn_join_failed(self, seed: str, exc: Exception) -> None:
        """One line per seed and NOTICE_INTERVAL: why a join got no answer (refusals are the protocol's)."""
        if not self._join_warnings.allow(seed, time.monotonic()):
            return
        if isinstance(exc, StreamClosedError):
            # a current seed answers a frame it cannot authenticate with a refusal; silence means
            # an older protocol version, or not a gossip port at all
            self._log.warning("gossip join via %s failed: the seed closed the connection without answering "
                              "(another version or another cluster key?)", seed)
        else:
            self._log.info("gossip join via %s failed: %s", seed, exc)

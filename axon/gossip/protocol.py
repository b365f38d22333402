"""SWIM membership with the Lifeguard refinements, as a pure state machine.

No sockets and no clock reads: every input method takes ``now`` (seconds, any
monotonic origin) and returns the outputs it caused -- packets to send, push-pull
exchanges to start, member events, warnings to log.  Packet timestamps (the replay
window, see codec and replay) come from the injected ``wall_clock``; without one they
are ``now`` itself, which suits simulations where every member shares one clock.
Timers live in an internal heap; the driver calls ``tick(now)`` at ``next_deadline()``
(and again whenever an input may have moved that deadline).  All randomness comes from
the injected ``random.Random``.

Semantics follow hashicorp/memberlist: randomized round-robin probing, ping-req
through k helpers with nacks, suspicion with incarnation refutation and a
log(N)-scaled timeout shortened by independent confirmations, local-health
scaling of our own timeouts, transmit-limited piggybacked broadcasts, periodic
push-pull; plus serf-style reconnects to dead members so partitions heal.

Every packet and push-pull frame names the sender's cluster id when it knows one (the
driver keeps ``cluster_id`` current): state from a member of another cluster is never
merged, and both sides of a refused push-pull log one line naming both ids.
"""
from __future__ import annotations

import heapq
import itertools
import math
import random
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Union

import msgpack

from axon.gossip import codec
from axon.gossip.address import parse_addr
from axon.gossip.broadcast import BroadcastQueue, retransmit_limit
from axon.gossip.codec import (ALIVE, DEAD, LEFT, SUSPECT, Ack, Alive, Cluster, Dead, IndirectPing, MemberRecord,
                               Message, Nack, Ping, PushPull, Suspect)
from axon.gossip.config import GossipConfig
from axon.gossip.crypto import Cipher
from axon.gossip.errors import CodecError, GossipError
from axon.gossip.ratelimit import LogLimiter
from axon.gossip.replay import ReplayGuard
from axon.gossip.suspicion import Suspicion, suspicion_timeout


NACK_TIMEOUT_FRACTION = 0.8
NOTICE_INTERVAL = 30.0          # seconds between two warnings about the same peer and problem
AUTH_DROPS = ("decrypt", "unencrypted", "encrypted")   # the sender's key differs from ours


@dataclass(frozen=True, slots=True)
class SendPacket:
    """Send ``data`` as one UDP datagram to ``addr``."""
    addr: str
    data: bytes


@dataclass(frozen=True, slots=True)
class PushPullRequest:
    """Open a stream to ``addr``, send ``data``, feed the answer to ``handle_push_pull_reply``."""
    addr: str
    data: bytes


@dataclass(frozen=True, slots=True)
class MemberEvent:
    """kind: join, alive (recovered), update (meta/address), suspect, dead, left, reap (forgotten)."""
    kind: str
    member: dict


@dataclass(frozen=True, slots=True)
class Notice:
    """A warning for the operator's log (already rate-limited), e.g. a peer with another key."""
    message: str


Output = Union[SendPacket, PushPullRequest, MemberEvent, Notice]


@dataclass(frozen=True, slots=True)
class _Dropped:
    reason: str
    skew: float = 0.0      # the sender's clock minus ours, for "stale"


@dataclass(slots=True)
class _Member:
    name: str
    addr: str
    meta: dict
    incarnation: int
    status: str
    changed_at: float
    suspicion: Suspicion | None = None

    def as_dict(self) -> dict:
        return {"node_id": self.name, "status": self.status, "gossip": self.addr,
                "incarnation": self.incarnation, "meta": dict(self.meta)}

    def record(self) -> MemberRecord:
        return MemberRecord(self.name, self.addr, self.meta, self.incarnation, self.status)


@dataclass(slots=True)
class _Probe:
    seq: int
    target: str
    started: float
    deadline: float
    expected_nacks: int = 0
    nacks: int = 0


@dataclass(slots=True)
class _Relay:
    """A ping we send on behalf of a ping-req; its ack is forwarded to ``requester``."""
    requester: str
    seq: int
    nack: bool


def check_meta(meta: dict, max_size: int) -> dict:
    """Validate user metadata (scalar values under string keys, small) and return a copy."""
    if not isinstance(meta, dict):
        raise GossipError("meta must be a dict")
    for k, v in meta.items():
        if not isinstance(k, str) or not (v is None or isinstance(v, (str, int, float, bool))):
            raise GossipError("meta must map strings to str/int/float/bool/None")
        if isinstance(v, float) and not math.isfinite(v):
            # NaN != NaN would make our own echoed announcement look foreign and trigger refutations
            raise GossipError("meta floats must be finite")
    if len(msgpack.packb(meta, use_bin_type=True)) > max_size:
        raise GossipError(f"meta larger than {max_size} bytes once encoded")
    return dict(meta)


class Gossip:
    """One member's view of the cluster and its protocol timers.

    ``key`` seals every packet and frame (see codec); ``wall_clock`` stamps them for the
    replay window; ``boot`` is this run's sender id (random unless a test fixes it);
    ``cluster_id`` is this node's cluster (None while joining; see ``set_cluster_id``).
    """

    def __init__(self, config: GossipConfig, name: str, addr: str, meta: dict, rng: random.Random, *,
                 key: bytes | None = None, now: float = 0.0, incarnation: int = 0,
                 wall_clock: Callable[[], float] | None = None, boot: bytes | None = None,
                 cluster_id: str | None = None) -> None:
        if not isinstance(name, str) or not 0 < len(name) <= codec.MAX_NAME_LEN:
            raise GossipError(f"bad member name {name!r}")
        parse_addr(addr)
        self.config = config
        self.name = name
        self.addr = addr
        self._cluster_id: str | None = None
        self._cluster_message = b""      # the encoded CLUSTER message that opens our packets
        self.set_cluster_id(cluster_id)
        self._rng = rng
        self._cipher = Cipher(key) if key is not None else None
        self._sender = codec.Sender(self._cipher, boot)
        self._replay = ReplayGuard(config.replay_window, config.replay_memory)
        self._notices = LogLimiter(NOTICE_INTERVAL)
        self._wall_clock = wall_clock
        self._now = now
        self._me = _Member(name, addr, check_meta(meta, config.meta_max_size), incarnation, ALIVE, now)
        self._members: dict[str, _Member] = {name: self._me}
        self._broadcasts = BroadcastQueue()
        self._timers: list[tuple[float, int, Callable, tuple]] = []
        self._timer_order = itertools.count()
        self._out: list[Output] = []
        self._seq = itertools.count(1)
        self._probe: _Probe | None = None
        self._probe_order: list[str] = []
        self._probe_index = 0
        self._suspects_to_probe: list[str] = []
        self._relays: dict[int, _Relay] = {}
        self._health = 0
        self._leaving = False
        self._stale_accusation = False
        self.stats: Counter[str] = Counter()
        self._broadcast_self()
        self._schedule(now + rng.uniform(0, config.probe_interval), self._on_probe_timer)
        self._schedule(now + rng.uniform(0, config.gossip_interval), self._on_gossip_timer)
        self._schedule(now + rng.uniform(0.5, 1.0) * config.push_pull_interval, self._on_push_pull_timer)
        self._schedule(now + rng.uniform(0.5, 1.0) * config.reconnect_interval, self._on_reconnect_timer)
        self._schedule(now + self._reap_interval(), self._on_reap_timer)

    # ------------------------------------------------------------ public API

    @property
    def incarnation(self) -> int:
        return self._me.incarnation

    @property
    def health(self) -> int:
        """Lifeguard local health score: 0 is healthy; timeouts are multiplied by health + 1."""
        return self._health

    @property
    def leaving(self) -> bool:
        return self._leaving

    @property
    def cluster_id(self) -> str | None:
        return self._cluster_id

    def set_cluster_id(self, cluster_id: str | None) -> None:
        """This node's cluster id from now on (a joining node learns it late); raises GossipError if invalid."""
        if cluster_id == self._cluster_id:
            return
        try:
            codec.check_cluster_id(cluster_id)
        except CodecError:
            raise GossipError(f"bad cluster id {cluster_id!r}") from None
        self._cluster_id = cluster_id
        self._cluster_message = codec.encode_message(Cluster(cluster_id)) if cluster_id is not None else b""

    def members(self) -> list[dict]:
        return [m.as_dict() for m in sorted(self._members.values(), key=lambda m: m.name)]

    def member(self, name: str) -> dict | None:
        m = self._members.get(name)
        return m.as_dict() if m else None

    def next_deadline(self) -> float:
        return self._timers[0][0] if self._timers else math.inf

    def tick(self, now: float) -> list[Output]:
        """Run every timer due at ``now``."""
        self._now = now
        while self._timers and self._timers[0][0] <= now:
            _, _, fn, args = heapq.heappop(self._timers)
            fn(now, *args)
        return self._drain()

    def handle_packet(self, now: float, src: str, data: bytes) -> list[Output]:
        """A UDP datagram arrived from ``src`` ("host:port")."""
        self._now = now
        self.stats["packets_received"] += 1
        messages = self._open(data, self.config.packet_size)
        if isinstance(messages, _Dropped):
            self._notice_dropped(now, src, src, "packet", messages)
            return self._drain()
        messages = self._admit_cluster(now, src, messages)
        if messages is None:
            return self._drain()
        self._stale_accusation = False
        for msg in messages:
            self._handle_message(now, src, msg)
        if self._stale_accusation and not self._leaving:
            # the sender still spreads an accusation we already refuted: tell it directly
            me = self._me
            self._send(src, Alive(me.incarnation, me.name, me.addr, me.meta))
        return self._drain()

    def join_request(self, now: float) -> bytes:
        """The push-pull frame to send to a seed when joining."""
        self._now = now
        return self._push_pull_frame(join=True)

    def handle_push_pull(self, now: float, src: str, data: bytes) -> tuple[bytes | None, list[Output]]:
        """A peer's push-pull frame arrived on a stream: merge it, return our (merged) state as the reply.

        A frame refused for its key or clock is answered with a refusal, so the peer can
        log why; other bad frames get no answer (None: close the stream).
        """
        self._now = now
        state = self._open_push_pull(data)
        if isinstance(state, _Dropped):
            self._notice_dropped(now, src, _host(src), "push-pull", state)
            code = codec.REFUSAL_FOR_DROP.get(state.reason)
            return (codec.refusal(code) if code else None), self._drain()
        if self._foreign(state.cluster):
            self._refuse_cluster(now, _advertised(state) or _host(src), state.cluster)
            # _foreign: our id is known
            return codec.cluster_refusal(self._cluster_id), self._drain()   # type: ignore[arg-type]
        self._merge(now, state)
        self.stats["push_pull_served"] += 1
        if state.join:
            # announce the newcomer now instead of at the next gossip tick
            self._gossip_round(now)
        return self._push_pull_frame(join=False), self._drain()

    def handle_push_pull_reply(self, now: float, src: str, data: bytes,
                               join: bool = False) -> tuple[bool, list[Output]]:
        """The answer to one of our push-pull requests (``join``: to a join_request); False when dropped."""
        self._now = now
        code = codec.refusal_reason(data)
        if code is not None:
            self.stats["streams_received"] += 1
            self._drop("refused")
            if code == codec.REFUSED_CLUSTER:
                theirs = codec.refused_by_cluster(data)
                self._notice(now, ("cluster", src), _cluster_text(src, theirs, self._cluster_id))
            else:
                self._notice_exchange(now, src, join, _refusal_text(code, self.config.replay_window))
            return False, self._drain()
        state = self._open_push_pull(data)
        if isinstance(state, _Dropped):
            self._notice_exchange(now, src, join, _bad_answer_text(state, self.config.replay_window))
            return False, self._drain()
        if self._foreign(state.cluster):
            # the peer learnt an id of its own since it let our frame in: still not ours to merge
            self._refuse_cluster(now, src, state.cluster)
            return False, self._drain()
        self._merge(now, state)
        self.stats["push_pull_merged"] += 1
        return True, self._drain()

    def update_meta(self, now: float, meta: dict) -> list[Output]:
        """Replace our metadata and re-announce ourselves with a higher incarnation."""
        self._now = now
        self._me.meta = check_meta(meta, self.config.meta_max_size)
        self._me.incarnation += 1
        self._broadcast_self()
        return self._drain()

    def leave(self, now: float) -> list[Output]:
        """Announce a graceful leave; probing stops, gossip goes on so the news spreads."""
        self._now = now
        if not self._leaving:
            self._leaving = True
            self._probe = None
            self._me.status = LEFT
            self._me.changed_at = now
            self._broadcast(self.name, Dead(self._me.incarnation, self.name, self.name))
            self._gossip_round(now)
        return self._drain()

    def leave_spread(self) -> bool:
        """True once the leave broadcast has used up its retransmissions (or nobody is left to tell)."""
        if not self._broadcasts.pending(self.name):
            return True
        return not any(m.status in (ALIVE, SUSPECT) for m in self._others())

    # ------------------------------------------------------------ plumbing

    def _drain(self) -> list[Output]:
        out, self._out = self._out, []
        return out

    def _drop(self, reason: str) -> None:
        self.stats["dropped"] += 1
        self.stats["dropped_" + reason] += 1
        if reason in AUTH_DROPS:
            self.stats["auth_failures"] += 1

    def _wall(self) -> float:
        return self._wall_clock() if self._wall_clock is not None else self._now

    def _open(self, data: bytes, max_size: int) -> list[Message] | _Dropped:
        """Authenticate, check freshness (when keyed) and decode one packet or frame; drops are counted."""
        try:
            header, messages = codec.open_packet(data, self._cipher, max_size)
        except CodecError as exc:
            self._drop(exc.reason)
            return _Dropped(exc.reason)
        if self._cipher is not None:
            # only an authentic header is worth remembering: forgeries cannot fill the guard
            wall = self._wall()
            reason = self._replay.admit(header.packet_id, header.timestamp, wall)
            if reason is not None:
                self._drop(reason)
                return _Dropped(reason, header.timestamp - wall)
        return messages

    def _foreign(self, theirs: str | None) -> bool:
        """True when a peer's cluster id says it belongs to another cluster (None: not known yet)."""
        return theirs is not None and self._cluster_id is not None and theirs != self._cluster_id

    def _refuse_cluster(self, now: float, peer: str, theirs: str | None) -> None:
        """Count and warn (rate-limited per peer) about state from a member of another cluster."""
        self._drop("cluster")
        self._notice(now, ("cluster", peer), _cluster_text(peer, theirs, self._cluster_id))

    def _admit_cluster(self, now: float, src: str, messages: list[Message]) -> list[Message] | None:
        """A packet's messages after its CLUSTER opener; None when the sender belongs to another cluster."""
        if not messages or not isinstance(messages[0], Cluster):
            return messages      # a sender that does not know its cluster yet
        if self._foreign(messages[0].cluster_id):
            self._refuse_cluster(now, src, messages[0].cluster_id)
            return None
        return messages[1:]

    def _notice(self, now: float, key: tuple, message: str) -> None:
        if self._notices.allow(key, now):
            self._out.append(Notice(message))

    def _notice_dropped(self, now: float, src: str, key: str, what: str, dropped: _Dropped) -> None:
        """Warn (rate-limited per ``key``) about a packet or frame refused for its key or clock."""
        reason = dropped.reason
        if reason == "decrypt":
            text = f"gossip {what} from {src} failed authentication: is it using another cluster key?"
        elif reason == "unencrypted":
            text = f"unencrypted gossip {what} from {src} refused: this node requires the cluster key"
        elif reason == "encrypted":
            text = (f"encrypted gossip {what} from {src} refused: this node has no cluster key "
                    f"(give every node the same --cluster-key-file)")
        elif reason == "stale":
            text = (f"gossip {what} from {src} refused: its timestamp is {dropped.skew:+.0f}s off this node's "
                    f"clock (limit {self.config.replay_window:g}s): clocks out of sync (check NTP), or a replay")
        else:
            return
        self._notice(now, (reason, key), text)

    def _notice_exchange(self, now: float, addr: str, join: bool, problem: str) -> None:
        """Warn (rate-limited per peer) that our push-pull with ``addr`` failed."""
        what = f"gossip join via {addr} failed" if join else f"gossip push-pull with {addr} failed"
        peer = "the seed" if join else "the peer"
        self._notice(now, ("exchange", addr), f"{what}: {problem.format(peer=peer)}")

    def _schedule(self, when: float, fn: Callable, *args: object) -> None:
        heapq.heappush(self._timers, (when, next(self._timer_order), fn, args))

    def _emit(self, kind: str, member: _Member) -> None:
        self._out.append(MemberEvent(kind, member.as_dict()))

    def _others(self) -> list[_Member]:
        return [m for m in self._members.values() if m.name != self.name]

    def _scaled(self, timeout: float) -> float:
        return timeout * (self._health + 1)

    def _adjust_health(self, delta: int) -> None:
        self._health = min(max(self._health + delta, 0), self.config.awareness_max_multiplier - 1)

    def _live_count(self) -> int:
        return sum(1 for m in self._members.values() if m.status in (ALIVE, SUSPECT))

    def _broadcast(self, name: str, msg: Message) -> None:
        self._broadcasts.queue(name, codec.encode_message(msg))

    def _broadcast_self(self) -> None:
        me = self._me
        self._broadcast(self.name, Alive(me.incarnation, me.name, me.addr, me.meta))

    def _send(self, addr: str, msg: Message, *extra: Message) -> None:
        """Send ``msg`` (and ``extra``) with as many pending broadcasts piggybacked as fit."""
        encoded = [codec.encode_message(m) for m in (msg, *extra)]
        budget = self._packet_budget() - sum(len(e) for e in encoded)
        encoded += self._broadcasts.take(budget, self._retransmit_limit())
        self._emit_packet(addr, encoded)

    def _emit_packet(self, addr: str, encoded: list[bytes]) -> None:
        self.stats["packets_sent"] += 1
        if self._cluster_message:
            encoded = [self._cluster_message, *encoded]
        self._out.append(SendPacket(addr, self._sender.seal(encoded, self._wall())))

    def _packet_budget(self) -> int:
        # 3 bytes: the largest msgpack array header a packet can need
        overhead = codec.packet_overhead(self._cipher is not None) + len(self._cluster_message) + 3
        return self.config.packet_size - overhead

    def _retransmit_limit(self) -> int:
        return retransmit_limit(self.config.retransmit_mult, len(self._members))

    def _random_members(self, count: int, keep: Callable[[_Member], bool]) -> list[_Member]:
        candidates = [m for m in self._others() if keep(m)]
        return self._rng.sample(candidates, min(count, len(candidates)))

    def _reap_interval(self) -> float:
        return min(max(self.config.dead_retention / 4, 0.1), 60.0)

    def _next_seq(self) -> int:
        return next(self._seq)

    # ------------------------------------------------------------ messages

    def _handle_message(self, now: float, src: str, msg: Message) -> None:
        if isinstance(msg, Ping):
            self._on_ping(src, msg)
        elif isinstance(msg, IndirectPing):
            self._on_indirect_ping(now, src, msg)
        elif isinstance(msg, Ack):
            self._on_ack(now, msg)
        elif isinstance(msg, Nack):
            if self._probe is not None and self._probe.seq == msg.seq:
                self._probe.nacks += 1
        elif isinstance(msg, Alive):
            self._on_alive(now, msg)
        elif isinstance(msg, Suspect):
            self._on_suspect(now, msg)
        elif isinstance(msg, Dead):
            self._on_dead(now, msg)
        else:
            self._drop("unexpected")

    def _on_ping(self, src: str, msg: Ping) -> None:
        if msg.target != self.name:
            self._drop("misdirected")
            return
        self._send(src, Ack(msg.seq))

    def _on_indirect_ping(self, now: float, src: str, msg: IndirectPing) -> None:
        if msg.target == self.name:
            self._send(src, Ack(msg.seq))
            return
        seq = self._next_seq()
        self._relays[seq] = _Relay(src, msg.seq, msg.nack)
        self._send(msg.target_addr, Ping(seq, msg.target))
        # The prober sends ping-req after probe_timeout and gives up probe_interval after the
        # ping; answering a bit sooner than probe_timeout lets a healthy helper's nack arrive
        # in time, so only a slow prober misses nacks (the Lifeguard health signal).
        self._schedule(now + self.config.probe_timeout * NACK_TIMEOUT_FRACTION, self._on_relay_timeout, seq)

    def _on_relay_timeout(self, now: float, seq: int) -> None:
        relay = self._relays.pop(seq, None)
        if relay is not None and relay.nack:
            self._send(relay.requester, Nack(relay.seq))

    def _on_ack(self, now: float, msg: Ack) -> None:
        relay = self._relays.pop(msg.seq, None)
        if relay is not None:
            self._send(relay.requester, Ack(relay.seq))
            return
        probe = self._probe
        if probe is not None and probe.seq == msg.seq:
            self._probe = None
            self._adjust_health(-1)
            self._schedule(max(now, probe.started + self.config.probe_interval), self._on_probe_timer)
        else:
            self.stats["late_acks"] += 1

    # ------------------------------------------------------------ state merging

    def _on_alive(self, now: float, msg: Alive) -> None:
        if msg.name == self.name:
            self._on_alive_about_self(msg)
            return
        m = self._members.get(msg.name)
        if m is None:
            m = _Member(msg.name, msg.addr, dict(msg.meta), msg.incarnation, ALIVE, now)
            self._members[msg.name] = m
            self._probe_order.insert(self._rng.randint(0, len(self._probe_order)), msg.name)
            self._broadcast(msg.name, msg)
            self._emit("join", m)
            return
        if msg.incarnation <= m.incarnation:
            return
        if msg.addr != m.addr and m.status in (ALIVE, SUSPECT):
            # two live claimants of one name: keep the one we know until it fails
            self.stats["address_conflicts"] += 1
            return
        before = (m.status, m.addr, m.meta)
        m.incarnation, m.addr, m.meta, m.status, m.suspicion = msg.incarnation, msg.addr, dict(msg.meta), ALIVE, None
        if before[0] != ALIVE:
            m.changed_at = now
        self._broadcast(msg.name, msg)
        if before[0] != ALIVE:
            self._emit("alive", m)
        elif before[1:] != (m.addr, m.meta):
            self._emit("update", m)

    def _on_alive_about_self(self, msg: Alive) -> None:
        me = self._me
        if self._leaving or msg.incarnation < me.incarnation:
            return
        if msg.incarnation == me.incarnation and msg.addr == me.addr and msg.meta == me.meta:
            return
        self._refute(msg.incarnation)

    def _refute(self, accused_incarnation: int) -> None:
        """Someone thinks we are suspect/dead/different: outbid them with a higher incarnation."""
        self._me.incarnation = max(self._me.incarnation, accused_incarnation) + 1
        self._adjust_health(1)
        self.stats["refutations"] += 1
        self._broadcast_self()

    def _on_suspect(self, now: float, msg: Suspect) -> None:
        m = self._members.get(msg.name)
        if m is None:
            return
        if msg.incarnation < m.incarnation:
            self._stale_accusation |= m is self._me
            return
        if m is self._me:
            if not self._leaving:
                self._refute(msg.incarnation)
            return
        if m.status == SUSPECT and m.suspicion is not None and msg.incarnation == m.incarnation:
            if m.suspicion.confirm(msg.sender):
                self._broadcast(m.name, msg)
                self._schedule(m.suspicion.deadline, self._on_suspicion_timeout, m.name, m.suspicion)
            return
        # a suspicion of a newer incarnation means the old one was refuted: start afresh
        if m.status not in (ALIVE, SUSPECT):
            return
        was_alive = m.status == ALIVE
        n = self._live_count()
        expected = self.config.suspicion_mult - 2
        if n - 2 < expected:
            expected = 0
        minimum = suspicion_timeout(self.config.suspicion_mult, n, self.config.probe_interval)
        m.status, m.incarnation, m.changed_at = SUSPECT, msg.incarnation, now
        m.suspicion = Suspicion(msg.sender, now, minimum, minimum * self.config.suspicion_max_timeout_mult, expected)
        self._schedule(m.suspicion.deadline, self._on_suspicion_timeout, m.name, m.suspicion)
        self._broadcast(m.name, msg)
        if was_alive:
            self._suspects_to_probe.append(m.name)
            self._emit("suspect", m)

    def _on_suspicion_timeout(self, now: float, name: str, suspicion: Suspicion) -> None:
        m = self._members.get(name)
        if m is None or m.status != SUSPECT or m.suspicion is not suspicion or now < suspicion.deadline:
            return
        self._on_dead(now, Dead(m.incarnation, name, self.name))

    def _on_dead(self, now: float, msg: Dead) -> None:
        m = self._members.get(msg.name)
        if m is None or m.status in (DEAD, LEFT):
            return
        if msg.incarnation < m.incarnation:
            self._stale_accusation |= m is self._me
            return
        if m is self._me:
            if not self._leaving:
                self._refute(msg.incarnation)
            return
        m.status = LEFT if msg.sender == msg.name else DEAD
        m.incarnation, m.changed_at, m.suspicion = msg.incarnation, now, None
        self._broadcast(m.name, msg)
        self._emit(m.status, m)

    def _merge(self, now: float, state: PushPull) -> None:
        for rec in state.members:
            if rec.status == ALIVE:
                self._on_alive(now, Alive(rec.incarnation, rec.name, rec.addr, rec.meta))
            elif rec.status == LEFT:
                self._on_dead(now, Dead(rec.incarnation, rec.name, rec.name))
            else:
                # a remote failure verdict is only a suspicion here: the member may refute it
                self._on_suspect(now, Suspect(rec.incarnation, rec.name, self.name))

    def _push_pull_frame(self, join: bool) -> bytes:
        records = tuple(m.record() for m in self._members.values())
        frame = PushPull(join, self.name, records, self._cluster_id)
        return self._sender.seal([codec.encode_message(frame)], self._wall())

    def _open_push_pull(self, data: bytes) -> PushPull | _Dropped:
        self.stats["streams_received"] += 1
        messages = self._open(data, self.config.max_stream_size)
        if isinstance(messages, _Dropped):
            return messages
        if len(messages) != 1 or not isinstance(messages[0], PushPull):
            self._drop("unexpected")
            return _Dropped("unexpected")
        return messages[0]

    # ------------------------------------------------------------ timers

    def _next_probe_target(self) -> _Member | None:
        # a fresh suspect is probed out of turn: our ping carries the suspicion, so the member
        # can refute to us directly, and a real failure gets an independent confirmation sooner
        while self._suspects_to_probe:
            m = self._members.get(self._suspects_to_probe.pop(0))
            if m is not None and m.status == SUSPECT:
                return m
        for _ in range(2):
            while self._probe_index < len(self._probe_order):
                m = self._members.get(self._probe_order[self._probe_index])
                self._probe_index += 1
                if m is not None and m is not self._me and m.status in (ALIVE, SUSPECT):
                    return m
            self._probe_order = [m.name for m in self._others()]
            self._rng.shuffle(self._probe_order)
            self._probe_index = 0
        return None

    def _on_probe_timer(self, now: float) -> None:
        if self._leaving or self._probe is not None:
            return
        target = self._next_probe_target()
        if target is None:
            self._schedule(now + self.config.probe_interval, self._on_probe_timer)
            return
        probe = _Probe(self._next_seq(), target.name, now, now + self._scaled(self.config.probe_interval))
        self._probe = probe
        # a suspect target learns of the suspicion from the probe itself (Lifeguard "buddy system")
        extra = [Suspect(target.incarnation, target.name, self.name)] if target.status == SUSPECT else []
        self._send(target.addr, Ping(probe.seq, target.name), *extra)
        self._schedule(now + self._scaled(self.config.probe_timeout), self._on_probe_direct_timeout, probe)
        self._schedule(probe.deadline, self._on_probe_deadline, probe)

    def _on_probe_direct_timeout(self, now: float, probe: _Probe) -> None:
        target = self._members.get(probe.target)
        if self._probe is not probe or target is None:
            return
        helpers = self._random_members(self.config.indirect_checks,
                                       lambda m: m.status == ALIVE and m.name != probe.target)
        probe.expected_nacks = len(helpers)
        for helper in helpers:
            self._send(helper.addr, IndirectPing(probe.seq, target.name, target.addr, True))

    def _on_probe_deadline(self, now: float, probe: _Probe) -> None:
        if self._probe is not probe:
            return
        self._probe = None
        # Lifeguard: missing nacks mean *we* are probably the slow one
        if probe.expected_nacks:
            self._adjust_health(probe.expected_nacks - probe.nacks)
        else:
            self._adjust_health(1)
        self.stats["probe_failures"] += 1
        target = self._members.get(probe.target)
        if target is not None and target.status in (ALIVE, SUSPECT):
            self._on_suspect(now, Suspect(target.incarnation, target.name, self.name))
        self._on_probe_timer(now)

    def _gossip_targets(self, now: float) -> list[_Member]:
        """``gossip_nodes`` live members, plus one recently dead member so a wrongly declared one can refute.

        The dead get a slot of their own: drawn from one pool, recent deaths would crowd out
        live members and updates could run out of retransmissions before reaching them all.
        """
        live = self._random_members(self.config.gossip_nodes, lambda m: m.status in (ALIVE, SUSPECT))
        dead = self._random_members(1, lambda m: m.status == DEAD
                                    and now - m.changed_at < self.config.gossip_to_the_dead_time)
        return live + dead

    def _gossip_round(self, now: float) -> None:
        limit = self._retransmit_limit()
        for target in self._gossip_targets(now):
            encoded = self._broadcasts.take(self._packet_budget(), limit)
            if not encoded:
                return
            self._emit_packet(target.addr, encoded)

    def _on_gossip_timer(self, now: float) -> None:
        self._schedule(now + self.config.gossip_interval, self._on_gossip_timer)
        self._gossip_round(now)

    def _on_push_pull_timer(self, now: float) -> None:
        self._schedule(now + self._push_pull_interval(), self._on_push_pull_timer)
        if self._leaving:
            return
        for peer in self._random_members(1, lambda m: m.status == ALIVE):
            self._out.append(PushPullRequest(peer.addr, self._push_pull_frame(join=False)))

    def _push_pull_interval(self) -> float:
        n = self._live_count()
        if n <= 32:
            return self.config.push_pull_interval
        return self.config.push_pull_interval * (math.ceil(math.log2(n) - math.log2(32)) + 1)

    def _on_reconnect_timer(self, now: float) -> None:
        self._schedule(now + self.config.reconnect_interval, self._on_reconnect_timer)
        if self._leaving:
            return
        for peer in self._random_members(1, lambda m: m.status == DEAD):
            self.stats["reconnects"] += 1
            self._out.append(PushPullRequest(peer.addr, self._push_pull_frame(join=False)))

    def _on_reap_timer(self, now: float) -> None:
        self._schedule(now + self._reap_interval(), self._on_reap_timer)
        for m in self._others():
            if m.status in (DEAD, LEFT) and now - m.changed_at >= self.config.dead_retention:
                del self._members[m.name]
                self._emit("reap", m)


# ------------------------------------------------------------ warning texts ({peer}: "the seed" or "the peer")

def _refusal_text(code: int, window: float) -> str:
    if code == codec.REFUSED_AUTH:
        return "{peer} did not accept our packets (different cluster key?)"
    if code == codec.REFUSED_KEY_REQUIRED:
        return "{peer} requires the cluster key and this node has none (give it --cluster-key-file)"
    if code == codec.REFUSED_NO_KEY:
        return ("{peer} has no cluster key but this node encrypts gossip "
                "(give every node the same --cluster-key-file)")
    if code == codec.REFUSED_CLOCK:
        return f"{{peer}} says our clock is more than {window:g}s off its own (check NTP)"
    return f"{{peer}} refused our packets (reason {code})"


def _bad_answer_text(dropped: _Dropped, window: float) -> str:
    reason = dropped.reason
    if reason == "decrypt":
        return "the answer of {peer} failed authentication (different cluster key?)"
    if reason == "unencrypted":
        return "{peer} answered unencrypted: it has no cluster key and this node requires one"
    if reason == "encrypted":
        return "{peer} answered encrypted: it uses a cluster key and this node has none"
    if reason == "stale":
        return f"the answer of {{peer}} is {dropped.skew:+.0f}s off our clock (limit {window:g}s; check NTP)"
    if reason == "replayed":
        # no network repeats a TCP frame: someone on the path replays traffic
        return "the answer of {peer} was a replay of an earlier frame (someone on the path?)"
    return f"the answer of {{peer}} is not a gossip frame we understand ({reason}: another version or service?)"


def _cluster_text(peer: str, theirs: str | None, ours: str | None) -> str:
    ours_text = f"cluster {ours}" if ours is not None else "no cluster yet"
    return f"gossip peer {peer} belongs to cluster {theirs}, this node to {ours_text}; refusing"


def _advertised(state: PushPull) -> str | None:
    """The sender's own gossip address as its frame lists it (a stream's source port is ephemeral)."""
    for rec in state.members:
        if rec.name == state.sender:
            return rec.addr
    return None


def _host(addr: str) -> str:
    """The host of "host:port" (a stream's port is ephemeral: warnings are limited per host)."""
    try:
        return parse_addr(addr)[0]
    except GossipError:
        return addr

"""The pure gossip protocol in the simulated network (FakeClock + SimNetwork), plus codec fuzzing."""
from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings, strategies as st

from axon.gossip import codec
from axon.gossip.broadcast import BroadcastQueue, retransmit_limit
from axon.gossip.config import GossipConfig
from axon.gossip.crypto import Cipher
from axon.gossip.errors import GossipError
from axon.gossip.protocol import Gossip, MemberEvent, Notice, PushPullRequest, SendPacket
from axon.gossip.suspicion import Suspicion, suspicion_timeout
from axon.testing.clock import FakeClock
from axon.testing.simnet import SimNetwork

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


def meta_for(name: str) -> dict:
    return {"node_id": name, "http": f"{name}.http:80", "raft": f"{name}.raft:81", "role": "voter"}


class SimNode:
    """Drives one Gossip state machine on the simulated clock and network."""

    def __init__(self, cluster: "SimCluster", name: str, addr: str, key: bytes | None) -> None:
        self.cluster, self.name, self.addr = cluster, name, addr
        self.proto = Gossip(cluster.config, name, addr, meta_for(name), random.Random(cluster.rng.random()),
                            key=key, now=cluster.clock.now)
        self.events: list[tuple[float, str, str]] = []
        self.notices: list[str] = []
        self.joined = False
        self.crashed = False
        self._timer = None
        self._timer_when = math.inf
        self._requests = 0
        cluster.net.register(addr, self._receive)
        self._reschedule()

    # -- driver plumbing
    def _dispatch(self, outputs) -> None:
        for out in outputs:
            if isinstance(out, SendPacket):
                self.cluster.net.send(self.addr, out.addr, ("udp", out.data))
            elif isinstance(out, PushPullRequest):
                self._requests += 1
                self.cluster.net.send(self.addr, out.addr, ("pp", self._requests, out.data))
            elif isinstance(out, MemberEvent):
                self.events.append((self.cluster.clock.now, out.kind, out.member["node_id"]))
            elif isinstance(out, Notice):
                self.notices.append(out.message)
        self._reschedule()

    def _reschedule(self) -> None:
        when = self.proto.next_deadline()
        if not self.crashed and when < self._timer_when:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_when = when
            self._timer = self.cluster.clock.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer, self._timer_when = None, math.inf
        self._dispatch(self.proto.tick(self.cluster.clock.now))

    def _receive(self, src: str, payload) -> None:
        now = self.cluster.clock.now
        kind = payload[0]
        if kind == "udp":
            self._dispatch(self.proto.handle_packet(now, src, payload[1]))
        elif kind == "pp":
            reply, outs = self.proto.handle_push_pull(now, src, payload[2])
            if reply is not None:
                self.cluster.net.send(self.addr, src, ("pp_reply", payload[1], reply))
            self._dispatch(outs)
        elif kind == "pp_reply":
            ok, outs = self.proto.handle_push_pull_reply(now, src, payload[2], join=payload[1] == -1)
            self.joined = self.joined or ok
            self._dispatch(outs)

    # -- operations
    def join(self, seed_addr: str, retry: float = 1.0) -> None:
        """Push-pull with the seed, retrying (like join_in_background) until one answer arrives."""
        if self.joined or self.crashed:
            return
        self.cluster.net.send(self.addr, seed_addr, ("pp", -1, self.proto.join_request(self.cluster.clock.now)))
        self.cluster.clock.call_later(retry, lambda: self.join(seed_addr, retry))

    def crash(self) -> None:
        self.crashed = True
        self.cluster.net.unregister(self.addr)
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None

    def leave(self) -> None:
        self._dispatch(self.proto.leave(self.cluster.clock.now))

    def view(self) -> dict[str, str]:
        return {m["node_id"]: m["status"] for m in self.proto.members()}


class SimCluster:
    def __init__(self, seed: int, config: GossipConfig | None = None, loss: float = 0.0) -> None:
        self.config = config or GossipConfig()
        self.clock = FakeClock()
        self.rng = random.Random(seed)
        self.net = SimNetwork(self.clock, random.Random(seed * 7919 + 1), loss=loss)
        self.nodes: dict[str, SimNode] = {}

    def add(self, name: str, *, key: bytes | None = None, join: str | None = "n0") -> SimNode:
        addr = f"10.0.{len(self.nodes) // 250}.{len(self.nodes) % 250 + 1}:7946"
        if name in self.nodes:
            addr = self.nodes[name].addr
        node = SimNode(self, name, addr, key)
        self.nodes[name] = node
        if join is not None and join != name:
            node.join(self.nodes[join].addr)
        return node

    def live(self) -> list[SimNode]:
        return [n for n in self.nodes.values() if not n.crashed]

    def converged(self, names: list[str] | None = None) -> bool:
        names = names or [n.name for n in self.live()]
        expected = {name: "alive" for name in names}
        return all({k: v for k, v in self.nodes[o].view().items() if k in expected} == expected
                   and sum(1 for v in self.nodes[o].view().values() if v == "alive") == len(names)
                   for o in names)

    def all_see(self, target: str, status: str, observers: list[str] | None = None) -> bool:
        observers = observers or [n.name for n in self.live() if n.name != target]
        return all(self.nodes[o].view().get(target) == status for o in observers)

    def events(self, kind: str, about: str | None = None) -> list[tuple]:
        return [(n.name, ev) for n in self.nodes.values() for ev in n.events
                if ev[1] == kind and (about is None or ev[2] == about)]


def start_cluster(seed: int, n: int, **kw) -> SimCluster:
    cluster = SimCluster(seed, **kw)
    for i in range(n):
        cluster.add(f"n{i}")
    assert cluster.clock.run_until(cluster.converged, timeout=120, step=0.1), "cluster never converged"
    return cluster


# ---------------------------------------------------------------- membership scenarios

def test_fifty_nodes_join_through_one_seed_and_converge_then_detect_a_crash():
    cluster = SimCluster(seed=1)
    for i in range(50):
        cluster.add(f"n{i}")
    # gossip alone usually converges in ~1 s; the first push-pull (<= 30 s) repairs any miss
    assert cluster.clock.run_until(cluster.converged, timeout=90, step=0.1)
    first = cluster.nodes["n0"].proto.members()
    assert len(first) == 50
    assert all(m["meta"] == meta_for(m["node_id"]) for m in first)
    assert not cluster.events("dead") and not cluster.events("suspect")
    cluster.nodes["n17"].crash()
    t0 = cluster.clock.now
    assert cluster.clock.run_until(lambda: cluster.all_see("n17", "dead"), timeout=120, step=0.1)
    assert cluster.clock.now - t0 < 60
    assert {about for _, (_, _, about) in cluster.events("dead")} == {"n17"}


def test_crashed_node_is_declared_dead_by_every_member():
    cluster = start_cluster(2, 20)
    cluster.nodes["n7"].crash()
    t0 = cluster.clock.now
    assert cluster.clock.run_until(lambda: cluster.all_see("n7", "dead"), timeout=90, step=0.1)
    # suspicion timeout for 20 members is between 4*log10(20) ~ 5.2 s and 6x that
    assert 4 < cluster.clock.now - t0 < 45
    assert {about for _, (_, _, about) in cluster.events("dead")} == {"n7"}


@pytest.mark.slow
def test_ten_percent_loss_for_ten_minutes_kills_nobody():
    cluster = start_cluster(3, 20)
    cluster.net.set_loss(0.10)
    cluster.clock.advance(600)
    assert cluster.net.stats["lost"] > 1000
    assert cluster.events("dead") == []
    cluster.net.set_loss(0.0)
    assert cluster.clock.run_until(cluster.converged, timeout=60, step=0.5)


def test_joins_spread_fast_while_recent_deaths_are_still_gossiped_to():
    cluster = start_cluster(2, 5)
    for k in range(5, 15):
        cluster.clock.advance(1)
        live = cluster.live()
        victim = live[1 + k % (len(live) - 1)]
        victim.crash()
        assert cluster.clock.run_until(lambda: cluster.all_see(victim.name, "dead"), timeout=60, step=0.05)
        t0 = cluster.clock.now
        cluster.add(f"n{k}", join=live[0].name)
        assert cluster.clock.run_until(lambda: cluster.all_see(f"n{k}", "alive"), timeout=60, step=0.01)
        assert cluster.clock.now - t0 < 3.0, f"join of n{k} took {cluster.clock.now - t0:.1f}s"


def test_slow_node_is_not_declared_dead():
    cluster = start_cluster(4, 12)
    slow = cluster.nodes["n5"]
    # each packet to or from the slow node takes 0.3 s more: a round trip exceeds the probe timeout
    cluster.net.set_node_delay(slow.addr, 0.3)
    cluster.clock.advance(300)
    assert cluster.events("dead") == []
    assert all(n.view()["n5"] in ("alive", "suspect") for n in cluster.live())
    assert cluster.clock.run_until(cluster.converged, timeout=60, step=0.5)


def test_slow_node_raises_its_own_health_score():
    cluster = start_cluster(5, 8)
    slow = cluster.nodes["n3"]
    cluster.net.set_node_delay(slow.addr, 0.6)   # its probes fail and the helpers' nacks come too late
    assert cluster.clock.run_until(lambda: slow.proto.health >= 2, timeout=60, step=0.5)
    assert max(n.proto.health for n in cluster.live() if n is not slow) <= 1
    cluster.net.set_node_delay(slow.addr, 0.0)
    assert cluster.clock.run_until(lambda: slow.proto.health == 0, timeout=120, step=0.5)


def test_partition_heals_and_views_merge():
    cluster = start_cluster(6, 16)
    left = [f"n{i}" for i in range(8)]
    right = [f"n{i}" for i in range(8, 16)]
    cluster.net.partition([cluster.nodes[n].addr for n in left], [cluster.nodes[n].addr for n in right])
    assert cluster.clock.run_until(
        lambda: all(cluster.all_see(r, "dead", left) for r in right)
        and all(cluster.all_see(l, "dead", right) for l in left), timeout=120, step=0.5)
    # stay split well past gossip_to_the_dead_time: only reconnects to dead members can heal now
    cluster.clock.advance(3 * cluster.config.gossip_to_the_dead_time)
    assert sum(n.proto.stats["reconnects"] for n in cluster.live()) > 0
    cluster.net.heal()
    assert cluster.clock.run_until(cluster.converged, timeout=600, step=0.5)
    assert any(n.proto.stats["refutations"] for n in cluster.live())


def test_suspected_node_refutes_with_higher_incarnation():
    cluster = start_cluster(7, 10)
    victim, accuser = cluster.nodes["n4"], cluster.nodes["n1"]
    old = victim.proto.incarnation
    rumour = codec.Sender(None).seal([codec.encode_message(codec.Suspect(old, "n4", "n1"))], cluster.clock.now)
    for name in ("n2", "n3", "n6"):
        cluster.net.send(accuser.addr, cluster.nodes[name].addr, ("udp", rumour))
    assert cluster.clock.run_until(lambda: victim.proto.incarnation > old, timeout=10, step=0.05)
    assert victim.proto.stats["refutations"] >= 1
    new = victim.proto.incarnation
    assert cluster.clock.run_until(
        lambda: all(n.proto.member("n4") == {**n.proto.member("n4"), "status": "alive", "incarnation": new}
                    for n in cluster.live()), timeout=30, step=0.1)
    assert cluster.events("suspect", "n4")
    assert cluster.events("alive", "n4")
    assert cluster.events("dead") == []


def test_graceful_leave_shows_left_not_dead():
    cluster = start_cluster(8, 10)
    leaver = cluster.nodes["n6"]
    leaver.leave()
    assert cluster.clock.run_until(lambda: cluster.all_see("n6", "left"), timeout=5, step=0.05)
    assert cluster.clock.run_until(leaver.proto.leave_spread, timeout=5, step=0.05)
    leaver.crash()
    cluster.clock.advance(120)
    assert cluster.all_see("n6", "left")
    assert cluster.events("dead") == [] and cluster.events("suspect", "n6") == []


def test_restarted_node_with_same_name_becomes_alive_again():
    cluster = start_cluster(9, 8)
    cluster.nodes["n3"].crash()
    assert cluster.clock.run_until(lambda: cluster.all_see("n3", "dead"), timeout=90, step=0.1)
    dead_inc = cluster.nodes["n0"].proto.member("n3")["incarnation"]
    reborn = cluster.add("n3")          # fresh process: incarnation 0, same name and address
    assert cluster.clock.run_until(lambda: cluster.all_see("n3", "alive"), timeout=30, step=0.1)
    assert reborn.proto.incarnation > dead_inc
    assert cluster.converged()


def test_dead_members_are_forgotten_after_retention():
    cluster = start_cluster(10, 6, config=GossipConfig(dead_retention=120.0))
    cluster.nodes["n2"].crash()
    assert cluster.clock.run_until(lambda: cluster.all_see("n2", "dead"), timeout=90, step=0.1)
    cluster.clock.advance(60)
    assert cluster.all_see("n2", "dead")
    assert cluster.clock.run_until(lambda: all("n2" not in n.view() for n in cluster.live()), timeout=180, step=1)
    assert cluster.events("reap", "n2")


def test_metadata_update_propagates():
    cluster = start_cluster(11, 10)
    node = cluster.nodes["n2"]
    new_meta = {**meta_for("n2"), "role": "learner"}
    node._dispatch(node.proto.update_meta(cluster.clock.now, new_meta))
    assert cluster.clock.run_until(
        lambda: all(n.proto.member("n2")["meta"] == new_meta for n in cluster.live()), timeout=10, step=0.05)
    assert len(cluster.events("update", "n2")) == 9


def test_same_seed_gives_same_history():
    def history(seed):
        cluster = start_cluster(seed, 6)
        cluster.nodes["n1"].crash()
        cluster.clock.advance(40)
        return [n.events for n in cluster.nodes.values()], dict(cluster.net.stats)
    assert history(12) == history(12)


# ---------------------------------------------------------------- encryption

def test_nodes_with_the_same_key_converge():
    cluster = SimCluster(seed=13)
    for i in range(8):
        cluster.add(f"n{i}", key=KEY)
    assert cluster.clock.run_until(cluster.converged, timeout=60, step=0.1)
    assert all(n.proto.stats["dropped"] == 0 for n in cluster.live())


@pytest.mark.parametrize("bad_key, reason", [(OTHER_KEY, "dropped_decrypt"), (None, "dropped_unencrypted")])
def test_node_with_other_key_or_none_cannot_join(bad_key, reason):
    cluster = SimCluster(seed=14)
    for i in range(5):
        cluster.add(f"n{i}", key=KEY)
    assert cluster.clock.run_until(cluster.converged, timeout=60, step=0.1)
    intruder = cluster.add("x", key=bad_key)
    cluster.clock.advance(10)
    assert not intruder.joined
    assert list(intruder.view()) == ["x"]
    assert cluster.nodes["n0"].proto.stats[reason] >= 5          # one per join attempt
    assert all("x" not in n.view() for n in cluster.nodes.values() if n is not intruder)
    # even told about the members, its UDP probes and gossip are dropped by everyone
    members = tuple(codec.MemberRecord(n.name, n.addr, {}, 0, "alive") for n in cluster.live() if n is not intruder)
    cipher = Cipher(bad_key) if bad_key else None
    frame = codec.Sender(cipher).seal([codec.encode_message(codec.PushPull(False, "n0", members))],
                                      cluster.clock.now)
    intruder._dispatch(intruder.proto.handle_push_pull_reply(cluster.clock.now, "n0", frame)[1])
    before = sum(n.proto.stats[reason] for n in cluster.live() if n is not intruder)
    cluster.clock.advance(10)
    after = sum(n.proto.stats[reason] for n in cluster.live() if n is not intruder)
    assert after - before >= 10
    assert all("x" not in n.view() for n in cluster.nodes.values() if n is not intruder)
    assert cluster.converged([f"n{i}" for i in range(5)])


def test_encrypted_packets_fit_the_packet_budget():
    cluster = SimCluster(seed=15)
    sizes = []
    original = cluster.net.send

    def spy(src, dst, payload):
        if payload[0] == "udp":
            sizes.append(len(payload[1]))
        original(src, dst, payload)
    cluster.net.send = spy
    for i in range(40):
        cluster.add(f"n{i}", key=KEY)
    assert cluster.clock.run_until(cluster.converged, timeout=60, step=0.1)
    assert max(sizes) <= 1400
    assert max(sizes) > 1000, "compound packets should fill up when there is a lot to say"


# ---------------------------------------------------------------- codec fuzz

def make_node(key=None) -> Gossip:
    return Gossip(GossipConfig(), "me", "127.0.0.1:7946", {"node_id": "me"}, random.Random(1), key=key)


def valid_packet(cipher=None) -> bytes:
    msgs = [codec.Ping(1, "me"), codec.Alive(3, "peer", "127.0.0.2:7946", {"node_id": "peer"}),
            codec.Suspect(1, "other", "peer")]
    return codec.Sender(cipher).seal([codec.encode_message(m) for m in msgs], 0.0)


def plain(body: bytes) -> bytes:
    """An unencrypted packet of this version around ``body`` (which need not be valid)."""
    return codec.HEADER.pack(codec.MAGIC, codec.VERSION, 0, bytes(16), 0, 0) + body


@pytest.mark.parametrize("key", [None, KEY])
def test_truncated_packets_are_dropped_and_counted(key):
    node = make_node(key)
    packet = valid_packet(Cipher(key) if key else None)
    for cut in range(len(packet)):
        node.handle_packet(0.0, "127.0.0.2:7946", packet[:cut])
    assert node.stats["dropped"] == len(packet)
    assert node.member("peer") is None
    outs = node.handle_packet(0.0, "127.0.0.2:7946", packet)
    assert node.member("peer")["status"] == "alive"
    assert any(isinstance(o, SendPacket) for o in outs)       # the ping was acked


def test_foreign_oversized_and_wrong_version_packets_are_dropped_and_counted():
    node = make_node()
    good = valid_packet()
    cases = {
        "dropped_version": bytes([codec.MAGIC, 99, 0]) + good[3:],
        "dropped_foreign": b"GET / HTTP/1.1\r\n\r\n",
        "dropped_oversized": good + b"\x00" * 1400,
        "dropped_encrypted": bytes([codec.MAGIC, codec.VERSION, codec.FLAG_ENCRYPTED]) + b"\x00" * 60,
        "dropped_malformed": plain(codec.msgpack.packb([[codec.MsgKind.PING, "x"]])),
    }
    for counter, packet in cases.items():
        outs = node.handle_packet(0.0, "1.2.3.4:5", packet)
        assert all(isinstance(o, Notice) for o in outs)     # nothing sent, nobody learnt
        assert node.stats[counter] == 1, counter
    assert node.stats["dropped"] == len(cases)
    assert node.members() == [node.member("me")]


def test_push_pull_on_udp_and_garbage_streams_are_dropped():
    node = make_node()
    frame = node.join_request(0.0)
    node.handle_packet(0.0, "1.2.3.4:5", frame)
    assert node.stats["dropped_unexpected"] == 1
    reply, _ = node.handle_push_pull(0.0, "1.2.3.4:5", valid_packet())
    assert reply is None and node.stats["dropped_unexpected"] == 2
    ok, _ = node.handle_push_pull_reply(0.0, "1.2.3.4:5", plain(b"\xc1"))
    assert not ok and node.stats["dropped_malformed"] == 1


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=2000))
def test_random_bytes_never_crash(data):
    node = make_node()
    node.handle_packet(0.0, "1.2.3.4:5", data)
    node.handle_packet(0.0, "1.2.3.4:5", plain(data))
    node.handle_push_pull(0.0, "1.2.3.4:5", plain(data))
    assert node.member("me")["status"] == "alive"


@settings(max_examples=150, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.text(max_size=20) | st.binary(max_size=8)
                    | st.floats(allow_nan=False),
                    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner,
                                                                                 max_size=4),
                    max_leaves=20))
def test_structured_garbage_never_crashes(obj):
    node = make_node()
    for body in (obj, [obj], [[5, obj]], [[8, False, "x", obj]], [[2, 1, "a", obj, True]]):
        packet = plain(codec.msgpack.packb(body, use_bin_type=True))
        node.handle_packet(0.0, "1.2.3.4:5", packet)
        node.handle_push_pull(0.0, "1.2.3.4:5", packet)
    assert node.member("me")["status"] == "alive"


def test_codec_round_trip_all_kinds():
    msgs = [codec.Ping(1, "a"), codec.IndirectPing(2, "b", "10.0.0.1:1", True), codec.Ack(3), codec.Nack(4),
            codec.Alive(5, "c", "[::1]:9", {"k": 1, "f": 1.5, "n": None, "b": True}), codec.Suspect(6, "d", "e"),
            codec.Dead(7, "f", "f"),
            codec.PushPull(True, "g", (codec.MemberRecord("h", "1.1.1.1:1", {}, 8, "suspect"),))]
    for cipher in (None, Cipher(KEY)):
        packet = codec.Sender(cipher).seal([codec.encode_message(m) for m in msgs], 0.0)
        assert codec.open_packet(packet, cipher, 1 << 20)[1] == msgs


# ---------------------------------------------------------------- pieces and validation

def test_suspicion_timeout_scales_with_cluster_and_shrinks_with_confirmations():
    assert suspicion_timeout(4, 1, 1.0) == 4.0
    assert suspicion_timeout(4, 100, 1.0) == pytest.approx(8.0)
    s = Suspicion("a", start=10.0, min_timeout=5.0, max_timeout=30.0, expected_confirmations=2)
    assert s.deadline == 40.0
    assert not s.confirm("a")
    assert s.confirm("b") and 15.0 < s.deadline < 40.0
    assert not s.confirm("b")
    assert s.confirm("c") and s.deadline == 15.0
    assert not s.confirm("d")


def test_broadcast_queue_limits_and_invalidates():
    assert retransmit_limit(4, 9) == 4 and retransmit_limit(4, 10) == 8
    q = BroadcastQueue()
    q.queue("a", b"old")
    q.queue("a", b"new")
    q.queue("b", b"x" * 50)
    assert len(q) == 2
    assert q.take(10, limit=2) == [b"new"]
    assert q.take(100, limit=2) == [b"x" * 50, b"new"]
    assert q.take(100, limit=2) == [b"x" * 50]
    assert len(q) == 0


def test_bad_arguments_raise_gossip_error():
    with pytest.raises(GossipError):
        GossipConfig(probe_interval=0)
    with pytest.raises(GossipError):
        GossipConfig(probe_timeout=2.0)
    with pytest.raises(GossipError):
        Gossip(GossipConfig(), "", "1.2.3.4:5", {}, random.Random(1))
    with pytest.raises(GossipError):
        Gossip(GossipConfig(), "a", "nope", {}, random.Random(1))
    with pytest.raises(GossipError):
        Gossip(GossipConfig(), "a", "1.2.3.4:5\u00b2", {}, random.Random(1))   # not an ASCII digit
    with pytest.raises(GossipError):
        Gossip(GossipConfig(), "a", "1.2.3.4:5", {}, random.Random(1), key=b"short")
    node = make_node()
    with pytest.raises(GossipError):
        node.update_meta(0.0, {"big": "x" * 600})
    with pytest.raises(GossipError):
        node.update_meta(0.0, {"nested": {"no": 1}})
    with pytest.raises(GossipError):
        node.update_meta(0.0, {"weight": float("nan")})

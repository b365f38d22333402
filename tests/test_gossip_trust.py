"""Gossip keyed from the cluster key: sealing, replay protection, and clear lines when keys differ.

Pure tests drive the protocol with explicit clocks; agent tests use real sockets on 127.0.0.1.
"""
from __future__ import annotations

import logging
import random

import gevent
import pytest
from gevent import socket
from hypothesis import given, settings, strategies as st

from axon.gossip import codec
from axon.gossip.agent import GossipAgent
from axon.gossip.config import GossipConfig
from axon.gossip.crypto import BOOT_SIZE, Cipher, boot_key, gossip_key_for
from axon.gossip.protocol import Gossip, Notice, SendPacket
from axon.gossip.ratelimit import LogLimiter
from axon.gossip.replay import ReplayGuard
from axon.security.channel import derive_key
from axon.testing.polling import wait_until

CLUSTER_KEY = bytes(range(32))
OTHER_CLUSTER_KEY = bytes(range(100, 132))
KEY = gossip_key_for(CLUSTER_KEY)
OTHER_KEY = gossip_key_for(OTHER_CLUSTER_KEY)
WALL = 1_700_000_000.0        # a plausible wall clock; the protocol's own "now" starts at 0


class Clock:
    def __init__(self, wall: float = WALL) -> None:
        self.wall = wall

    def __call__(self) -> float:
        return self.wall


def make(name: str, key: bytes | None = KEY, clock: Clock | None = None, port: int = 7946) -> Gossip:
    return Gossip(GossipConfig(), name, f"127.0.0.{len(name)}:{port}", {"node_id": name}, random.Random(1),
                  key=key, wall_clock=clock or Clock())


def sealed(sender: Gossip, *msgs: codec.Message) -> bytes:
    """A packet as ``sender`` would put it on the wire now."""
    return sender._sender.seal([codec.encode_message(m) for m in msgs], sender._wall())


def notices(outputs) -> list[str]:
    return [o.message for o in outputs if isinstance(o, Notice)]


# ---------------------------------------------------------------- keys

def test_gossip_key_is_derived_from_the_cluster_key_and_stable():
    assert len(KEY) == 32 and KEY != CLUSTER_KEY and KEY not in CLUSTER_KEY
    assert gossip_key_for(CLUSTER_KEY) == KEY == derive_key(CLUSTER_KEY, b"gossip")
    assert gossip_key_for(OTHER_CLUSTER_KEY) != KEY
    assert derive_key(CLUSTER_KEY, b"raft") != KEY               # one key per use
    assert gossip_key_for(None) is None


def test_the_gossip_key_file_is_a_deprecated_alias(caplog):
    caplog.set_level(logging.WARNING, logger="axon.gossip")
    assert gossip_key_for(None, CLUSTER_KEY) == KEY               # the same file, either flag
    assert [r.getMessage() for r in caplog.records] == [
        "--gossip-key-file is deprecated: give the same file as --cluster-key-file, "
        "which keys Raft, gossip and join admission"]
    caplog.clear()
    assert gossip_key_for(CLUSTER_KEY, OTHER_CLUSTER_KEY) == KEY  # the cluster key wins
    assert len(caplog.records) == 1 and "--gossip-key-file is ignored" in caplog.records[0].getMessage()
    caplog.clear()
    assert GossipAgent.key_for(CLUSTER_KEY, None) == KEY and not caplog.records


def test_each_boot_seals_under_its_own_subkey():
    a, b = codec.Sender(Cipher(KEY)), codec.Sender(Cipher(KEY))
    assert a.boot != b.boot and len(a.boot) == BOOT_SIZE
    assert boot_key(KEY, a.boot) != boot_key(KEY, b.boot)
    ack = [codec.encode_message(codec.Ack(1))]
    first, second = a.seal(ack, WALL), a.seal(ack, WALL)
    assert first != second and a.counter == 2


# ---------------------------------------------------------------- wire format

def test_header_layout_and_versioning():
    sender = codec.Sender(Cipher(KEY), boot=b"B" * 16)
    sender.counter = 41
    packet = sender.seal([codec.encode_message(codec.Ack(3))], WALL + 0.25)
    assert codec.HEADER_SIZE == 35
    magic, version, flags, boot, counter, stamp = codec.HEADER.unpack_from(packet)
    assert (magic, version, flags, boot, counter, stamp) == (0xA7, 3, codec.FLAG_ENCRYPTED, b"B" * 16, 41,
                                                             int((WALL + 0.25) * 1000))
    assert len(packet) == codec.HEADER_SIZE + 4 + 16                  # body [[3, 3]] sealed, plus the tag
    header, messages = codec.open_packet(packet, Cipher(KEY), 1400)
    assert messages == [codec.Ack(3)] and header.counter == 41 and header.timestamp == WALL + 0.25
    node = make("me")
    # version 1 (no replay header), version 2 (no cluster id): dropped as another version, never misread
    olds = [bytes([0xA7, v, 1]) + packet[3:] for v in (1, 2)] + [bytes([0xA7, 1, 0, 0x91, 0x92, 3, 3])]
    for old in olds:
        assert node.handle_packet(0.0, "127.0.0.9:1", old) == []
    assert node.stats["dropped_version"] == 3 and node.stats["auth_failures"] == 0
    node.handle_packet(0.0, "127.0.0.9:1", codec.refusal(codec.REFUSED_AUTH))   # never valid on UDP
    assert node.stats["dropped_malformed"] == 1


@pytest.mark.parametrize("field, offset", [("flags", 2), ("boot", 5), ("counter", 20), ("timestamp", 30),
                                           ("body", 36), ("tag", -1)])
def test_a_tampered_packet_is_dropped_and_counted(field, offset):
    sender, receiver = make("peer"), make("me")
    packet = bytearray(sealed(sender, codec.Ping(1, "me")))
    packet[offset] ^= 0x01
    outs = receiver.handle_packet(0.0, sender.addr, bytes(packet))
    assert not any(isinstance(o, SendPacket) for o in outs)
    dropped = {k: v for k, v in receiver.stats.items() if k.startswith("dropped_")}
    assert receiver.stats["dropped"] == 1 and len(dropped) == 1, dropped
    if field != "flags":        # flipping the flag makes it a plain packet, refused as such
        assert dropped == {"dropped_decrypt": 1}
        assert notices(outs) == [f"gossip packet from {sender.addr} failed authentication: "
                                 f"is it using another cluster key?"]
    assert receiver.stats["auth_failures"] == 1


# ---------------------------------------------------------------- replay

def test_a_replayed_packet_is_dropped_and_counted():
    sender, receiver = make("peer"), make("me")
    packet = sealed(sender, codec.Ping(1, "me"))
    assert any(isinstance(o, SendPacket) for o in receiver.handle_packet(0.0, sender.addr, packet))
    for src in (sender.addr, "10.9.9.9:1"):       # from anywhere, as often as you like
        assert receiver.handle_packet(1.0, src, packet) == []
    assert receiver.stats["dropped_replayed"] == 2 and receiver.stats["auth_failures"] == 0


def test_packets_outside_the_time_window_are_dropped_with_a_clock_line():
    receiver = make("me")
    for skew in (-31.0, +31.0, +95.0):
        sender = make("peer", clock=Clock(WALL + skew))
        assert not any(isinstance(o, SendPacket) for o in receiver.handle_packet(0.0, sender.addr,
                                                                                 sealed(sender, codec.Ping(1, "me"))))
    assert receiver.stats["dropped_stale"] == 3 and receiver.stats["auth_failures"] == 0
    sender = make("other", clock=Clock(WALL + 95))
    outs = receiver.handle_packet(0.0, sender.addr, sealed(sender, codec.Ping(1, "me")))
    assert notices(outs) == [f"gossip packet from {sender.addr} refused: its timestamp is +95s off this node's "
                             f"clock (limit 30s): clocks out of sync (check NTP), or a replay"]
    # within the window, a skewed clock is fine
    sender = make("third", clock=Clock(WALL - 29))
    outs = receiver.handle_packet(0.0, sender.addr, sealed(sender, codec.Ping(1, "me")))
    assert any(isinstance(o, SendPacket) for o in outs) and receiver.stats["dropped"] == 4


def test_replay_guard_admits_once_within_the_window():
    guard = ReplayGuard(window=30.0, capacity=100)
    assert guard.admit(b"a", WALL, WALL) is None
    assert guard.admit(b"a", WALL, WALL + 1) == "replayed"
    assert guard.admit(b"b", WALL - 30.5, WALL) == "stale"
    assert guard.admit(b"c", WALL + 30.5, WALL) == "stale"
    assert guard.admit(b"a", WALL, WALL + 31) == "stale"          # out of the window: forgotten is fine
    assert len(guard) == 0 and guard.floor == WALL
    assert guard.admit(b"a", WALL, WALL + 5) == "replayed"         # our clock stepped back: still refused


def test_replay_memory_is_bounded_and_forgetting_never_readmits():
    guard = ReplayGuard(window=30.0, capacity=64)
    rng = random.Random(5)
    admitted = []
    for i in range(5000):
        # 1000 packets/s, so 64 ids cover 64 ms; each stamped up to 10 ms off (senders' clocks, reordering)
        stamp = WALL + i * 0.001 + rng.uniform(-0.01, 0.01)
        if guard.admit(i.to_bytes(4, "big"), stamp, WALL + i * 0.001) is None:
            admitted.append((i.to_bytes(4, "big"), stamp))
        assert len(guard) <= 64
    assert len(admitted) > 4900          # forgetting only the oldest costs almost no fresh packet
    wall = WALL + 5.0
    assert all(guard.admit(pid, stamp, wall) is not None for pid, stamp in admitted)


def test_a_replayed_push_pull_frame_is_dropped():
    joiner, seed = make("joiner"), make("seed")
    frame = joiner.join_request(0.0)
    reply, _ = seed.handle_push_pull(0.0, "127.0.0.6:40000", frame)
    assert reply is not None and seed.member("joiner")
    assert joiner.handle_push_pull_reply(0.0, seed.addr, reply, join=True)[0]
    assert seed.handle_push_pull(1.0, "127.0.0.6:40001", frame) == (None, [])
    ok, outs = joiner.handle_push_pull_reply(1.0, seed.addr, reply, join=True)
    assert not ok and notices(outs) == [f"gossip join via {seed.addr} failed: the answer of the seed was a replay "
                                        f"of an earlier frame (someone on the path?)"]
    assert seed.stats["dropped_replayed"] == joiner.stats["dropped_replayed"] == 1


def test_forged_boot_ids_do_not_evict_real_senders_subkeys():
    cipher = Cipher(KEY)
    real = codec.Sender(Cipher(KEY))
    codec.open_packet(real.seal([codec.encode_message(codec.Ack(1))], WALL), cipher, 1400)
    for i in range(1000):
        forged = codec.HEADER.pack(codec.MAGIC, codec.VERSION, codec.FLAG_ENCRYPTED, i.to_bytes(16, "big"), 0, 0)
        with pytest.raises(codec.CodecError):
            codec.open_packet(forged + bytes(20), cipher, 1400)
    assert list(cipher._aeads) == [real.boot]


# ---------------------------------------------------------------- wrong keys, both sides

@pytest.mark.parametrize("joiner_key, seed_key, seed_line, joiner_line", [
    (OTHER_KEY, KEY, "gossip push-pull from 127.0.0.6:40000 failed authentication: is it using another cluster key?",
     "gossip join via {seed} failed: the seed did not accept our packets (different cluster key?)"),
    (None, KEY, "unencrypted gossip push-pull from 127.0.0.6:40000 refused: this node requires the cluster key",
     "gossip join via {seed} failed: the seed requires the cluster key and this node has none "
     "(give it --cluster-key-file)"),
    (KEY, None, "encrypted gossip push-pull from 127.0.0.6:40000 refused: this node has no cluster key "
                "(give every node the same --cluster-key-file)",
     "gossip join via {seed} failed: the seed has no cluster key but this node encrypts gossip "
     "(give every node the same --cluster-key-file)"),
], ids=["other-key", "joiner-without-key", "seed-without-key"])
def test_a_refused_join_gives_one_line_on_each_side(joiner_key, seed_key, seed_line, joiner_line):
    joiner, seed = make("joiner", key=joiner_key), make("seed", key=seed_key)
    seed_said, joiner_said = [], []
    for attempt in range(5):                     # join_in_background retries
        now = attempt * 2.0
        reply, outs = seed.handle_push_pull(now, "127.0.0.6:40000", joiner.join_request(now))
        seed_said += notices(outs)
        assert codec.refusal_reason(reply) is not None
        ok, outs = joiner.handle_push_pull_reply(now, seed.addr, reply, join=True)
        joiner_said += notices(outs)
        assert not ok
    assert seed_said == [seed_line] and joiner_said == [joiner_line.format(seed=seed.addr)]
    assert seed.member("joiner") is None and joiner.member("seed") is None
    assert joiner.stats["dropped_refused"] == 5
    # after the rate limit's interval, one more line each
    reply, outs = seed.handle_push_pull(31.0, "127.0.0.6:40000", joiner.join_request(31.0))
    assert notices(outs) == [seed_line]
    assert notices(joiner.handle_push_pull_reply(31.0, seed.addr, reply, join=True)[1]) == [
        joiner_line.format(seed=seed.addr)]


def test_a_join_refused_for_the_clock_says_so():
    joiner, seed = make("joiner", clock=Clock(WALL - 120)), make("seed")
    reply, outs = seed.handle_push_pull(0.0, "127.0.0.6:40000", joiner.join_request(0.0))
    assert codec.refusal_reason(reply) == codec.REFUSED_CLOCK and "-120s off" in notices(outs)[0]
    assert notices(joiner.handle_push_pull_reply(0.0, seed.addr, reply, join=True)[1]) == [
        f"gossip join via {seed.addr} failed: the seed says our clock is more than 30s off its own (check NTP)"]


def test_log_limiter_bounds_lines_and_memory():
    limiter = LogLimiter(interval=30.0, capacity=3)
    assert limiter.allow("a", 0.0) and not limiter.allow("a", 29.0) and limiter.allow("a", 30.0)
    assert limiter.allow("b", 30.0) and limiter.allow("c", 30.0)
    assert not limiter.allow("d", 31.0)                # a flood of new sources stays quiet
    assert limiter.allow("d", 61.0) and len(limiter._last) <= 3


# ---------------------------------------------------------------- real sockets

FAST = GossipConfig(probe_interval=0.2, probe_timeout=0.1, gossip_interval=0.05, suspicion_mult=4,
                    push_pull_interval=2.0, reconnect_interval=1.0, stream_timeout=1.0,
                    gossip_to_the_dead_time=3.0, join_backoff_max=0.3)


@pytest.fixture
def agents():
    made: list[GossipAgent] = []

    def make_agent(name: str, key: bytes | None, cluster_id=None) -> GossipAgent:
        agent = GossipAgent(FAST, name, "127.0.0.1:0", {"node_id": name}, key=key, cluster_id=cluster_id,
                            logger=logging.getLogger(f"axon.gossip.{name}"))
        made.append(agent)
        agent.start()
        return agent
    yield make_agent
    for agent in made:
        agent.stop()


def lines(caplog, name: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == f"axon.gossip.{name}" and r.levelno >= logging.WARNING]


def names(agent: GossipAgent) -> set[str]:
    return {m["node_id"] for m in agent.members() if m["status"] == "alive"}


def test_agents_with_the_same_cluster_key_find_each_other(agents, caplog):
    a = agents("a", GossipAgent.key_for(CLUSTER_KEY))
    b = agents("b", GossipAgent.key_for(CLUSTER_KEY))
    assert b.join([a.address]) == 1
    wait_until(lambda: names(a) == names(b) == {"a", "b"}, timeout=5, what="both see both")
    gevent.sleep(0.3)       # some probes and gossip on UDP too
    assert a.auth_failures == b.auth_failures == 0 and not lines(caplog, "a") and not lines(caplog, "b")
    assert a.stats.get("dropped", 0) == b.stats.get("dropped", 0) == 0


@pytest.mark.parametrize("stranger_key, seed_says, stranger_says", [
    (OTHER_KEY, "gossip push-pull from 127.0.0.1:{port} failed authentication: is it using another cluster key?",
     "the seed did not accept our packets (different cluster key?)"),
    (None, "unencrypted gossip push-pull from 127.0.0.1:{port} refused: this node requires the cluster key",
     "the seed requires the cluster key and this node has none (give it --cluster-key-file)"),
], ids=["other-key", "no-key"])
def test_agents_with_different_keys_never_meet_and_each_logs_one_line(agents, caplog, stranger_key, seed_says,
                                                                      stranger_says):
    caplog.set_level(logging.INFO, logger="axon.gossip")
    seed = agents("seed", KEY)
    stranger = agents("stranger", stranger_key)
    job = stranger.join_in_background([seed.address])
    wait_until(lambda: stranger.stats.get("dropped_refused", 0) >= 3, timeout=5, what="three refused joins")
    assert not job.ready() and names(seed) == {"seed"} and names(stranger) == {"stranger"}
    assert seed.auth_failures >= 3
    seed_lines, stranger_lines = lines(caplog, "seed"), lines(caplog, "stranger")
    assert len(seed_lines) == 1 and len(stranger_lines) == 1, (seed_lines, stranger_lines)
    port = seed_lines[0].split("127.0.0.1:")[1].split()[0]
    assert seed_lines == [seed_says.format(port=port)]
    assert stranger_lines == [f"gossip join via {seed.address} failed: {stranger_says}"]


class ClusterIdBox:
    """Stands in for ClusterId: a callable whose answer the test changes (a joiner learns its id late)."""

    def __init__(self, value: str | None) -> None:
        self.value = value

    def __call__(self) -> str | None:
        return self.value


def refusing(peer: str, theirs: str, ours: str) -> str:
    return f"gossip peer {peer} belongs to cluster {theirs}, this node to cluster {ours}; refusing"


@pytest.mark.parametrize("key", [None, KEY], ids=["unkeyed", "one-key"])
def test_two_clusters_seeded_into_each_other_never_merge_and_both_log_one_line(agents, caplog, key):
    caplog.set_level(logging.INFO, logger="axon.gossip")
    x, y = ClusterIdBox("a1" * 16), ClusterIdBox("b2" * 16)
    a1, a2, b1, b2 = agents("a1", key, x), agents("a2", key, x), agents("b1", key, y), agents("b2", key, y)
    assert a2.join([a1.address]) == 1 and b2.join([b1.address]) == 1
    wait_until(lambda: names(a1) == names(a2) == {"a1", "a2"} and names(b1) == names(b2) == {"b1", "b2"},
               timeout=5, what="each cluster formed")
    a1.join_in_background([b1.address])
    b1.join_in_background([a1.address])
    wait_until(lambda: a1.stats.get("dropped_refused", 0) >= 3 and b1.stats.get("dropped_refused", 0) >= 3,
               timeout=5, what="three refused joins each way")
    gevent.sleep(0.3)      # probes and gossip go on inside each cluster
    assert names(a1) == names(a2) == {"a1", "a2"} and names(b1) == names(b2) == {"b1", "b2"}
    assert a1.stats["dropped_cluster"] >= 3 and b1.stats["dropped_cluster"] >= 3
    assert a1.auth_failures == b1.auth_failures == 0
    # each side both refused and was refused: still one line, naming the peer's gossip address
    assert lines(caplog, "a1") == [refusing(b1.address, y.value, x.value)]
    assert lines(caplog, "b1") == [refusing(a1.address, x.value, y.value)]
    assert not lines(caplog, "a2") and not lines(caplog, "b2")
    # a node still joining (no id yet) is let in, and keeps gossiping once it learns its id
    c_id = ClusterIdBox(None)
    c = agents("c", key, c_id)
    assert c.join([a2.address]) == 1
    c_id.value = x.value
    wait_until(lambda: names(a1) == names(a2) == names(c) == {"a1", "a2", "c"}, timeout=5, what="c joined")
    gevent.sleep(0.3)
    assert names(c) == {"a1", "a2", "c"} and names(b1) == names(b2) == {"b1", "b2"}
    assert c.stats.get("dropped", 0) == 0


def test_a_captured_packet_replayed_to_its_receiver_is_dropped_and_counted(agents):
    a, b = agents("a", KEY), agents("b", KEY)
    captured: list[bytes] = []
    send = a._send_packet

    def tap(out: SendPacket) -> None:
        if out.addr == b.address:
            captured.append(out.data)
        send(out)
    a._send_packet = tap
    assert b.join([a.address]) == 1
    wait_until(lambda: len(captured) >= 3 and names(b) == {"a", "b"}, timeout=5, what="packets from a to b")
    host, port = b.address.rsplit(":", 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as attacker:
        for packet in captured[:3]:
            attacker.sendto(packet, (host, int(port)))
    wait_until(lambda: b.stats.get("dropped_replayed", 0) >= 3, timeout=2, what="replays counted")
    assert b.auth_failures == 0 and names(b) == {"a", "b"}


def test_a_seed_that_closes_without_answering_gives_one_line(agents, caplog):
    caplog.set_level(logging.INFO, logger="axon.gossip")
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)

    def hang_up() -> None:
        while True:
            conn, _ = listener.accept()
            conn.recv(65536)
            conn.close()
    server = gevent.spawn(hang_up)
    try:
        seed = "127.0.0.1:%d" % listener.getsockname()[1]
        joiner = agents("joiner", KEY)
        joiner.join_in_background([seed])
        wait_until(lambda: joiner.stats.get("push_pull_failures", 0) >= 3, timeout=5, what="three failed joins")
        assert lines(caplog, "joiner") == [f"gossip join via {seed} failed: the seed closed the connection without "
                                           f"answering (another version or another cluster key?)"]
    finally:
        server.kill()
        listener.close()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 2 ** 64 - 1), st.integers(0, 2 ** 64 - 1))
def test_random_sealed_packets_never_crash_a_keyed_node(body, counter, stamp):
    node = make("me")
    packet = codec.HEADER.pack(codec.MAGIC, codec.VERSION, codec.FLAG_ENCRYPTED, bytes(16), counter, stamp) + body
    node.handle_packet(0.0, "127.0.0.9:1", packet)
    node.handle_push_pull(0.0, "127.0.0.9:2", packet)
    node.handle_push_pull_reply(0.0, "127.0.0.9:3", packet)
    assert node.member("me")["status"] == "alive" and node.stats["dropped"] == 3


# ---------------------------------------------------------------- real node processes

@pytest.mark.slow
def test_nodes_gossip_under_the_cluster_key_and_a_wrong_key_is_named_on_both_sides(tmp_path):
    from axon.testing.cluster import Cluster

    files = {}
    for name, secret in (("good", "a-shared-secret-of-enough-bytes"), ("bad", "another-secret-that-does-not-match")):
        files[name] = tmp_path / f"{name}.key"
        files[name].write_text(secret + "\n")
        files[name].chmod(0o600)
    good = ["--cluster-key-file", str(files["good"])]
    cluster = Cluster(tmp_path, n=0, extra_args=good)
    try:
        first = cluster.new_node()
        first.start(bootstrap=True)
        first.wait_serving()
        # the old flag beside the cluster key: ignored, with one line; gossip still keyed by the cluster key
        legacy = tmp_path / "legacy.key"
        legacy.write_text(bytes(range(32)).hex() + "\n")   # the old flag still wants 16, 24 or 32 bytes
        legacy.chmod(0o600)
        second = cluster.new_node(extra_args=good + ["--gossip-key-file", str(legacy)])
        second.start(extra_args=["--seed", first.gossip])
        cluster.wait_for(lambda: {m["node_id"]: m["status"] for m in first.client.members()}
                         == {first.node_id: "alive", second.node_id: "alive"},
                         timeout=30, message="two members gossiping under the cluster key")
        assert second.log_text().count("--gossip-key-file is ignored") == 1
        intruder = cluster.new_node("intruder", extra_args=["--cluster-key-file", str(files["bad"])])
        intruder.start(extra_args=["--seed", first.gossip])

        def warned(node, text: str) -> list[str]:
            return [line for line in node.log_text().splitlines() if text in line]
        cluster.wait_for(lambda: warned(first, "is it using another cluster key?")
                         and warned(intruder, f"gossip join via {first.gossip} failed"),
                         timeout=20, message="both sides name the key")
        assert warned(intruder, "the seed did not accept our packets (different cluster key?)")
        assert "intruder" not in {m["node_id"] for m in first.client.members()}
        for node in (first, intruder):
            assert "a-shared-secret" not in node.log_text() and "another-secret" not in node.log_text()
    finally:
        cluster.close()

"""Gossip carries the cluster id: a member of another cluster is refused, with one line on each side.

Pure tests drive the protocol with explicit clocks; two clusters of agents on real sockets
seeded into each other are in test_gossip_trust.
"""
from __future__ import annotations

import random

import pytest

from axon.gossip import codec
from axon.gossip.config import GossipConfig
from axon.gossip.errors import GossipError
from axon.gossip.protocol import Gossip, Notice, SendPacket

X, Y = "a1" * 16, "b2" * 16          # two cluster ids, as ClusterId makes them (32 hex digits)
PEER = "127.0.0.2:7946"


def make(name: str, cluster: str | None, port: int = 7946, key: bytes | None = None) -> Gossip:
    return Gossip(GossipConfig(), name, f"127.0.0.{len(name)}:{port}", {"node_id": name}, random.Random(1),
                  key=key, cluster_id=cluster)


def notices(outputs) -> list[str]:
    return [o.message for o in outputs if isinstance(o, Notice)]


def line(peer: str, theirs: str, ours: str) -> str:
    return f"gossip peer {peer} belongs to cluster {theirs}, this node to cluster {ours}; refusing"


def packet(*msgs: codec.Message) -> bytes:
    """An unkeyed packet holding ``msgs`` as they are (a CLUSTER opener only if given)."""
    return codec.Sender(None).seal([codec.encode_message(m) for m in msgs], 0.0)


def alive(name: str = "peer") -> codec.Alive:
    return codec.Alive(1, name, PEER, {"node_id": name})


# ---------------------------------------------------------------- push-pull, the handshake

def test_a_join_across_clusters_is_refused_with_one_line_on_each_side():
    joiner, seed = make("joiner", X), make("seed", Y)
    seed_said, joiner_said = [], []
    for attempt in range(5):                      # join_in_background retries
        now = attempt * 2.0
        reply, outs = seed.handle_push_pull(now, "127.0.0.6:40000", joiner.join_request(now))
        seed_said += notices(outs)
        assert codec.refusal_reason(reply) == codec.REFUSED_CLUSTER and codec.refused_by_cluster(reply) == Y
        ok, outs = joiner.handle_push_pull_reply(now, seed.addr, reply, join=True)
        joiner_said += notices(outs)
        assert not ok
    # the seed names the joiner by its gossip address (from its frame), not the stream's port
    assert seed_said == [line(joiner.addr, X, Y)] and joiner_said == [line(seed.addr, Y, X)]
    assert seed.member("joiner") is None and joiner.member("seed") is None
    assert seed.stats["dropped_cluster"] == 5 and joiner.stats["dropped_refused"] == 5
    assert seed.stats["push_pull_served"] == 0 and seed.stats["auth_failures"] == 0
    reply, outs = seed.handle_push_pull(31.0, "127.0.0.6:40000", joiner.join_request(31.0))
    assert notices(outs) == [line(joiner.addr, X, Y)]            # one more line per 30 s
    assert notices(joiner.handle_push_pull_reply(31.0, seed.addr, reply)[1]) == [line(seed.addr, Y, X)]


@pytest.mark.parametrize("joiner_id, seed_id", [(X, X), (None, Y), (X, None), (None, None)],
                         ids=["same", "joiner-unknown", "seed-unknown", "both-unknown"])
def test_a_join_is_accepted_unless_both_ids_are_known_and_differ(joiner_id, seed_id):
    joiner, seed = make("joiner", joiner_id), make("seed", seed_id)
    reply, outs = seed.handle_push_pull(0.0, "127.0.0.6:40000", joiner.join_request(0.0))
    assert codec.refusal_reason(reply) is None and not notices(outs)
    ok, outs = joiner.handle_push_pull_reply(0.0, seed.addr, reply, join=True)
    assert ok and not notices(outs)
    assert seed.member("joiner")["status"] == joiner.member("seed")["status"] == "alive"


def test_a_push_pull_answer_of_another_cluster_is_not_merged():
    me, other = make("me", X), make("other", Y)
    answer = other.join_request(0.0)                # any push-pull frame of the other cluster
    ok, outs = me.handle_push_pull_reply(0.0, other.addr, answer)
    assert not ok and notices(outs) == [line(other.addr, Y, X)]
    assert me.member("other") is None and me.stats["dropped_cluster"] == 1


def test_a_joiner_learns_its_id_late_and_is_refused_from_then_on():
    joiner, seed = make("joiner", None), make("seed", Y)
    assert joiner.cluster_id is None
    joiner.set_cluster_id(X)
    reply, _ = seed.handle_push_pull(0.0, "127.0.0.6:40000", joiner.join_request(0.0))
    assert codec.refused_by_cluster(reply) == Y


# ---------------------------------------------------------------- UDP packets

def sent_messages(node: Gossip, now: float) -> list[list[codec.Message]]:
    """The messages of every packet ``node`` sends to PEER when its timers run at ``now``."""
    node.handle_packet(now, PEER, packet(alive()))           # something to gossip about, someone to probe
    outs = node.tick(now + 1.0)
    return [codec.open_packet(o.data, None, 1400)[1] for o in outs if isinstance(o, SendPacket)]


def test_packets_open_with_the_cluster_id_once_it_is_known():
    node = make("me", None)
    before = sent_messages(node, 0.0)
    assert before and not any(isinstance(m, codec.Cluster) for msgs in before for m in msgs)
    node.set_cluster_id(X)                     # the joiner learnt its cluster's id
    after = sent_messages(node, 10.0)
    assert after and all(msgs[0] == codec.Cluster(X) for msgs in after)
    assert not any(isinstance(m, codec.Cluster) for msgs in after for m in msgs[1:])


def test_updates_from_a_member_of_another_cluster_are_dropped_and_counted():
    node = make("me", X)
    outs = node.handle_packet(0.0, PEER, packet(codec.Cluster(Y), codec.Ping(1, "me"), alive()))
    assert node.member("peer") is None and not [o for o in outs if isinstance(o, SendPacket)]   # no ack either
    assert notices(outs) == [line(PEER, Y, X)]
    assert node.stats["dropped_cluster"] == 1
    assert node.handle_packet(1.0, PEER, packet(codec.Cluster(Y), alive())) == []   # one line per 30 s
    assert node.stats["dropped_cluster"] == 2 and node.member("peer") is None


@pytest.mark.parametrize("theirs, ours", [(X, X), (None, X), (Y, None)], ids=["same", "sender-unknown", "ours-unknown"])
def test_updates_are_merged_unless_both_ids_are_known_and_differ(theirs, ours):
    node = make("me", ours)
    opener = [codec.Cluster(theirs)] if theirs else []
    outs = node.handle_packet(0.0, PEER, packet(*opener, codec.Ping(1, "me"), alive()))
    assert node.member("peer")["status"] == "alive" and not notices(outs)
    assert any(isinstance(o, SendPacket) and o.addr == PEER for o in outs)          # the ping was acked
    assert node.stats["dropped"] == 0


def test_packets_with_a_cluster_id_fit_the_packet_budget():
    node = make("me", X)
    crowd = tuple(codec.MemberRecord(f"member-{i:03d}", f"10.0.{i // 250}.{i % 250 + 1}:7946",
                                     {"node_id": f"member-{i:03d}", "pad": "x" * 40}, 1, "alive")
                  for i in range(80))
    node.handle_push_pull(0.0, PEER, codec.Sender(None).seal(
        [codec.encode_message(codec.PushPull(False, "member-000", crowd, X))], 0.0))
    sizes = []
    for step in range(1, 40):
        sizes += [len(o.data) for o in node.tick(step * 0.5) if isinstance(o, SendPacket)]
    assert max(sizes) <= node.config.packet_size and max(sizes) > 1000


# ---------------------------------------------------------------- malformed ids

BAD_IDS = ["", "x" * 129, "line\nbreak", "\x1b[31mred", 7, ["a"], b"bytes"]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_a_packet_with_a_malformed_cluster_id_is_dropped_and_counted(bad):
    node = make("me", X)
    raw = codec.HEADER.pack(codec.MAGIC, codec.VERSION, 0, bytes(16), 0, 0) + codec.msgpack.packb(
        [[codec.MsgKind.CLUSTER, bad], [codec.MsgKind.ALIVE, 1, "peer", PEER, {}]], use_bin_type=True)
    assert notices(node.handle_packet(0.0, PEER, raw)) == []
    assert node.stats["dropped_malformed"] == 1 and node.member("peer") is None


def test_a_cluster_opener_without_an_id_is_malformed():
    node = make("me", X)
    raw = codec.HEADER.pack(codec.MAGIC, codec.VERSION, 0, bytes(16), 0, 0) + codec.msgpack.packb(
        [[codec.MsgKind.CLUSTER, None]])
    node.handle_packet(0.0, PEER, raw)
    assert node.stats["dropped_malformed"] == 1


@pytest.mark.parametrize("bad", BAD_IDS)
def test_a_push_pull_with_a_malformed_cluster_id_gets_no_answer(bad):
    node = make("me", X)
    record = ["peer", PEER, {}, 1, codec.STATUS_CODES["alive"]]
    raw = codec.HEADER.pack(codec.MAGIC, codec.VERSION, 0, bytes(16), 0, 0) + codec.msgpack.packb(
        [[codec.MsgKind.PUSH_PULL, True, "peer", [record], bad]], use_bin_type=True)
    reply, outs = node.handle_push_pull(0.0, "127.0.0.6:40000", raw)
    assert reply is None and node.stats["dropped_malformed"] == 1 and node.member("peer") is None
    ok, _ = node.handle_push_pull_reply(0.0, PEER, raw)
    assert not ok and node.stats["dropped_malformed"] == 2


@pytest.mark.parametrize("tail", [b"", b"x" * 129, b"bad\nid", b"\xff\xfe", b"\x00"])
def test_a_cluster_refusal_naming_garbage_is_a_bad_answer_not_a_crash(tail):
    node = make("me", X)
    garbage = codec.refusal(codec.REFUSED_CLUSTER) + tail
    assert codec.refusal_reason(garbage) is None and codec.refused_by_cluster(garbage) is None
    ok, outs = node.handle_push_pull_reply(0.0, PEER, garbage)
    assert not ok and node.stats["dropped_malformed"] == 1
    assert all("belongs to cluster" not in text for text in notices(outs))


@pytest.mark.parametrize("bad", ["", "x" * 129, "tab\there", 3])
def test_an_invalid_own_cluster_id_is_refused_at_once(bad):
    with pytest.raises(GossipError):
        make("me", bad)
    node = make("me", X)
    with pytest.raises(GossipError):
        node.set_cluster_id(bad)
    assert node.cluster_id == X


def test_an_old_peer_without_cluster_ids_is_another_version():
    node = make("me", X)
    old = bytes([codec.MAGIC, 2, 0]) + packet(alive())[3:]
    node.handle_packet(0.0, PEER, old)
    assert node.stats["dropped_version"] == 1 and node.member("peer") is None

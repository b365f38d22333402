"""GossipAgent on real sockets (127.0.0.1, port 0) with a fast configuration."""
from __future__ import annotations

import time

import gevent
import pytest
from gevent import socket

from axon.gossip import GossipConfig, GossipError
from axon.gossip.agent import GossipAgent

FAST = GossipConfig(probe_interval=0.2, probe_timeout=0.1, gossip_interval=0.05, suspicion_mult=4,
                    push_pull_interval=2.0, reconnect_interval=1.0, stream_timeout=1.0,
                    gossip_to_the_dead_time=3.0, join_backoff_max=0.5)
KEY = b"k" * 32


def wait_for(predicate, timeout: float, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        gevent.sleep(interval)
    return predicate()


def meta_for(name: str) -> dict:
    return {"node_id": name, "http": "127.0.0.1:8000", "raft": "127.0.0.1:9000", "role": "voter"}


@pytest.fixture
def make_agent():
    agents = []

    def make(name: str, bind: str = "127.0.0.1:0", key: bytes | None = None, start: bool = True) -> GossipAgent:
        agent = GossipAgent(FAST, name, bind, meta_for(name), key=key)
        agents.append(agent)
        if start:
            agent.start()
        return agent
    yield make
    for agent in agents:
        agent.stop()


def statuses(agent: GossipAgent) -> dict[str, str]:
    return {m["node_id"]: m["status"] for m in agent.members()}


def all_see(agents, target: str, status: str) -> bool:
    return all(statuses(a).get(target) == status for a in agents if a.name != target)


def start_cluster(make_agent, n: int, key: bytes | None = None) -> list[GossipAgent]:
    agents = [make_agent(f"a{i}", key=key) for i in range(n)]
    for agent in agents[1:]:
        assert agent.join([agents[0].address]) == 1
    names = {a.name for a in agents}
    assert wait_for(lambda: all(statuses(a) == {n: "alive" for n in names} for a in agents), timeout=5)
    return agents


def test_agents_join_through_a_seed_and_see_each_other(make_agent):
    agents = start_cluster(make_agent, 5)
    port = int(agents[0].address.rsplit(":", 1)[1])
    assert port > 0 and agents[0].address.startswith("127.0.0.1:")
    view = {m["node_id"]: m for m in agents[3].members()}
    assert view["a1"] == {"node_id": "a1", "status": "alive", "gossip": agents[1].address, "incarnation": 0,
                          "meta": meta_for("a1")}


def test_stopped_agent_is_dead_everywhere_then_alive_again_after_restart(make_agent):
    agents = start_cluster(make_agent, 4)
    victim = agents[2]
    address = victim.address
    victim.stop()
    survivors = [a for a in agents if a is not victim]
    assert wait_for(lambda: all_see(survivors, "a2", "dead"), timeout=10)
    old_incarnation = {m["node_id"]: m for m in survivors[0].members()}["a2"]["incarnation"]
    reborn = make_agent("a2", bind=address)
    assert reborn.address == address
    assert reborn.join([agents[0].address]) == 1
    assert wait_for(lambda: all_see(survivors, "a2", "alive") and statuses(reborn) == statuses(agents[0]),
                    timeout=10)
    assert {m["node_id"]: m for m in agents[0].members()}["a2"]["incarnation"] > old_incarnation


def test_leave_shows_left(make_agent):
    agents = start_cluster(make_agent, 4)
    assert agents[1].leave(timeout=3) is True
    agents[1].stop()
    rest = [a for a in agents if a is not agents[1]]
    assert wait_for(lambda: all_see(rest, "a1", "left"), timeout=3)
    gevent.sleep(1.0)   # well past a probe + suspicion round: still "left", never "dead"
    assert all_see(rest, "a1", "left")


def test_metadata_updates_propagate_and_fire_callbacks(make_agent):
    agents = start_cluster(make_agent, 3)
    seen = []
    agents[0].on_change(lambda kind, member: seen.append((kind, member["node_id"], member["meta"].get("role"))))
    agents[2].update_meta({**meta_for("a2"), "role": "learner"})
    assert wait_for(lambda: all({m["node_id"]: m for m in a.members()}["a2"]["meta"]["role"] == "learner"
                                for a in agents), timeout=3)
    assert ("update", "a2", "learner") in seen
    with pytest.raises(GossipError):
        agents[2].update_meta({"too": "x" * 1000})


def test_join_in_background_retries_until_the_seed_appears(make_agent):
    placeholder = make_agent("seed")
    seed_address = placeholder.address
    placeholder.stop()
    joiner = make_agent("joiner")
    job = joiner.join_in_background([seed_address])
    gevent.sleep(0.8)
    assert not job.ready()
    assert joiner.stats["push_pull_failures"] >= 2
    seed = make_agent("seed", bind=seed_address)
    assert wait_for(job.ready, timeout=5) and job.value is True
    assert wait_for(lambda: statuses(seed) == {"seed": "alive", "joiner": "alive"}, timeout=3)


def test_garbage_datagrams_are_counted_not_fatal(make_agent):
    agents = start_cluster(make_agent, 2)
    host, port = agents[0].address.rsplit(":", 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for payload in (b"", b"hello", b"\xa7\x09\x00junk", b"\xa7\x03\x00\xc1", b"\xa7\x03\x00" + b"x" * 3000):
            sock.sendto(payload, (host, int(port)))
    assert wait_for(lambda: agents[0].stats.get("dropped", 0) >= 4, timeout=2)
    stats = agents[0].stats
    assert stats["dropped_foreign"] == 1 and stats["dropped_version"] == 1 and stats["dropped_oversized"] == 1
    # a stream that sends garbage is dropped too, and the agent keeps working
    with socket.create_connection((host, int(port)), timeout=1) as conn:
        conn.sendall(b"\x00\x00\x00\x05hello")
        assert conn.recv(10) == b""
    assert agents[0].stats["dropped_foreign"] == 2
    assert wait_for(lambda: all_see(agents, "a0", "alive"), timeout=1)


def test_encrypted_cluster_rejects_other_keys(make_agent):
    agents = start_cluster(make_agent, 3, key=KEY)
    stranger = make_agent("stranger", key=b"s" * 16)
    assert stranger.join([agents[0].address]) == 0
    plain = make_agent("plain")
    assert plain.join([agents[0].address]) == 0
    stats = agents[0].stats
    assert stats["dropped_decrypt"] >= 1 and stats["dropped_unencrypted"] >= 1
    assert all(set(statuses(a)) == {"a0", "a1", "a2"} for a in agents)


def test_agent_misuse_raises_gossip_error():
    agent = GossipAgent(FAST, "x", "127.0.0.1:0", {})
    with pytest.raises(GossipError):
        agent.members()
    with pytest.raises(GossipError):
        GossipAgent(FAST, "x", "no-port", {})
    with pytest.raises(GossipError):
        GossipAgent(FAST, "x", "127.0.0.1:0", {}, key=b"123")

"""FakeClock and SimNetwork: ordering, cancellation, delays, loss, duplication, partitions, determinism."""
import random

import pytest

from axon.testing.clock import FakeClock
from axon.testing.simnet import SimNetwork


def test_clock_runs_callbacks_in_time_then_scheduling_order():
    clock = FakeClock()
    seen = []
    clock.call_at(2.0, lambda: seen.append(("b", clock.now)))
    clock.call_at(1.0, lambda: seen.append(("a", clock.now)))
    clock.call_at(2.0, lambda: seen.append(("c", clock.now)))
    clock.advance(1.5)
    assert seen == [("a", 1.0)] and clock.now == 1.5
    clock.advance(0.5)
    assert seen == [("a", 1.0), ("b", 2.0), ("c", 2.0)] and clock.now == 2.0


def test_clock_cancel_and_nested_scheduling():
    clock = FakeClock()
    seen = []
    handle = clock.call_later(1.0, lambda: seen.append("cancelled"))
    handle.cancel()
    clock.call_later(0.5, lambda: clock.call_later(0.25, lambda: seen.append(clock.now)))
    clock.advance(1.0)
    assert seen == [0.75]
    assert clock.now == 1.0
    assert clock.pending() == 0


def test_clock_past_times_run_at_next_advance_without_going_back():
    clock = FakeClock()
    clock.advance(5.0)
    seen = []
    clock.call_at(1.0, lambda: seen.append(clock.now))
    clock.advance(0.0)
    assert seen == [5.0]


def test_run_until_true_and_timeout():
    clock = FakeClock()
    flag = []
    clock.call_later(0.3, lambda: flag.append(1))
    assert clock.run_until(lambda: bool(flag), timeout=1.0, step=0.01)
    assert 0.3 <= clock.now < 0.32
    start = clock.now
    assert not clock.run_until(lambda: False, timeout=0.5, step=0.1)
    assert clock.now == pytest.approx(start + 0.5)


def _net(seed=1, **kw):
    clock = FakeClock()
    net = SimNetwork(clock, random.Random(seed), **kw)
    inbox = {"a": [], "b": [], "c": []}
    for addr in inbox:
        net.register(addr, lambda src, payload, addr=addr: inbox[addr].append((clock.now, src, payload)))
    return clock, net, inbox


def test_delivery_delay_bounds_and_reordering():
    clock, net, inbox = _net(min_delay=0.001, max_delay=0.01)
    for i in range(200):
        net.send("a", "b", i)
    clock.advance(0.0009)
    assert inbox["b"] == []
    clock.advance(0.01)
    payloads = [p for _, _, p in inbox["b"]]
    assert sorted(payloads) == list(range(200))
    assert payloads != list(range(200)), "random delays should reorder"
    assert all(src == "a" for _, src, _ in inbox["b"])
    assert net.stats["delivered"] == 200 and net.stats["sent"] == 200


def test_loss_and_duplication_are_counted():
    clock, net, inbox = _net(loss=0.3, duplicate=0.2)
    for i in range(1000):
        net.send("a", "b", i)
    clock.advance(1.0)
    lost, dup = net.stats["lost"], net.stats["duplicated"]
    assert 200 < lost < 400
    assert 80 < dup < 250
    assert len(inbox["b"]) == 1000 - lost + dup == net.stats["delivered"]


def test_partition_at_send_and_at_delivery_time_and_heal():
    clock, net, inbox = _net()
    net.partition(["a"], ["b"])
    net.send("a", "b", "blocked")
    net.send("a", "c", "c-is-in-no-group")
    clock.advance(0.1)
    assert inbox["b"] == [] and len(inbox["c"]) == 1
    net.heal()
    net.send("a", "b", "in-flight")
    net.partition(["a"], ["b"])       # cut while the packet is in flight
    clock.advance(0.1)
    assert inbox["b"] == []
    assert net.stats["partitioned"] == 2
    net.heal()
    net.send("a", "b", "ok")
    clock.advance(0.1)
    assert [p for _, _, p in inbox["b"]] == ["ok"]


def test_unregistered_destination_drops_in_flight_packets():
    clock, net, inbox = _net()
    net.send("a", "b", "x")
    net.unregister("b")
    clock.advance(0.1)
    assert inbox["b"] == [] and net.stats["lost"] == 1


def test_node_delay_applies_to_incoming_and_outgoing():
    clock, net, inbox = _net(min_delay=0.001, max_delay=0.001)
    net.set_node_delay("b", 0.5)
    net.send("a", "b", "in")
    net.send("b", "c", "out")
    net.send("a", "c", "fast")
    clock.advance(0.1)
    assert [p for _, _, p in inbox["c"]] == ["fast"]
    clock.advance(0.5)
    assert inbox["b"][0][0] == pytest.approx(0.501)
    assert inbox["c"][1][0] == pytest.approx(0.501)


def test_same_seed_same_trace():
    def trace(seed):
        clock, net, inbox = _net(seed, loss=0.2, duplicate=0.1)
        for i in range(300):
            net.send("abc"[i % 3], "abc"[(i + 1) % 3], i)
        clock.advance(1.0)
        return inbox, dict(net.stats)
    assert trace(7) == trace(7)
    assert trace(7) != trace(8)


def test_bad_parameters_rejected():
    with pytest.raises(ValueError):
        SimNetwork(FakeClock(), random.Random(1), loss=1.5)
    with pytest.raises(ValueError):
        SimNetwork(FakeClock(), random.Random(1), min_delay=0.2, max_delay=0.1)

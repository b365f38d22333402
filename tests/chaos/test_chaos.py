"""Fault injection against real 3-node clusters: every nemesis for a minute, histories checked.

Set AXON_CHAOS_DURATION (seconds per nemesis) or AXON_CHAOS_SEED to vary a run;
for long soaks use ``python -m axon.testing.chaos --nemesis all --duration 600``.
"""
from __future__ import annotations

import os
import subprocess
import sys
import zlib

import pytest

from axon.testing.chaos import (NEMESES, ChaosConfig, ChaosContext, ChaosRun, KillNemesis, Nemesis,
                                netns_skip_reason, run_chaos)
from axon.testing.cluster import REPO_ROOT
from axon.testing.netns import PREFIX, NetnsNetwork, cleanup_stale, list_namespaces, unavailable_reason

DURATION = float(os.environ.get("AXON_CHAOS_DURATION", "60"))
MIN_FAULTS = 5


def seed_for(nemesis: str) -> int:
    return int(os.environ.get("AXON_CHAOS_SEED", zlib.crc32(nemesis.encode()) % 10000))


@pytest.mark.slow
@pytest.mark.chaos
@pytest.mark.timeout(DURATION * 3 + 300)
@pytest.mark.parametrize("nemesis", list(NEMESES))
def test_nemesis_keeps_history_linearizable_and_acknowledged_writes_durable(nemesis: str, tmp_path) -> None:
    reason = netns_skip_reason(nemesis)
    if reason:
        pytest.skip(reason)
    seed = seed_for(nemesis)
    report = run_chaos(ChaosConfig(nemesis, duration=DURATION, nodes=3, seed=seed, out_dir=str(tmp_path)))
    print(f"seed {seed}\n{report.summary()}")
    assert report.ok, f"seed {seed}\n{report.summary()}"
    assert len(report.faults) >= MIN_FAULTS, report.summary()
    assert all(fault.healed is not None for fault in report.faults)
    assert report.op_counts.get("ok", 0) >= 300, report.summary()
    assert report.watch_events >= 100, report.summary()   # the watch check had changes to check
    assert (tmp_path / "history.jsonl").stat().st_size > 0
    assert not [ns for ns in list_namespaces() if f"{PREFIX}{os.getpid()}x" in ns]


class _FailingSecondTime(Nemesis):
    """Kills a node, then fails while injecting the second fault (a broken nemesis or harness)."""

    name = "failing"
    hold = (1.0, 1.5)

    def __init__(self) -> None:
        self.kill = KillNemesis("kill-one", lambda ctx: [ctx.members[-1]])
        self.calls = 0

    def inject(self, ctx: ChaosContext) -> str:
        self.calls += 1
        if self.calls == 2:
            ctx.members[0].pause()
            raise RuntimeError("injected failure")
        return self.kill.inject(ctx)

    def heal(self, ctx: ChaosContext) -> None:
        self.kill.heal(ctx)


@pytest.mark.slow
@pytest.mark.chaos
def test_a_failing_run_heals_stops_everything_and_keeps_history_and_logs(tmp_path) -> None:
    run = ChaosRun(ChaosConfig("failing", duration=20, nodes=3, out_dir=str(tmp_path), quiet=(0.5, 0.5)),
                   nemesis=_FailingSecondTime())
    with pytest.raises(RuntimeError, match="injected failure"):
        run.run()
    assert (tmp_path / "history.jsonl").stat().st_size > 0
    assert (tmp_path / "faults.jsonl").read_text().count("\n") == 2
    for node_id in ("n1", "n2", "n3"):
        assert (tmp_path / "nodes" / f"{node_id}.log").stat().st_size > 0
    assert not _axon_serve_processes_under(tmp_path)


def _axon_serve_processes_under(path) -> list[str]:
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "axon serve" in line.replace("-m axon serve", "axon serve")
            and str(path) in line]


@pytest.mark.slow
@pytest.mark.chaos
def test_unknown_nemesis_is_a_clear_error_from_the_cli() -> None:
    proc = subprocess.run([sys.executable, "-m", "axon.testing.chaos", "--nemesis", "meteor", "--duration", "10"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "meteor" in proc.stderr and "Traceback" not in proc.stderr


# ---------------------------------------------------------------------- the namespace network itself

needs_netns = pytest.mark.skipif(bool(unavailable_reason()), reason=str(unavailable_reason()))


def _connects(net: NetnsNetwork, source: str | None, target: str, port: int) -> bool:
    """Whether a TCP connect from ``source``'s namespace (None: the driver) to ``target`` succeeds in 1 s."""
    code = (f"import socket\ntry:\n socket.create_connection(('{net.addresses[target]}', {port}), timeout=1)\n"
            f" print('yes')\nexcept OSError:\n print('no')\n")
    prefix = [] if source is None else ["ip", "netns", "exec", net.namespace(source)]
    out = subprocess.run(prefix + [sys.executable, "-c", code], capture_output=True, text=True, timeout=20)
    return out.stdout.strip() == "yes"


@needs_netns
def test_netns_partition_blocks_exactly_the_cut_pairs_and_close_removes_everything() -> None:
    net = NetnsNetwork(["a", "b", "c"])
    servers = []
    try:
        for node_id in ("a", "b", "c"):
            code = (f"import socket,time\ns=socket.socket()\ns.bind(('{net.addresses[node_id]}', 7000))\n"
                    f"s.listen(16)\nwhile True:\n c,_=s.accept()\n c.close()\n")
            servers.append(subprocess.Popen(["ip", "netns", "exec", net.namespace(node_id), sys.executable,
                                             "-c", code]))
        assert _wait_connects(net, None, "a") and _wait_connects(net, None, "c")
        assert _connects(net, "a", "b", 7000) and _connects(net, "c", "a", 7000)
        net.partition([{"a", "b"}, {"b", "c"}])   # a bridge through b
        assert _connects(net, "a", "b", 7000) and _connects(net, "c", "b", 7000)
        assert not _connects(net, "a", "c", 7000) and not _connects(net, "c", "a", 7000)
        assert _connects(net, None, "a", 7000) and _connects(net, None, "c", 7000)   # the driver always
        net.heal()
        assert _connects(net, "a", "c", 7000)
    finally:
        for proc in servers:
            proc.kill()
            proc.wait()
        net.close()
    assert not [ns for ns in list_namespaces() if net.tag in ns]
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    assert net.root_link + "@" not in links and net.root_link + ":" not in links


def _wait_connects(net: NetnsNetwork, source: str | None, target: str) -> bool:
    for _ in range(50):
        if _connects(net, source, target, 7000):
            return True
    return False


@needs_netns
def test_cleanup_stale_removes_namespaces_of_dead_runs_only() -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = f"{PREFIX}{dead.pid}x1-br"
    mine = NetnsNetwork()
    subprocess.run(["ip", "netns", "add", stale], check=True)
    try:
        removed = cleanup_stale()
        assert stale in removed
        assert stale not in list_namespaces()
        assert mine.bridge_ns in list_namespaces()
    finally:
        subprocess.run(["ip", "netns", "delete", stale], capture_output=True)
        mine.close()


def test_unavailable_reason_names_what_is_missing(monkeypatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert "root" in unavailable_reason()
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setenv("PATH", "/nonexistent")
    assert "`ip`" in unavailable_reason()

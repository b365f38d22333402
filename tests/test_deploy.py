"""deploy/: what can be checked without a container runtime or systemd running the node.

The compose file's three command lines run as processes through the image's entrypoint,
each container's host name mapped to a loopback address of its own (the same ports on each,
as in the containers); the systemd unit passes `systemd-analyze verify`; the env file names
only variables the node knows.
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys

import pytest

from axon.client import Client
from axon.client.http import ClientError
from axon.config import node_flags
from axon.testing.cluster import REPO_ROOT, wait_for

DEPLOY = os.path.join(REPO_ROOT, "deploy")
NODES = ("axon1", "axon2", "axon3")


def _compose() -> dict:
    yaml = pytest.importorskip("yaml")
    with open(os.path.join(DEPLOY, "compose.yaml")) as f:
        return yaml.safe_load(f)


def _entrypoint() -> list[str]:
    """The Dockerfile's ENTRYPOINT (exec form)."""
    with open(os.path.join(DEPLOY, "Dockerfile")) as f:
        [line] = [line for line in f if line.startswith("ENTRYPOINT ")]
    return json.loads(line[len("ENTRYPOINT "):])


def _free_loopback_block() -> str:
    """A 127.x.y. prefix whose .1-.3 have the node ports free (the containers' ports, unchanged)."""
    import socket
    for _ in range(20):
        prefix = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}."
        try:
            for n in (1, 2, 3):
                for port in (7000, 7001, 7002):
                    with socket.socket() as probe:
                        probe.bind((prefix + str(n), port))
            return prefix
        except OSError:
            continue
    pytest.skip("no free loopback block for ports 7000-7002")


def test_compose_command_lines_run_as_a_three_node_cluster(tmp_path) -> None:
    compose = _compose()
    entry = _entrypoint()
    assert entry == ["axon"]
    prefix = _free_loopback_block()
    hosts = {name: prefix + str(i) for i, name in enumerate(NODES, start=1)}
    key = tmp_path / "cluster.key"
    made = subprocess.run([sys.executable, "-m", "axon", "keygen", "--out", str(key)], cwd=REPO_ROOT,
                          capture_output=True, text=True)
    assert made.returncode == 0, made.stderr

    def localized(args: list[str], name: str) -> list[str]:
        """Host names (the values of --host and --seed) -> loopback addresses; paths -> tmp_path."""
        out = []
        for flag, arg in zip([""] + args, args):
            if flag in ("--host", "--seed", "--join"):
                host, sep, port = arg.partition(":")
                arg = hosts[host] + sep + port
            out.append(arg.replace("/etc/axon/cluster.key", str(key))
                       .replace("/var/lib/axon", str(tmp_path / name)))
        return out

    env = dict(os.environ, PYTHONPATH=REPO_ROOT)
    procs = []
    try:
        for name in NODES:
            service = compose["services"][name]
            assert service["hostname"] == name and service["image"] == compose["services"]["keygen"]["image"]
            args = localized(service["command"], name)
            (tmp_path / name).mkdir()
            log = open(tmp_path / f"{name}.log", "wb")
            # the entrypoint `axon` as this interpreter runs it
            procs.append(subprocess.Popen([sys.executable, "-m", *entry, *args], cwd=tmp_path / name,
                                          env=env, stdout=log, stderr=log))
        client = Client(f"{hosts['axon1']}:7000", timeout=2, retry_for=0)

        def voters() -> bool:
            for name, proc in zip(NODES, procs):
                assert proc.poll() is None, (tmp_path / f"{name}.log").read_text()[-3000:]
            try:
                return sorted(client.status()["voters"]) == list(NODES)
            except ClientError:
                return False
        wait_for(voters, 60, message="the compose nodes to form one cluster")
        client.put("deploy", "ok")
        other = Client(f"{hosts['axon3']}:7000", timeout=2, retry_for=0)
        assert other.get("deploy")["value"] == "ok"
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert all(proc.returncode == 0 for proc in procs), [proc.returncode for proc in procs]


def test_compose_publishes_each_node_and_keeps_its_data_in_a_volume() -> None:
    compose = _compose()
    published = set()
    for name in NODES:
        service = compose["services"][name]
        assert f"{name}-data:/var/lib/axon" in service["volumes"]
        assert "cluster-key:/etc/axon:ro" in service["volumes"]
        published.update(p.rsplit(":", 1)[0] for p in service["ports"])
        assert service["depends_on"]["keygen"]["condition"] == "service_completed_successfully"
    assert len(published) == 3


def test_unit_file_passes_systemd_analyze_verify(tmp_path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here")
    with open(os.path.join(DEPLOY, "axon.service")) as f:
        unit = f.read()
    # verify checks that the binary exists: point ExecStart at this checkout's `axon`
    axon = shutil.which("axon") or os.path.join(os.path.dirname(sys.executable), "axon")
    if not os.access(axon, os.X_OK):
        pytest.skip("no `axon` script installed to put in ExecStart")
    assert "ExecStart=/usr/local/bin/axon serve\n" in unit
    path = tmp_path / "axon.service"
    path.write_text(unit.replace("ExecStart=/usr/local/bin/axon", f"ExecStart={axon}"))
    done = subprocess.run([analyze, "verify", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "axon.service" not in done.stderr, done.stderr


def test_env_file_sets_only_variables_the_node_knows() -> None:
    known = {flag.envvar for _, flag in node_flags()}
    with open(os.path.join(DEPLOY, "axon.env")) as f:
        names = [m.group(1) for line in f if (m := re.match(r"#?\s*(AXON_[A-Z_]+)=", line))]
    assert names and set(names) <= known, set(names) - known
    with open(os.path.join(DEPLOY, "axon.service")) as f:
        assert "EnvironmentFile=/etc/axon/axon.env" in f.read()

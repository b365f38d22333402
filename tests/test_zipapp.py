"""dist/axon.pyz: the extract-once bootstrap, reproducible builds, and the archive run bare."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from axon import zipapp_boot
from axon.client import Client
from axon.testing.cluster import free_ports, wait_for

ROOT = Path(__file__).resolve().parent.parent
PYTHON = "%d.%d" % sys.version_info[:2]
# The interpreter without this virtualenv; with -I -S it sees no site-packages at all, so
# everything Axon needs must come from the archive.
BARE_PYTHON = getattr(sys, "_base_executable", None) or sys.executable


def load_builder():
    spec = importlib.util.spec_from_file_location("build_zipapp", ROOT / "build_zipapp.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


builder = load_builder()


def fake_archive(path: Path, python: str = PYTHON, build_id: str = "0123456789abcdef") -> Path:
    """A small archive in the real layout, with one pure-Python package as its payload."""
    info = {"version": "9.9", "build_id": build_id, "python": python, "platform": "test"}
    entries = [("__main__.py", (ROOT / "axon" / "zipapp_boot.py").read_bytes(), 0o644),
               (zipapp_boot.BUILD_INFO, json.dumps(info).encode(), 0o644),
               ("site-packages/hello/__init__.py", b"GREETING = 'hi'\n", 0o644),
               ("site-packages/hello/tool.sh", b"#!/bin/sh\necho hi\n", 0o755)]
    builder.write_archive(str(path), entries)
    return path


# ---------------------------------------------------------------------- archive writing
def test_archive_bytes_depend_only_on_entries(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    entries = [("b.txt", b"bee", 0o644), ("a/x.py", b"x = 1\n", 0o755), ("a/y.py", b"", 0o644)]
    one = tmp_path / "one.pyz"
    two = tmp_path / "two.pyz"
    builder.write_archive(str(one), entries)
    os.utime(tmp_path, (1, 1))
    builder.write_archive(str(two), list(reversed(entries)))
    assert one.read_bytes() == two.read_bytes()
    assert one.read_bytes().startswith(b"#!/usr/bin/env python3\n")
    with zipfile.ZipFile(one) as z:
        assert z.namelist() == ["a/x.py", "a/y.py", "b.txt"]
        assert (z.getinfo("a/x.py").external_attr >> 16) & 0o777 == 0o755
        assert z.getinfo("b.txt").date_time == (1980, 1, 1, 0, 0, 0)


def test_requirements_come_from_setup_cfg() -> None:
    reqs = builder.requirements(str(ROOT / "setup.cfg"))
    names = {r.split(">")[0].split("<")[0].split("=")[0].strip() for r in reqs}
    assert {"gevent", "bottle", "plyvel", "click", "msgpack", "cryptography"} <= names


# ---------------------------------------------------------------------- extraction
def test_extracts_once_into_a_per_build_dir(tmp_path) -> None:
    archive = fake_archive(tmp_path / "a.pyz")
    root = tmp_path / "cache"
    site_dir = zipapp_boot.ensure_extracted(str(archive), str(root))
    assert site_dir == str(root / "9.9-0123456789abcdef")
    assert (Path(site_dir) / "hello" / "__init__.py").read_text() == "GREETING = 'hi'\n"
    assert os.stat(Path(site_dir) / "hello" / "tool.sh").st_mode & 0o111
    marker = Path(site_dir) / "marker"
    marker.write_text("kept")
    assert zipapp_boot.ensure_extracted(str(archive), str(root)) == site_dir
    assert marker.exists()   # not extracted again
    other = fake_archive(tmp_path / "b.pyz", build_id="fedcba9876543210")
    assert zipapp_boot.ensure_extracted(str(other), str(root)) != site_dir
    assert sorted(os.listdir(root)) == ["9.9-0123456789abcdef", "9.9-fedcba9876543210"]


def test_concurrent_first_starts_share_one_complete_copy(tmp_path) -> None:
    archive = fake_archive(tmp_path / "a.pyz")
    root = tmp_path / "cache"
    env = {**os.environ, "AXON_CACHE_DIR": str(root)}
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import zipapp_boot as b; "
            "d = b.ensure_extracted(sys.argv[2]); b.activate(d); import hello; print(d, hello.GREETING)")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(ROOT / "axon"), str(archive)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(8)]
    results = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), results
    outputs = {out.strip() for out, _ in results}
    assert outputs == {f"{root / '9.9-0123456789abcdef'} hi"}
    assert os.listdir(root) == ["9.9-0123456789abcdef"]   # no temporary dirs left
    extracted = set(os.listdir(root / "9.9-0123456789abcdef" / "hello")) - {"__pycache__"}
    assert extracted == {"__init__.py", "tool.sh"}


def test_unwritable_cache_dir_is_a_one_line_error(tmp_path) -> None:
    archive = fake_archive(tmp_path / "a.pyz")
    (tmp_path / "file").write_text("not a dir")
    bad_root = tmp_path / "file" / "cache"
    with pytest.raises(zipapp_boot.BootError, match="cannot extract to cache dir"):
        zipapp_boot.ensure_extracted(str(archive), str(bad_root))
    proc = subprocess.run([sys.executable, str(archive), "--help"], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "AXON_CACHE_DIR": str(bad_root)})
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: cannot extract to cache dir")
    assert "AXON_CACHE_DIR" in proc.stderr


def test_wrong_python_or_not_an_archive_is_refused(tmp_path) -> None:
    archive = fake_archive(tmp_path / "a.pyz", python="2.7")
    with pytest.raises(zipapp_boot.BootError, match="built for Python 2.7"):
        zipapp_boot.ensure_extracted(str(archive), str(tmp_path / "cache"))
    junk = tmp_path / "junk.pyz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(zipapp_boot.BootError, match="cannot open"):
        zipapp_boot.ensure_extracted(str(junk), str(tmp_path / "cache"))
    empty = tmp_path / "empty.pyz"
    builder.write_archive(str(empty), [("__main__.py", b"", 0o644)])
    with pytest.raises(zipapp_boot.BootError, match="not an Axon archive"):
        zipapp_boot.ensure_extracted(str(empty), str(tmp_path / "cache"))


def test_cache_root_defaults(tmp_path) -> None:
    assert zipapp_boot.cache_root({"AXON_CACHE_DIR": str(tmp_path)}) == str(tmp_path)
    assert zipapp_boot.cache_root({"XDG_CACHE_HOME": str(tmp_path)}) == str(tmp_path / "axon")
    assert zipapp_boot.cache_root({}).endswith(os.path.join(".cache", "axon"))


# ---------------------------------------------------------------------- the real archive
def copy_sources(dest: Path) -> Path:
    """The inputs of a build, copied so concurrent edits of the work tree can't change them."""
    dest.mkdir()
    shutil.copytree(ROOT / "axon", dest / "axon", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("build_zipapp.py", "setup.cfg"):
        shutil.copy2(ROOT / name, dest / name)
    return dest


def build(src: Path, output: Path) -> str:
    proc = subprocess.run([sys.executable, str(src / "build_zipapp.py"), "--output", str(output)],
                          capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert f"({output.stat().st_size} bytes)" in proc.stdout
    return hashlib.sha256(output.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def pyz(tmp_path_factory) -> Path:
    src = copy_sources(tmp_path_factory.mktemp("src") / "axon-src")
    output = tmp_path_factory.mktemp("dist") / "axon.pyz"
    first = build(src, output)
    again = build(src, tmp_path_factory.mktemp("dist2") / "axon.pyz")
    assert first == again, "two builds from the same inputs differ"
    return output


def bare(pyz: Path, *args: str) -> list[str]:
    return [BARE_PYTHON, "-I", "-S", str(pyz), *args]


def free_block() -> int:
    """A port p with p+1 and p+2 free too (a node's http, raft and gossip by default)."""
    for _ in range(50):
        [port] = free_ports(1)
        if port + 2 <= 65535 and all(bindable(p) for p in (port, port + 1, port + 2)):
            return port
    raise AssertionError("no block of three free ports found")


def bindable(port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def bare_env(cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "VIRTUAL_ENV", "AXON_"))}
    env["AXON_CACHE_DIR"] = str(cache)
    return env


@pytest.mark.slow
def test_archive_holds_everything_it_needs(pyz: Path) -> None:
    with zipfile.ZipFile(pyz) as z:
        names = set(z.namelist())
        info = json.loads(z.read("axon-build.json"))
    assert info["python"] == PYTHON
    assert "site-packages/axon/static/index.html" in names
    for module in ("cli/main.py", "cli/node.py", "address.py", "keys.py"):
        assert f"site-packages/axon/{module}" in names, module
    for package in ("gevent", "greenlet", "plyvel", "msgpack", "cryptography", "bottle.py", "click",
                    "prometheus_client"):
        assert any(n.startswith(f"site-packages/{package}") for n in names), package
    assert any(n.endswith(".so") and "plyvel" in n for n in names)
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)


@pytest.mark.slow
def test_bare_interpreter_runs_the_archive(pyz: Path, tmp_path) -> None:
    cache = tmp_path / "cache"
    proc = subprocess.run(bare(pyz, "--help"), capture_output=True, text=True,
                          timeout=120, env=bare_env(cache), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for command in ("serve", "launch", "status", "members", "kv", "keygen"):
        assert f"  {command} " in proc.stdout

    # the design card's form: no command, defaults for everything but the port
    port = free_block()
    http = f"127.0.0.1:{port}"
    log = open(tmp_path / "node.log", "wb")
    node = subprocess.Popen(bare(pyz, "--port", str(port)), stdout=log, stderr=subprocess.STDOUT,
                            env=bare_env(cache), cwd=tmp_path)
    try:
        client = Client(http, timeout=10, retry_for=0)

        def put() -> dict:
            assert node.poll() is None, (tmp_path / "node.log").read_text()
            return client.put("zipped", "works")
        revision = wait_for(put, 60, interval=0.2, message="a PUT on the zipapp node")["revision"]
        assert client.get("zipped") == {"key": "zipped", "value": "works", "revision": revision}
        status = client.status()
        assert status["node_id"] == f"127.0.0.1-{port}" and status["raft"] == f"127.0.0.1:{port + 1}"
        assert (tmp_path / "axon-data" / f"127.0.0.1-{port}" / "node.json").exists()
        node.send_signal(signal.SIGTERM)
        assert node.wait(30) == 0
    finally:
        if node.poll() is None:
            node.kill()
            node.wait(10)
        log.close()


@pytest.mark.slow
def test_launch_from_the_archive(pyz: Path, tmp_path) -> None:
    cache = tmp_path / "cache"
    [port] = free_ports(1)
    base = free_ports(1)[0] // 10 * 10
    out = open(tmp_path / "launch.out", "wb")
    proc = subprocess.Popen(bare(pyz, "launch", "--nodes", "1", "--dir", str(tmp_path / "c"),
                                 "--port", str(port), "--base-port", str(base)),
                            stdout=out, stderr=subprocess.STDOUT, env=bare_env(cache), cwd=tmp_path)
    pids: set[int] = set()
    try:
        api = Client(f"127.0.0.1:{port}", timeout=10, retry_for=0)

        def leader() -> dict | None:
            assert proc.poll() is None, (tmp_path / "launch.out").read_text()
            [node] = api.call("GET", "/api/nodes")["nodes"]
            pids.add(node["pid"])
            return node if node["role"] == "leader" else None
        node = wait_for(leader, 60, interval=0.2, message="the launched node to lead")
        with open(f"/proc/{node['pid']}/cmdline", "rb") as f:
            assert str(pyz).encode() in f.read()   # the node runs from the same archive
        Client(node["http"], timeout=10, retry_for=0).put("k", "v")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        wait_for(lambda: not any(os.path.exists(f"/proc/{p}") for p in pids), 10,
                 message="the node process to be gone")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        out.close()

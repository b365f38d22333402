"""HTTPS: the server's TLS edge in process, then real nodes serving https with certificates
made by axon.security.tls — round trips, forwarding from a follower, the CLI with --cacert,
and client certificates required."""
from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
from typing import Iterator

import gevent
import gevent.ssl
import pytest
from gevent import socket as gsocket

from axon.client import Client
from axon.client.http import ClientError, HttpPool, split_scheme, tls_client_context
from axon.security.tls import make_ca, make_node_cert, write_private
from axon.testing.cluster import REPO_ROOT, Cluster, wait_for
from axon.web.app import bind
from axon.web.replies import json_reply
from axon.web.server import HttpServer
from axon.web.wire import Request, Response

TIMEOUT = 5.0


class Pki:
    """A cluster CA, one node certificate for 127.0.0.1/localhost, and a client certificate."""

    def __init__(self, directory: str) -> None:
        self.dir = directory
        ca = make_ca()
        self.ca = self._write("ca", ca)
        self.node_cert, self.node_key = self._pair("node", make_node_cert(ca, "node", ["127.0.0.1", "localhost"]))
        self.client_cert, self.client_key = self._pair("client", make_node_cert(ca, "client", ["client.invalid"]))

    def _write(self, name: str, issued) -> str:
        path = os.path.join(self.dir, f"{name}.pem")
        write_private(path, issued.cert_pem)
        return path

    def _pair(self, name: str, issued) -> tuple[str, str]:
        key = os.path.join(self.dir, f"{name}.key")
        write_private(key, issued.key_pem)
        return self._write(name, issued), key

    def node_args(self, client_certs: bool = False) -> list[str]:
        args = ["--tls-cert-file", self.node_cert, "--tls-key-file", self.node_key, "--tls-ca-file", self.ca]
        return args + (["--tls-client-ca-file", self.ca] if client_certs else [])


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return Pki(str(tmp_path_factory.mktemp("pki")))


# ---------------------------------------------------------------- the client's address forms

def test_addresses_say_their_scheme() -> None:
    assert split_scheme("127.0.0.1:7000") == (None, "127.0.0.1:7000")
    assert split_scheme("https://127.0.0.1:7000/") == ("https", "127.0.0.1:7000")
    assert split_scheme("HTTP://[::1]:7000") == ("http", "[::1]:7000")


# ---------------------------------------------------------------- the server's TLS edge, in process

def hello(req: Request) -> Response:
    return json_reply(200, {"path": req.path})


@pytest.fixture
def tls_server(pki) -> Iterator[HttpServer]:
    from axon.security.tls import server_context
    server = HttpServer(bind("127.0.0.1:0"), hello, 1 << 16, header_timeout=0.5,
                        ssl_context=server_context(pki.node_cert, pki.node_key))
    server.start()
    try:
        yield server
    finally:
        server.stop(timeout=1)


def tls_connect(pki: Pki, addr) -> gevent.ssl.SSLSocket:
    ctx = tls_client_context(pki.ca)
    raw = gsocket.create_connection(addr, timeout=TIMEOUT)
    return gevent.ssl.SSLSocket(sock=raw, server_hostname="127.0.0.1", _context=ctx)


def read_all(sock) -> bytes:
    """What the peer sends until it closes (a reset counts as a close)."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def test_requests_over_tls_keep_alive(pki, tls_server) -> None:
    sock = tls_connect(pki, tls_server.address)
    try:
        for path in ("/one", "/two"):
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            data = b""
            while not data.endswith(b"}"):
                data += sock.recv(65536)
            assert data.startswith(b"HTTP/1.1 200") and f'"path": "{path}"'.encode() in data
    finally:
        sock.close()


def test_a_stalled_handshake_is_closed_after_the_header_timeout(tls_server) -> None:
    sock = gsocket.create_connection(tls_server.address, timeout=TIMEOUT)
    try:
        started = time.monotonic()
        sock.sendall(b"\x16\x03\x01")   # the start of a ClientHello, and then nothing
        assert sock.recv(1024) == b""
        assert time.monotonic() - started < 3.0
        gevent.sleep(0.05)
        assert tls_server.connections.open == 0
    finally:
        sock.close()


def test_plain_http_on_a_tls_listener_gets_no_answer(tls_server) -> None:
    sock = gsocket.create_connection(tls_server.address, timeout=TIMEOUT)
    try:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"HTTP/1.1 200" not in read_all(sock)
    finally:
        sock.close()


# ---------------------------------------------------------------- real nodes over https

def https_cluster(base, pki: Pki, n: int, client_certs: bool = False) -> Cluster:
    ctx = tls_client_context(pki.ca, pki.client_cert if client_certs else None,
                             pki.client_key if client_certs else None)
    return Cluster(base, n, extra_args=pki.node_args(client_certs),
                   node_options=lambda node_id: {"ssl_context": ctx})


@pytest.mark.slow
def test_https_cluster_round_trip_forwarding_and_cli(tmp_path, pki) -> None:
    with https_cluster(tmp_path, pki, 3) as cluster:
        leader = cluster.leader()
        follower = next(n for n in cluster.nodes if n is not leader)
        assert leader.client.put("k", "from the leader")["value"] == "from the leader"
        # a write and a linearizable read on a follower go to the leader over https
        assert follower.client.put("k2", "via a follower")["value"] == "via a follower"
        assert follower.client.get("k")["value"] == "from the leader"
        assert leader.client.get("k2")["value"] == "via a follower"
        # the overview's status fetches from every member go over https too
        overview = cluster.wait_for(
            lambda: (o := follower.client.call("GET", "/cluster/overview")) and
            all(n["online"] for n in o["nodes"]) and o, message="every member online in the overview")
        assert len(overview["nodes"]) == 3
        # a plain http client gets no answer from an https node
        with pytest.raises(ClientError):
            Client(follower.http, timeout=3, retry_for=0).status()
        # the CLI: https:// in --addr, the CA from --cacert (or AXON_CACERT)
        env = dict(os.environ, PYTHONPATH=REPO_ROOT)
        cli = [sys.executable, "-m", "axon", "kv", "get", "k2", "--addr", f"https://{follower.http}"]
        got = subprocess.run(cli + ["--cacert", pki.ca, "--json"], capture_output=True, text=True,
                             env=env, timeout=30)
        assert got.returncode == 0, got.stderr
        assert '"via a follower"' in got.stdout
        got = subprocess.run(cli, capture_output=True, text=True, env=dict(env, AXON_CACERT=pki.ca), timeout=30)
        assert got.returncode == 0 and "via a follower" in got.stdout, got.stderr
        untrusted = subprocess.run(cli, capture_output=True, text=True, env=env, timeout=30)
        assert untrusted.returncode == 1 and "certificate" in untrusted.stderr.lower()


@pytest.mark.slow
def test_client_certificates_required(tmp_path, pki) -> None:
    with https_cluster(tmp_path, pki, 2, client_certs=True) as cluster:
        leader = cluster.leader()
        follower = next(n for n in cluster.nodes if n is not leader)
        # forwarding presents the node's own certificate to the leader
        assert follower.client.put("k", "v")["revision"] > 0
        assert leader.client.get("k")["value"] == "v"
        anonymous = Client(f"https://{leader.http}", timeout=3, cacert=pki.ca, retry_for=0)
        with pytest.raises(ClientError):
            anonymous.status()
        with_cert = HttpPool(3, ssl_context=tls_client_context(pki.ca, pki.client_cert, pki.client_key))
        try:
            assert Client(leader.http, pool=with_cert, retry_for=0).status()["node_id"] == leader.node_id
        finally:
            with_cert.close()


def test_a_node_with_half_the_tls_flags_is_refused() -> None:
    from axon.config import ConfigError, NodeConfig
    with pytest.raises(ConfigError, match="go together"):
        NodeConfig.from_flags(node_id="n1", data_dir="d", tls_cert_file="c.pem")
    with pytest.raises(ConfigError, match="allowed-origin"):
        NodeConfig.from_flags(node_id="n1", data_dir="d", allowed_origin=("https://ok.example/path",))
    assert wait_for(lambda: True, 1)


@pytest.mark.slow
def test_axon_launch_tls_serves_nodes_and_dashboard_over_https(tmp_path) -> None:
    from axon.testing.cluster import free_ports
    directory = str(tmp_path / "cluster")
    [port] = free_ports(1)
    out = open(str(tmp_path / "launch.out"), "ab")
    proc = subprocess.Popen([sys.executable, "-m", "axon", "launch", "--tls", "--dir", directory, "--nodes", "1",
                             "--port", str(port), "--base-port", str(20000 + free_ports(1)[0] % 20000),
                             "--stop-timeout", "10"], stdout=out, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=dict(os.environ, PYTHONPATH=REPO_ROOT))
    try:
        ca = os.path.join(directory, "tls", "ca.pem")
        api = Client(f"https://127.0.0.1:{port}", timeout=10, cacert=ca, retry_for=0)

        def leader() -> dict | None:
            assert proc.poll() is None, "the launcher exited"
            [node] = api.call("GET", "/api/nodes")["nodes"]
            return node if node["role"] == "leader" else None
        node = wait_for(leader, 60, interval=0.2, message="an https node leading")
        assert Client(f"https://{node['http']}", timeout=10, cacert=ca, retry_for=0).put("k", "v")["value"] == "v"
        assert api.get("k")["value"] == "v"   # the dashboard's proxy speaks https to the node
        assert "<html" in api.pool.request("GET", f"https://127.0.0.1:{port}", "/").body.decode().lower()
    finally:
        proc.terminate()
        proc.wait(40)
        out.close()

"""CA and node certificates, and TLS contexts that use them over a real loopback socket."""
from __future__ import annotations

import os
import socket
import ssl
import stat
import threading

import pytest

from axon.security.tls import (TlsError, client_context, make_ca, make_node_cert, peer_node_id,
                               server_context, write_private)


@pytest.fixture(scope="module")
def material(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    ca = make_ca()
    node = make_node_cert(ca, "n1", ["127.0.0.1", "localhost"])
    other_ca = make_ca("other")
    stranger = make_node_cert(other_ca, "n9", ["127.0.0.1"])
    files = {}
    for name, issued in (("ca", ca), ("n1", node), ("stranger", stranger)):
        files[name + ".crt"] = str(d / f"{name}.crt")
        files[name + ".key"] = str(d / f"{name}.key")
        (d / f"{name}.crt").write_bytes(issued.cert_pem)
        write_private(files[name + ".key"], issued.key_pem)
    return files


def _handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, server_hostname: str = "127.0.0.1"):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    seen: dict = {}

    def serve():
        conn, _ = listener.accept()
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                seen["peer"] = peer_node_id(tls.getpeercert(binary_form=True))
                tls.sendall(b"hi")
        except (ssl.SSLError, OSError) as exc:
            seen["error"] = exc

    t = threading.Thread(target=serve)
    t.start()
    try:
        with socket.create_connection(listener.getsockname(), timeout=5) as raw:
            with client_ctx.wrap_socket(raw, server_hostname=server_hostname) as tls:
                assert tls.recv(2) == b"hi"
                return peer_node_id(tls.getpeercert(binary_form=True)), seen
    finally:
        t.join(5)
        listener.close()


def test_key_files_are_owner_only(material):
    assert stat.S_IMODE(os.stat(material["n1.key"]).st_mode) == 0o600


def test_server_cert_verifies_against_its_ca(material):
    server = server_context(material["n1.crt"], material["n1.key"])
    peer, _ = _handshake(server, client_context(material["ca.crt"]))
    assert peer == "n1"


def test_client_of_another_ca_is_refused_by_a_server_that_requires_certs(material):
    server = server_context(material["n1.crt"], material["n1.key"], client_ca_file=material["ca.crt"])
    ok_client = client_context(material["ca.crt"], material["n1.crt"], material["n1.key"])
    _, seen = _handshake(server, ok_client)
    assert seen.get("peer") == "n1"
    bad_client = client_context(material["ca.crt"], material["stranger.crt"], material["stranger.key"])
    with pytest.raises((ssl.SSLError, OSError)):
        _handshake(server, bad_client)


def test_server_of_another_ca_is_refused(material):
    server = server_context(material["stranger.crt"], material["stranger.key"])
    with pytest.raises(ssl.SSLError):
        _handshake(server, client_context(material["ca.crt"]))


def test_wrong_hostname_is_refused(material):
    server = server_context(material["n1.crt"], material["n1.key"])
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(server, client_context(material["ca.crt"]), server_hostname="example.invalid")


def test_missing_material_is_a_clear_error(tmp_path):
    with pytest.raises(TlsError, match="cannot load certificate"):
        server_context(str(tmp_path / "no.crt"), str(tmp_path / "no.key"))
    with pytest.raises(TlsError, match="cannot load CA"):
        client_context(str(tmp_path / "no-ca.crt"))

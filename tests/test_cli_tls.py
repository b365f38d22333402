"""`axon tls init` / `axon tls cert`: files, modes, and certificates that verify against the CA."""
from __future__ import annotations

import os
import stat

from click.testing import CliRunner
from cryptography import x509
from cryptography.x509.oid import NameOID

from axon.cli.main import cli
from axon.security.tls import client_context, server_context


def _run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_init_then_cert(tmp_path):
    d = str(tmp_path / "tls")
    assert _run("tls", "init", "--dir", d).exit_code == 0
    result = _run("tls", "cert", "n1", "--dir", d, "--host", "127.0.0.1", "--host", "n1.example")
    assert result.exit_code == 0, result.output
    for name in ("ca.key", "n1.key"):
        assert stat.S_IMODE(os.stat(os.path.join(d, name)).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    cert = x509.load_pem_x509_certificate(open(os.path.join(d, "n1.crt"), "rb").read())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "n1"
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "n1.example" in sans.get_values_for_type(x509.DNSName)
    # the pair loads as a server and the CA as a client trust root
    server_context(os.path.join(d, "n1.crt"), os.path.join(d, "n1.key"), os.path.join(d, "ca.crt"))
    client_context(os.path.join(d, "ca.crt"), os.path.join(d, "n1.crt"), os.path.join(d, "n1.key"))


def test_errors_are_one_line_and_nothing_is_overwritten(tmp_path):
    d = str(tmp_path / "tls")
    result = _run("tls", "cert", "n1", "--dir", d)
    assert result.exit_code == 1 and "axon tls init" in result.output
    assert _run("tls", "init", "--dir", d).exit_code == 0
    before = open(os.path.join(d, "ca.key"), "rb").read()
    result = _run("tls", "init", "--dir", d)
    assert result.exit_code == 1 and "refusing to overwrite" in result.output
    assert open(os.path.join(d, "ca.key"), "rb").read() == before
    result = _run("tls", "cert", "bad id", "--dir", d)
    assert result.exit_code == 1 and result.output.count("\n") == 1

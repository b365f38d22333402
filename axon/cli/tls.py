"""`axon tls init` and `axon tls cert`: a cluster CA and node certificates."""
from __future__ import annotations

import os

import click

from axon.cli.common import CONTEXT, fail


@click.group(context_settings=CONTEXT)
def tls() -> None:
    """Make TLS material: a CA for the cluster, then a certificate per node."""


@tls.command("init")
@click.option("--dir", "directory", default="tls", show_default=True, metavar="DIR",
              help="Where to write ca.crt and ca.key (0600).")
@click.option("--name", default="Axon cluster CA", show_default=True, help="The CA's common name.")
def tls_init(directory: str, name: str) -> None:
    """Make a new CA: DIR/ca.crt (give it to nodes and clients) and DIR/ca.key (keep it safe)."""
    from axon.security.tls import make_ca, write_private
    cert, key = os.path.join(directory, "ca.crt"), os.path.join(directory, "ca.key")
    _refuse_existing(cert, key)
    issued = make_ca(name)
    _write(directory, cert, issued.cert_pem, key, issued.key_pem, write_private)
    click.echo(f"wrote {cert} and {key}", err=True)


@tls.command("cert")
@click.argument("node_id")
@click.option("--host", "hosts", multiple=True, metavar="HOST",
              help="A DNS name or IP address the node is reached at (repeatable). [default: 127.0.0.1, localhost]")
@click.option("--dir", "directory", default="tls", show_default=True, metavar="DIR",
              help="Where ca.crt/ca.key are and NODE_ID.crt/NODE_ID.key go.")
def tls_cert(node_id: str, hosts: tuple[str, ...], directory: str) -> None:
    """Make NODE_ID's certificate (server and client use) signed by DIR's CA."""
    from axon.config import ConfigError, check_node_id
    from axon.security.tls import Issued, TlsError, make_node_cert, write_private
    try:
        check_node_id(node_id)
    except ConfigError as exc:
        fail(str(exc))
    try:
        with open(os.path.join(directory, "ca.crt"), "rb") as f:
            ca_cert = f.read()
        with open(os.path.join(directory, "ca.key"), "rb") as f:
            ca_key = f.read()
    except OSError as exc:
        fail(f"cannot read the CA in {directory} ({exc.strerror}); run `axon tls init --dir {directory}` first")
    cert, key = os.path.join(directory, f"{node_id}.crt"), os.path.join(directory, f"{node_id}.key")
    _refuse_existing(cert, key)
    try:
        issued = make_node_cert(Issued(ca_cert, ca_key), node_id, list(hosts) or ["127.0.0.1", "localhost"])
    except TlsError as exc:
        fail(str(exc))
    _write(directory, cert, issued.cert_pem, key, issued.key_pem, write_private)
    click.echo(f"wrote {cert} and {key}", err=True)


def _refuse_existing(*paths: str) -> None:
    for path in paths:
        if os.path.exists(path):
            fail(f"{path} exists already; refusing to overwrite it")


def _write(directory: str, cert: str, cert_pem: bytes, key: str, key_pem: bytes, write_private) -> None:
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        write_private(key, key_pem)
        with open(cert, "wb") as f:
            f.write(cert_pem)
    except OSError as exc:
        fail(f"cannot write to {directory}: {exc.strerror}")

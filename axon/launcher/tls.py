"""`axon launch --tls`: a cluster CA and one certificate per node (and one for the launcher),
made once in <dir>/tls with axon.security.tls and kept for every later launch."""
from __future__ import annotations

import os
import ssl

from axon.config import parse_addr
from axon.launcher.layout import NodeSpec

LAUNCHER = "launcher"


class TlsFiles:
    """The TLS material of a launched cluster, made on first use; keys are 0600, the dir 0700."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self.ca_file = os.path.join(directory, "ca.pem")
        self._ca_key = os.path.join(directory, "ca.key")
        if not (os.path.exists(self.ca_file) and os.path.exists(self._ca_key)):
            from axon.security.tls import make_ca, write_private
            ca = make_ca()
            write_private(self._ca_key, ca.key_pem)
            write_private(self.ca_file, ca.cert_pem)

    def files(self, name: str, host: str) -> tuple[str, str]:
        """(cert, key) of ``name`` for ``host`` (and the loopback names), made if missing."""
        cert, key = os.path.join(self.directory, f"{name}.pem"), os.path.join(self.directory, f"{name}.key")
        if not (os.path.exists(cert) and os.path.exists(key)):
            from axon.security.tls import Issued, make_node_cert, write_private
            with open(self.ca_file, "rb") as c, open(self._ca_key, "rb") as k:
                ca = Issued(c.read(), k.read())
            hosts = list(dict.fromkeys([host, "127.0.0.1", "localhost"]))
            issued = make_node_cert(ca, name, hosts)
            write_private(key, issued.key_pem)
            write_private(cert, issued.cert_pem)
        return cert, key

    def node_args(self, spec: NodeSpec) -> list[str]:
        """A node's TLS flags: it serves https and trusts the cluster CA when it calls its peers."""
        cert, key = self.files(spec.node_id, parse_addr(spec.http)[0])
        return ["--tls-cert-file", cert, "--tls-key-file", key, "--tls-ca-file", self.ca_file]

    def client_context(self) -> ssl.SSLContext:
        """What the launcher checks the nodes with (status, proxying, decommission)."""
        return ssl.create_default_context(cafile=self.ca_file)

    def server_context(self, host: str) -> ssl.SSLContext:
        """The launcher's own https listener (dashboard and API)."""
        from axon.security.tls import server_context
        return server_context(*self.files(LAUNCHER, host))

"""Everything docs/security.md's "Running a cluster across hosts" turns on, at once, on loopback:
a cluster key, HTTPS, peer mTLS with certificates naming each node, auth with a
least-privilege token, and an audit log.  The cluster works end to end (joins, forwarded
writes, linearizable reads, watches through the Python client) and refuses what it should."""
from __future__ import annotations

import json
import os

import pytest

from axon.client import Client, ClientError
from axon.client.http import tls_client_context
from axon.security.tls import make_ca, make_node_cert, write_private
from axon.testing.cluster import Cluster, cluster_key_args, wait_for

pytestmark = pytest.mark.slow


def node_material(pki: str, ca, node_id: str) -> dict[str, str]:
    """One node's certificate (common name = its id) for HTTPS and for peer mTLS, as AXON_* variables."""
    issued = make_node_cert(ca, node_id, ["127.0.0.1", "localhost"])
    cert, key = os.path.join(pki, f"{node_id}.crt"), os.path.join(pki, f"{node_id}.key")
    write_private(cert, issued.cert_pem)
    write_private(key, issued.key_pem)
    ca_file = os.path.join(pki, "ca.crt")
    env = {"AXON_TLS_CERT_FILE": cert, "AXON_TLS_KEY_FILE": key, "AXON_TLS_CA_FILE": ca_file,
           "AXON_PEER_CERT_FILE": cert, "AXON_PEER_KEY_FILE": key, "AXON_PEER_CA_FILE": ca_file}
    if node_id == "n1":
        env["AXON_AUTH"] = "1"   # the bootstrapping node turns auth on from the first entry
    return env


def test_a_cluster_with_every_protection_on_works_end_to_end(tmp_path) -> None:
    pki = str(tmp_path / "pki")
    os.makedirs(pki)
    ca = make_ca()
    write_private(os.path.join(pki, "ca.crt"), ca.cert_pem)
    ssl_context = tls_client_context(os.path.join(pki, "ca.crt"))
    audit = str(tmp_path / "audit.jsonl")
    os.makedirs(tmp_path / "nodes")
    cluster = Cluster(tmp_path / "nodes", n=0,
                      extra_args=cluster_key_args(str(tmp_path)) + ["--audit-log", audit],
                      node_options=lambda nid: {"env": node_material(pki, ca, nid), "ssl_context": ssl_context})
    try:
        first = cluster.new_node()
        first.start(bootstrap=True)
        first.wait_serving(30)
        token_file = os.path.join(first.data_dir, "root.token")
        wait_for(lambda: os.path.exists(token_file), 30, message="the root token")   # once n1 leads
        with open(token_file, encoding="utf-8") as f:
            root = f.read().strip()
        cluster.use_token(root)
        for _ in range(2):
            cluster.new_node().start(join=[first.http])   # the join proves the cluster key: no token
        cluster.wait_voters(["n1", "n2", "n3"], 60)
        leader = cluster.leader(30)
        for node in cluster.nodes:
            assert "(TLS, sealed with the cluster key)" in node.log_text()

        endpoints = [f"https://{n.http}" for n in cluster.nodes if n is not leader]   # followers pass writes on
        with Client(endpoints, token=root, cacert=os.path.join(pki, "ca.crt")) as admin:
            app = admin.token_create("app", "write", "app/")["token"]
        with Client(endpoints, token=app, cacert=os.path.join(pki, "ca.crt")) as c:
            start = c.put("app/config", "v1")["revision"]
            assert c.txn(compare=[{"key": "app/config", "value": "v1"}],
                         success=[{"op": "put", "key": "app/config", "value": "v2"}])["succeeded"]
            assert c.get("app/config")["value"] == "v2"
            events = c.watch(prefix="app/", from_revision=start)
            assert [(e.key, e.value) for e in (next(events), next(events))] == [("app/config", "v1"),
                                                                                  ("app/config", "v2")]
            events.close()
            with pytest.raises(ClientError) as err:
                c.put("other", "x")
            assert err.value.status == 403
        with Client(endpoints, cacert=os.path.join(pki, "ca.crt")) as anonymous:
            with pytest.raises(ClientError) as err:
                anonymous.get("app/config")
            assert err.value.status == 401
        with Client([f"https://{leader.http}"], cacert=None, retry_for=1) as untrusting:
            with pytest.raises(ClientError):   # the system's CAs do not know the cluster CA
                untrusting.get("app/config")
        actions = [json.loads(line) for line in open(audit, encoding="utf-8")]
        assert any(a.get("principal") == "root" for a in actions)
    finally:
        cluster.close()

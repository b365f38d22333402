"""Client auth on real processes: --auth at bootstrap, /auth/enable on a running cluster,
the same decision on every node, forwarding with the client's identity, revocation everywhere."""
from __future__ import annotations

import os
import stat

import pytest

from axon.client import Client
from axon.client.http import ClientError
from axon.testing.cluster import Cluster

pytestmark = pytest.mark.slow


def client(node, token: str | None = None) -> Client:
    return Client(node.http, timeout=5.0, token=token, retry_for=0)


def status_of(fn) -> int:
    """The HTTP status of a client call (200 when it succeeded)."""
    try:
        fn()
    except ClientError as exc:
        return exc.status
    return 200


def test_bootstrap_with_auth_writes_a_root_token_and_refuses_anonymous(tmp_path) -> None:
    with Cluster(tmp_path, 0, start=False) as cluster:
        node = cluster.new_node(extra_args=["--auth"])
        node.start(bootstrap=True)
        node.wait_serving()
        path = os.path.join(node.data_dir, "root.token")
        cluster.wait_for(lambda: os.path.exists(path), 15.0)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        with open(path) as f:
            root = f.read().strip()
        admin = client(node, root)
        cluster.wait_for(lambda: status_of(lambda: admin.put("a", "1")) == 200, 15.0)
        answer = node.pool.request("GET", node.http, "/kv/a", None, {}, 5.0)
        assert answer.status == 401 and answer.headers.get("www-authenticate") == "Bearer"
        assert status_of(lambda: client(node).get("a")) == 401
        assert admin.get("a")["value"] == "1"
        assert status_of(lambda: client(node).call("GET", "/health")) == 200
        assert root not in node.log_text()


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    """Three nodes; auth turned on while running; (cluster, root token)."""
    cluster = Cluster(tmp_path_factory.mktemp("auth"), 3)
    try:
        leader = cluster.leader()
        follower = next(n for n in cluster.nodes if n is not leader)
        enabled = client(follower).auth_enable()   # forwarded to the leader
        assert enabled["role"] == "admin" and enabled["token"].startswith("axon_")
        yield cluster, enabled["token"]
    finally:
        cluster.close()


def test_enable_is_once_and_then_on_everywhere(secured) -> None:
    cluster, root = secured
    for node in cluster.nodes:
        cluster.wait_for(lambda: status_of(lambda: client(node).status()) == 401, 15.0)
        assert status_of(lambda: client(node, root).auth_enable()) == 409
        assert status_of(lambda: client(node).auth_enable()) == 401


def test_roles_and_prefixes_decide_alike_on_every_node(secured) -> None:
    cluster, root = secured
    admin = client(cluster.nodes[0], root)
    reader = admin.token_create("reader", "read", "app/")["token"]
    writer = admin.token_create("writer", "write", "app/")["token"]
    admin.put("app/x", "1")
    admin.put("other", "2")
    for node in cluster.nodes:
        r, w = client(node, reader), client(node, writer)
        cluster.wait_for(lambda: status_of(lambda: r.get("app/x")) == 200, 15.0)
        assert status_of(lambda: r.list_page("app/")) == 200
        assert status_of(lambda: r.list_page("")) == 403
        assert status_of(lambda: r.get("other")) == 403
        # a read token's write is refused, on a follower too: it is not forwarded as the node's own
        assert status_of(lambda: r.put("app/x", "no")) == 403
        assert status_of(lambda: w.put("app/y", node.node_id)) == 200
        assert status_of(lambda: w.put("other", "no")) == 403
        assert status_of(lambda: w.token_list()) == 403
        assert status_of(lambda: r.status()) == 200
    assert admin.get("other")["value"] == "2"
    assert admin.get("app/x")["value"] == "1"


def test_revocation_takes_effect_on_every_node(secured) -> None:
    cluster, root = secured
    admin = client(cluster.nodes[1], root)
    token = admin.token_create("short", "read", "")["token"]
    for node in cluster.nodes:
        cluster.wait_for(lambda: status_of(lambda: client(node, token).list_page("")) == 200, 15.0)
    assert "short" in [t["name"] for t in admin.token_list()["tokens"]]
    assert token not in str(admin.token_list())
    admin.token_revoke("short")
    for node in cluster.nodes:
        cluster.wait_for(lambda: status_of(lambda: client(node, token).list_page("", stale=True)) == 401, 15.0)

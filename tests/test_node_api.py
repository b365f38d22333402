"""The HTTP API of a real 3-node cluster: CRUD, CAS, listing, forwarding and bad input."""
from __future__ import annotations

import json

from axon.client.http import Response, kv_path
from axon.testing.cluster import Cluster, NodeHandle


def raw(node: NodeHandle, method: str, path: str, body: bytes | None = None,
        headers: dict[str, str] | None = None, timeout: float = 10.0) -> Response:
    return node.pool.request(method, node.http, path, body, headers, timeout=timeout)


def put_raw(node: NodeHandle, key: str, payload: object, headers: dict[str, str] | None = None) -> Response:
    return raw(node, "PUT", kv_path(key), json.dumps(payload).encode(), headers)


def error_of(resp: Response) -> dict:
    """The JSON error body; fails the test if the answer is not a JSON object with "error"."""
    assert resp.headers.get("content-type", "").startswith("application/json"), resp
    body = resp.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), str), body
    return body


def followers(cluster: Cluster) -> list[NodeHandle]:
    leader = cluster.leader()
    return [node for node in cluster.nodes if node is not leader]


def test_crud_through_every_node(cluster: Cluster) -> None:
    for writer in cluster.nodes:
        key = f"crud/{writer.node_id}"
        put = writer.client.put(key, f"v-{writer.node_id}")
        assert put["key"] == key and put["value"] == f"v-{writer.node_id}"
        for reader in cluster.nodes:   # linearizable: every node sees the acknowledged write at once
            assert reader.client.get(key) == put
        updated = writer.client.put(key, "second")
        assert updated["revision"] > put["revision"]
        deleter = cluster.nodes[(cluster.nodes.index(writer) + 1) % len(cluster.nodes)]
        assert deleter.client.delete(key)["key"] == key
        for reader in cluster.nodes:
            assert reader.client.get(key) is None   # 404
        assert writer.client.delete(key) is None    # 404


def test_stale_reads_catch_up_on_followers(cluster: Cluster) -> None:
    written = cluster.nodes[0].client.put("stale/k", "v1")
    for node in cluster.nodes:
        cluster.wait_for(lambda: node.client.get("stale/k", stale=True) == written,
                         message=f"{node.node_id} to apply the write locally")


def test_cas_through_every_node(cluster: Cluster) -> None:
    for node in cluster.nodes:
        key = f"cas/{node.node_id}"
        created = node.client.put(key, "a", if_absent=True)
        resp = put_raw(node, key, {"value": "b"}, {"If-None-Match": "*"})
        assert resp.status == 412
        assert error_of(resp)["revision"] == created["revision"]

        swapped = node.client.put(key, "b", if_revision=created["revision"])
        assert swapped["revision"] > created["revision"]
        resp = put_raw(node, key, {"value": "c"}, {"If-Match": str(created["revision"])})
        assert resp.status == 412
        assert error_of(resp)["revision"] == swapped["revision"]
        # ETag-style quoting is accepted too.
        quoted = node.client.call("PUT", kv_path(key), {"value": "c"},
                                  {"If-Match": f'"{swapped["revision"]}"'})
        assert quoted["value"] == "c"

        resp = raw(node, "DELETE", kv_path(key), headers={"If-Match": str(swapped["revision"])})
        assert resp.status == 412
        assert node.client.delete(key, if_revision=quoted["revision"])["key"] == key
        # Revision 0 means "absent".
        assert node.client.put(key, "again", if_revision=0)["value"] == "again"
        for reader in cluster.nodes:
            assert reader.client.get(key)["value"] == "again"


def test_list_pages_through_a_follower(cluster: Cluster) -> None:
    leader = cluster.leader()
    for i in range(5):
        leader.client.put(f"list/{i}", str(i))
    leader.client.put("other", "x")
    node = followers(cluster)[0]
    seen: list[str] = []
    after = None
    while True:
        page = node.client.list_page("list/", limit=2, after=after)
        assert len(page["items"]) <= 2
        seen += [item["key"] for item in page["items"]]
        assert all(item["value"] == item["key"].split("/")[1] for item in page["items"])
        after = page["next"]
        if after is None:
            break
    assert seen == [f"list/{i}" for i in range(5)]
    assert [i["key"] for i in node.client.list_page("", limit=1000)["items"]] == seen + ["other"]
    cluster.wait_for(lambda: len(node.client.list_page("list/", stale=True)["items"]) == 5,
                     message="stale list to catch up")


def test_status_health_and_ready_on_every_node(cluster: Cluster) -> None:
    leader = cluster.leader()
    for node in cluster.nodes:
        st = node.status()
        assert st["node_id"] == node.node_id
        assert st["leader"] == leader.node_id
        assert st["leader_http"] == leader.http
        assert sorted(st["voters"]) == ["n1", "n2", "n3"]
        assert {n["node_id"]: n["http"] for n in st["nodes"]} == {n.node_id: n.http for n in cluster.nodes}
        assert node.client.call("GET", "/health")["node_id"] == node.node_id
        assert node.client.call("GET", "/ready")["leader"] == leader.node_id
        members = node.client.members()
        assert sorted(m["node_id"] for m in members) == ["n1", "n2", "n3"]


def test_follower_forwards_and_answers_with_the_leaders_result(cluster: Cluster) -> None:
    leader = cluster.leader()
    revisions = []
    for node in followers(cluster):
        answer = node.client.put("fwd", node.node_id)
        revisions.append(answer["revision"])
        assert leader.client.get("fwd", stale=True)["value"] == node.node_id   # applied on the leader
    assert revisions == sorted(revisions) and len(set(revisions)) == 2


def test_join_through_a_follower_is_answered_by_the_leader(cluster: Cluster) -> None:
    leader = cluster.leader()
    follower = followers(cluster)[0]
    me = cluster.node("n3")
    # A member already in the cluster re-joining gets 200 "voter", through any node.
    resp = raw(follower, "POST", "/cluster/join",
               json.dumps({"node_id": me.node_id, "raft": me.raft, "http": me.http}).encode())
    assert resp.status == 200 and resp.json()["status"] == "voter"
    assert resp.json()["leader"] == leader.node_id
    assert follower.client.join(me.node_id, me.raft, me.http)["status"] == "voter"
    for node in (leader, follower):
        resp = raw(node, "POST", "/cluster/join",
                   json.dumps({"node_id": me.node_id, "raft": "127.0.0.1:1", "http": me.http}).encode())
        assert resp.status == 409, resp


def test_internal_headers_from_clients_are_ignored_and_signed_forwards_work(tmp_path) -> None:
    """With a cluster key, only a signed forward counts as one; a client's claims change nothing."""
    key_file = tmp_path / "cluster.key"
    key_file.write_text("ab" * 32)
    key_file.chmod(0o600)
    cluster = Cluster(tmp_path, n=3, extra_args=["--cluster-key-file", str(key_file)])
    try:
        leader = cluster.leader()
        victim, other = followers(cluster)
        for headers in ({"X-Axon-Forwarded": "1", "X-Axon-Origin": leader.node_id},
                        {"X-Axon-Forwarded": "\u00b9"}, {"X-Axon-Origin": "ghost"}):
            for node in (victim, leader):
                resp = put_raw(node, "k", {"value": "x"}, headers)
                assert resp.status == 200, (node.node_id, headers, resp)   # passed on / served as usual
        assert other.client.remove(victim.node_id) == {"removed": victim.node_id}
        # The removed node's signed forwards are refused at once, though it may never learn of its removal.
        resp = put_raw(victim, "k", {"value": "from-removed"})
        assert resp.status == 503 and "error" in error_of(resp)
        assert leader.client.get("k")["value"] == "x"
    finally:
        cluster.close()


BAD_REQUESTS = [
    # (method, path, body, headers, status)
    ("PUT", "/kv/k", b"not json", {}, 400),
    ("PUT", "/kv/k", b"", {}, 400),
    ("PUT", "/kv/k", b"[1, 2]", {}, 400),
    ("PUT", "/kv/k", b"{}", {}, 400),
    ("PUT", "/kv/k", b'{"value": 5}', {}, 400),
    ("PUT", "/kv/k", b'{"value": null}', {}, 400),
    ("PUT", "/kv/k", b'{"value": ["a"]}', {}, 400),
    ("PUT", "/kv/k", b'{"value": "\\ud800"}', {}, 400),
    ("PUT", "/kv/k", b'\xff\xfe{"value": "x"}', {}, 400),
    ("PUT", "/kv/", b'{"value": "x"}', {}, 400),
    ("GET", "/kv/", None, {}, 400),
    ("DELETE", "/kv/", None, {}, 400),
    ("PUT", "/kv/" + "k" * 1025, b'{"value": "x"}', {}, 400),
    ("GET", "/kv/" + "k" * 1025, None, {}, 400),
    ("PUT", "/kv/" + "%C3%A9" * 513, b'{"value": "x"}', {}, 400),
    ("PUT", "/kv/a%00b", b'{"value": "x"}', {}, 400),
    ("PUT", "/kv/adm%ffin", b'{"value": "x"}', {}, 400),   # once written as key "admin"
    ("GET", "/kv/%zz", None, {}, 400),
    ("PUT", "/kv/k", b'{"value": "x"}', {"If-Match": "\u00b9"}, 400),
    ("PUT", "/kv/k", b'{"value": "x"}', {"If-Match": "abc"}, 400),
    ("PUT", "/kv/k", b'{"value": "x"}', {"If-Match": "-1"}, 400),
    ("PUT", "/kv/k", b'{"value": "x"}', {"If-Match": "1.5"}, 400),
    ("PUT", "/kv/k", b'{"value": "x"}', {"If-Match": "9" * 40}, 400),
    ("PUT", "/kv/k", b'{"value": "x"}', {"If-None-Match": "abc"}, 400),
    ("DELETE", "/kv/k", None, {"If-Match": "x"}, 400),
    ("GET", "/kv?limit=0", None, {}, 400),
    ("GET", "/kv?limit=abc", None, {}, 400),
    ("GET", "/kv?limit=1001", None, {}, 400),
    ("GET", "/kv?limit=-1", None, {}, 400),
    ("GET", "/kv?stale=maybe", None, {}, 400),
    ("GET", "/kv/k?stale=maybe", None, {}, 400),
    ("GET", "/nope", None, {}, 404),
    ("GET", "/kv/k/../../etc", None, {}, 404),
    ("POST", "/kv/k", b'{"value": "x"}', {}, 405),
    ("PATCH", "/kv/k", b'{"value": "x"}', {}, 405),
    ("DELETE", "/kv", None, {}, 405),
    ("PUT", "/cluster/status", b"{}", {}, 405),
    ("POST", "/cluster/join", b"nope", {}, 400),
    ("POST", "/cluster/join", b"{}", {}, 400),
    ("POST", "/cluster/join", b'{"node_id": "x", "raft": "nohost", "http": "127.0.0.1:1"}', {}, 400),
    ("POST", "/cluster/join", b'{"node_id": "bad id!", "raft": "127.0.0.1:1", "http": "127.0.0.1:2"}', {}, 400),
    ("POST", "/cluster/join", b'{"node_id": 5, "raft": "127.0.0.1:1", "http": "127.0.0.1:2"}', {}, 400),
    ("POST", "/cluster/join", b'[]', {}, 400),
    ("DELETE", "/cluster/nodes/ghost", None, {}, 404),
]


def test_every_bad_input_is_a_4xx_json_error(cluster: Cluster) -> None:
    leader = cluster.leader()
    targets = [leader, followers(cluster)[0]]
    problems = []
    for node in targets:
        for method, path, body, headers, status in BAD_REQUESTS:
            resp = raw(node, method, path, body, headers)
            try:
                assert resp.status == status, f"HTTP {resp.status}"
                error_of(resp)
            except AssertionError as exc:
                problems.append(f"{node.node_id}: {method} {path[:60]} {body!r:.60} {headers}: {exc}: "
                                f"{resp.body[:200]!r}")
    assert not problems, "\n".join(problems)
    for node in cluster.nodes:   # nothing above broke a node or wrote anything
        assert node.client.call("GET", "/health")["status"] == "ok"
        assert node.client.list_page("")["items"] == []


def test_key_of_exactly_1_kib_is_accepted(cluster: Cluster) -> None:
    node = followers(cluster)[0]
    key = "k" * 1024
    assert node.client.put(key, "x")["key"] == key
    assert node.client.get(key)["value"] == "x"
    unicode_key = "é" * 512   # 1024 bytes in UTF-8
    assert node.client.put(unicode_key, "y")["key"] == unicode_key
    assert cluster.nodes[0].client.get(unicode_key)["value"] == "y"


def test_keys_with_slashes_spaces_and_unicode_round_trip(cluster: Cluster) -> None:
    node = followers(cluster)[0]
    for key in ("a/b/c", "with space", "percent%20", "ключ", "?query#frag", "/leading"):
        assert node.client.put(key, key)["key"] == key
        assert cluster.nodes[0].client.get(key)["value"] == key


def test_value_limit_413_and_huge_bodies(tmp_path) -> None:
    cluster = Cluster(tmp_path, n=1, extra_args=["--max-value-bytes", "1000"])
    try:
        node = cluster.nodes[0]
        assert node.client.put("k", "x" * 1000)["value"] == "x" * 1000
        assert node.client.put("k", "é" * 500)["value"] == "é" * 500   # the limit counts UTF-8 bytes
        for value in ("x" * 1001, "é" * 501):
            resp = put_raw(node, "k", {"value": value})
            assert resp.status == 413
            error_of(resp)
        resp = raw(node, "PUT", "/kv/k", b'{"value": "' + b"x" * (10 << 20) + b'"}')
        assert resp.status == 413
        error_of(resp)
        assert node.client.get("k")["value"] == "é" * 500
    finally:
        cluster.close()


def test_unavailable_answer_shape_without_a_leader(tmp_path) -> None:
    """A node with no cluster state answers 503 JSON with Retry-After and "leader": null at once."""
    cluster = Cluster(tmp_path, n=0)
    try:
        node = cluster.new_node("lonely")
        node.start()
        node.wait_serving()
        for method, path, body in (("PUT", "/kv/k", b'{"value": "x"}'), ("GET", "/kv/k", None),
                                   ("DELETE", "/kv/k", None), ("GET", "/kv", None), ("GET", "/ready", None)):
            resp = raw(node, method, path, body)
            assert resp.status == 503, (method, path, resp)
            assert int(resp.headers["retry-after"]) >= 1
            assert error_of(resp)["leader"] is None
        resp = raw(node, "GET", "/kv/k?stale=true")
        assert resp.status == 404   # a stale read is local: the key simply is not there
    finally:
        cluster.close()


def test_data_dirs_hold_nothing_others_can_read(cluster: Cluster) -> None:
    """The WAL, snapshots and LevelDB's files hold every value in clear: owner-only."""
    import os
    import stat
    cluster.nodes[0].client.put("private/k", "secret")
    for node in cluster.nodes:
        cluster.wait_for(lambda: node.client.get("private/k", stale=True)["value"] == "secret",
                         message=f"{node.node_id} to apply the write")
        loose = []
        for root, dirs, files in os.walk(node.data_dir):
            for path in [root] + [os.path.join(root, f) for f in files]:
                if stat.S_IMODE(os.stat(path).st_mode) & 0o077:
                    loose.append(path)
        assert not loose, loose

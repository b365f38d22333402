"""The audit log: JSON lines, 0600, one per membership, auth or launcher action, with its outcome."""
from __future__ import annotations

import json
import os
import random
import stat
from dataclasses import dataclass

import pytest

from axon.audit import AuditLog
from axon.launcher.api import build_api
from axon.launcher.supervisor import Supervisor
from axon.testing.cluster import Cluster
from axon.web.audit import audit_middleware, node_audited, outcome_of
from axon.web.wire import Request, Response

FIELDS = {"time", "principal", "remote", "action", "target", "outcome"}


def lines(path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_the_file_is_owner_only_appended_and_one_json_object_a_line(tmp_path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_text("")
    os.chmod(path, 0o644)   # a looser file is tightened, not trusted
    log = AuditLog(str(path))
    log.record("join", "ok", principal="ops", remote="10.0.0.1", target="n4", status=200)
    log.close()
    log = AuditLog(str(path))
    log.record("remove", "failed", target="n9")
    log.close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    first, second = lines(path)
    assert FIELDS <= set(first) and first["principal"] == "ops" and first["status"] == 200
    assert (second["action"], second["principal"], second["outcome"]) == ("remove", "anonymous", "failed")


@dataclass
class AuthedRequest(Request):
    """A request as the auth middleware leaves it: with the principal it authenticated."""
    principal: str | None = None


def test_the_middleware_records_marked_routes_only_never_a_body(tmp_path) -> None:
    log = AuditLog(str(tmp_path / "a.jsonl"))
    audit = audit_middleware(log, node_audited("n1"))
    answers = {"/cluster/join": 202, "/cluster/nodes/n%2D3": 200, "/auth/tokens": 201, "/kv/x": 200}

    def handler(req: Request) -> Response:
        return Response(answers[req.path], [], b"{}")

    secret = json.dumps({"name": "ci", "token": "s3cr3t"}).encode()
    for method, path, body in [("POST", "/cluster/join", b'{"node_id": "n4"}'), ("PUT", "/kv/x", b"{}"),
                               ("DELETE", "/cluster/nodes/n%2D3", b""), ("POST", "/auth/tokens", secret)]:
        req = AuthedRequest(method, path, "", "HTTP/1.1", {}, body, True, "10.0.0.7")
        if path.startswith("/auth"):
            req.principal = "admin"
        audit(req, handler)
    log.close()
    got = [(e["action"], e["target"], e["outcome"], e["principal"]) for e in lines(tmp_path / "a.jsonl")]
    assert got == [("join", "n4", "ok", "anonymous"), ("remove", "n-3", "ok", "anonymous"),
                   ("auth.token.create", "ci", "ok", "admin")]
    assert "s3cr3t" not in (tmp_path / "a.jsonl").read_text()
    assert [outcome_of(s) for s in (200, 403, 421, 401, 409, 503)] == \
        ["ok", "refused", "refused", "refused", "failed", "failed"]


def test_launcher_actions_are_audited_and_adding_nodes_is_capped(tmp_path) -> None:
    sup = Supervisor(str(tmp_path / "c"), "127.0.0.1", random.randrange(30000, 40000, 10), nodes=2,
                     stop_timeout=2, say=lambda s: None, max_nodes=2)
    log = AuditLog(str(tmp_path / "launcher.jsonl"))
    try:
        app = build_api(sup, "127.0.0.1:8080", audit_log=log)

        def call(method: str, path: str) -> Response:
            return app(Request(method, path, "", "HTTP/1.1", {"host": "127.0.0.1:8080"}, b"", True, "127.0.0.1"))

        assert call("POST", "/api/nodes/node-2/stop").status == 200   # stopping a stopped node: nothing to do
        added = call("POST", "/api/nodes")
        assert added.status == 409 and "decommission one first" in json.loads(added.body)["error"]
        assert call("GET", "/api/nodes").status == 200   # reads are not audited
    finally:
        sup.shutdown()
        log.close()
    got = [(e["action"], e["target"], e["outcome"], e["status"]) for e in lines(tmp_path / "launcher.jsonl")]
    assert got == [("launcher.stop", "node-2", "ok", 200), ("launcher.add", "", "failed", 409)]


@pytest.mark.slow
def test_join_and_remove_of_real_nodes_are_in_the_leaders_audit_log(tmp_path) -> None:
    audit = str(tmp_path / "n1.audit.jsonl")
    with Cluster(tmp_path, 1, extra_args=["--audit-log", audit]) as cluster:
        first = cluster.leader()
        second = cluster.new_node(extra_args=["--audit-log", str(tmp_path / "n2.audit.jsonl")])
        second.start(join=[first.http])
        cluster.wait_voters(["n1", "n2"])
        assert first.client.remove("n2")
        cluster.wait_for(lambda: first.status()["voters"] == ["n1"], message="n2 removed")
        entries = cluster.wait_for(lambda: [e for e in lines(audit) if e["action"] == "remove"] and lines(audit),
                                   message="the removal in the audit log")
    joins = [e for e in entries if e["action"] == "join"]
    assert joins and all(e["target"] == "n2" and e["remote"] == "127.0.0.1" for e in joins)
    assert joins[-1]["outcome"] == "ok" and joins[-1]["status"] in (200, 202)
    [removal] = [e for e in entries if e["action"] == "remove"]
    assert (removal["target"], removal["outcome"], removal["principal"]) == ("n2", "ok", "anonymous")
    assert all(FIELDS <= set(e) for e in entries)
    assert stat.S_IMODE(os.stat(audit).st_mode) == 0o600


def test_the_audit_names_the_token_that_made_a_change(tmp_path) -> None:
    """Through the real chain with auth on: the auth gate's principal reaches the audit line."""
    import json as _json

    from axon.audit import AuditLog
    from axon.testing.inprocess import api_cluster, request
    from axon.web.app import build_app
    n1 = api_cluster(size=1)["n1"]
    handler = build_app(n1.service.config, n1.service, n1.net.pool(remote="10.0.0.1"),
                        audit_log=AuditLog(str(tmp_path / "audit.jsonl")))
    root = _json.loads(handler(request("POST", "/auth/enable")).body)["token"]
    made = handler(request("POST", "/auth/tokens", _json.dumps({"name": "ops", "role": "read", "prefix": "a/"}).encode(),
                           {"Authorization": f"Bearer {root}"}))
    assert made.status == 201, made.body
    refused = handler(request("POST", "/auth/tokens", b'{"name": "x", "role": "read", "prefix": ""}'))
    assert refused.status == 401
    entries = [_json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [(e["principal"], e["outcome"]) for e in entries[-2:]] == [("root", "ok"), ("anonymous", "refused")]
    assert root not in (tmp_path / "audit.jsonl").read_text()

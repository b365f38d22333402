"""GET /cluster/overview: the pure merge and the concurrent status fetch; the launcher's proxy with no node."""
from __future__ import annotations

import json
import random
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest

from axon.client.http import HttpPool
from axon.launcher.api import build_api
from axon.launcher.supervisor import Supervisor
from axon.api.overview import (OverviewError, StatusFetcher, collect_overview, merge_overview,
                               quorum_summary)
from axon.testing.inprocess import request


def status_of(node_id: str, state: str = "follower", term: int = 3, leader: str | None = "a",
              commit: int = 10, applied: int = 10, voters=("a", "b", "c"), learners=()) -> dict:
    """A /cluster/status body in the node API's shape."""
    members = {"a": "127.0.0.1:1000", "b": "127.0.0.1:1010", "c": "127.0.0.1:1020", "d": "127.0.0.1:1030"}
    ids = list(voters) + list(learners)
    return {"node_id": node_id, "state": state, "leader": leader, "term": term,
            "commit_index": commit, "applied_index": applied, "last_index": commit,
            "voters": list(voters), "learners": list(learners), "gossip": f"g-{node_id}",
            "nodes": [{"node_id": n, "http": members[n], "raft": "r-" + n, "voter": n in voters,
                       "online": None} for n in ids]}


# ---------------------------------------------------------------------- quorum
@pytest.mark.parametrize("voters,online,leader,expected", [
    (["a", "b", "c"], {"a": True, "b": True, "c": True}, "a", (True, 3, 2, 1)),
    (["a", "b", "c"], {"a": True, "b": True, "c": False}, "a", (True, 2, 2, 0)),
    (["a", "b", "c"], {"a": True}, "a", (False, 1, 2, 0)),
    (["a", "b", "c", "d", "e"], {v: True for v in "abcde"}, "a", (True, 5, 3, 2)),
    (["a", "b", "c"], {"a": True, "b": True, "c": True}, None, (False, 3, 2, 0)),
    ([], {}, None, (False, 0, 0, 0)),
])
def test_quorum_summary(voters, online, leader, expected) -> None:
    q = quorum_summary(voters, online, leader)
    assert (q["has_quorum"], q["reachable_voters"], q["needed"], q["failures_tolerated"]) == expected
    assert q["voters"] == len(voters)


# ---------------------------------------------------------------------- merge
def test_merge_all_online_marks_roles_lag_and_leader() -> None:
    me = status_of("a", "leader", commit=12, applied=12)
    answers = {"b": status_of("b", commit=12, applied=9), "c": status_of("c", commit=11, applied=11)}
    ov = merge_overview(me, None, answers, {"b": 0.25, "c": 1.0})
    rows = {r["node_id"]: r for r in ov["nodes"]}
    assert ov["leader"] == "a" and ov["node_id"] == "a" and ov["gossip_enabled"] is False
    assert [r["role"] for r in ov["nodes"]] == ["leader", "follower", "follower"]
    assert (rows["b"]["lag"], rows["c"]["lag"], rows["a"]["lag"]) == (3, 1, 0)
    assert rows["a"]["last_contact"] == 0.0 and rows["b"]["last_contact"] == 0.2
    assert rows["b"]["http"] == "127.0.0.1:1010" and rows["b"]["gossip"] == "g-b"
    assert ov["quorum"] == {"has_quorum": True, "voters": 3, "reachable_voters": 3, "needed": 2,
                            "failures_tolerated": 1}


def test_merge_unreachable_member_is_offline_not_an_error() -> None:
    me = status_of("a", "leader")
    ov = merge_overview(me, None, {"b": "b: connection refused", "c": None})
    rows = {r["node_id"]: r for r in ov["nodes"]}
    assert rows["b"]["online"] is False and rows["b"]["role"] is None
    assert rows["b"]["error"] == "b: connection refused" and rows["c"]["error"] == "no answer"
    assert rows["b"]["term"] is None and rows["b"]["lag"] is None
    assert ov["quorum"]["has_quorum"] is False and ov["quorum"]["reachable_voters"] == 1


def test_merge_rejects_answers_from_the_wrong_node_or_garbage() -> None:
    me = status_of("a", "leader")
    ov = merge_overview(me, None, {"b": status_of("x"), "c": ["not", "a", "dict"]})
    rows = {r["node_id"]: r for r in ov["nodes"]}
    assert rows["b"]["online"] is False and "answered as 'x'" in rows["b"]["error"]
    assert rows["c"]["online"] is False and rows["c"]["error"] == "invalid answer"


def test_merge_joins_gossip_view_and_lists_non_members() -> None:
    me = status_of("a", "leader", learners=("d",))
    gossip = [{"node_id": "a", "status": "alive", "gossip": "g-a", "http": "", "raft": ""},
              {"node_id": "b", "status": "suspect", "gossip": "g-b", "http": "", "raft": ""},
              {"node_id": "c", "status": "dead", "gossip": "g-c", "http": "", "raft": ""},
              {"node_id": "e", "status": "alive", "gossip": "g-e", "http": "127.0.0.1:1040", "raft": "r-e"},
              {"node_id": "f", "status": "bogus"}]
    answers = {"b": status_of("b"), "c": "timed out", "d": status_of("d", "learner", applied=4),
               "e": status_of("e", "follower", voters=())}
    ov = merge_overview(me, gossip, answers)
    rows = {r["node_id"]: r for r in ov["nodes"]}
    assert sorted(rows) == ["a", "b", "c", "d", "e", "f"]
    assert [rows[n]["gossip_status"] for n in "abcdef"] == ["alive", "suspect", "dead", None, "alive", None]
    assert rows["d"]["learner"] and not rows["d"]["voter"] and rows["d"]["role"] == "learner"
    assert rows["d"]["lag"] == 6
    assert not rows["e"]["member"] and rows["e"]["http"] == "127.0.0.1:1040"
    assert ov["learners"] == ["d"] and ov["voters"] == ["a", "b", "c"]


def test_merge_prefers_the_leader_of_the_highest_term() -> None:
    me = status_of("a", "leader", term=3, leader="a")    # a deposed leader that has not heard yet
    answers = {"b": status_of("b", "leader", term=4, leader="b"), "c": status_of("c", term=4, leader="b")}
    assert merge_overview(me, None, answers)["leader"] == "b"


@pytest.mark.parametrize("bad", [None, [], {"node_id": "a"}, {"node_id": "a", "voters": "x", "learners": [],
                                                               "nodes": []}])
def test_merge_rejects_a_malformed_self_status(bad) -> None:
    with pytest.raises(OverviewError):
        merge_overview(bad, None, {})


# ---------------------------------------------------------------------- fetch (real sockets)
class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:   # noqa: N802 (the stdlib's name)
        body = json.dumps(self.server.answer).encode()   # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args) -> None:
        pass


@pytest.fixture
def fake_node() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.answer = status_of("b")   # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A listening socket that never answers: a hung node."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def test_fetcher_marks_dead_and_hung_members_offline_within_the_timeout(fake_node, silent_port) -> None:
    pool = HttpPool()
    fetcher = StatusFetcher(pool, timeout=0.5)
    targets = {"b": f"127.0.0.1:{fake_node.server_address[1]}", "c": f"127.0.0.1:{closed_port()}",
               "d": f"127.0.0.1:{silent_port}", "e": ""}
    started = time.monotonic()
    answers = fetcher.fetch(targets)
    assert time.monotonic() - started < 3.0
    assert answers["b"]["node_id"] == "b"
    assert "refused" in answers["c"]
    assert "timed out" in answers["d"]
    assert answers["e"] == "no http address"
    assert list(fetcher.seconds_since()) == ["b"]
    pool.close()


def test_collect_overview_end_to_end(fake_node) -> None:
    me = status_of("a", "leader")
    me["nodes"][1]["http"] = f"127.0.0.1:{fake_node.server_address[1]}"
    me["nodes"][2]["http"] = f"127.0.0.1:{closed_port()}"
    pool = HttpPool()
    ov = collect_overview(StatusFetcher(pool, timeout=0.5), me, None)
    pool.close()
    rows = {r["node_id"]: r for r in ov["nodes"]}
    assert rows["a"]["online"] and rows["b"]["online"] and not rows["c"]["online"]
    assert rows["b"]["last_contact"] is not None and rows["c"]["last_contact"] is None
    assert ov["quorum"]["has_quorum"] and ov["quorum"]["failures_tolerated"] == 0


# ---------------------------------------------------------------------- the launcher's proxy, no node running
def launcher_call(app, method: str, path: str, query: str = "", body: bytes = b"") -> tuple[int, dict]:
    resp = app(request(method, path + ("?" + query if query else ""), body))
    return resp.status, json.loads(resp.body)


@pytest.fixture
def idle_launcher_app(tmp_path):
    sup = Supervisor(str(tmp_path / "c"), "127.0.0.1", random.randrange(20000, 30000, 10), nodes=2,
                     stop_timeout=2, say=lambda s: None)
    try:
        yield build_api(sup)
    finally:
        sup.shutdown()


@pytest.mark.parametrize("method,path,query", [("GET", "/cluster/overview", ""), ("GET", "/kv", "prefix=a"),
                                               ("PUT", "/kv/a/b", ""), ("DELETE", "/cluster/nodes/x", "")])
def test_launcher_proxy_answers_503_json_when_no_node_runs(idle_launcher_app, method, path, query) -> None:
    status, body = launcher_call(idle_launcher_app, method, path, query, b'{"value": "x"}' if method == "PUT" else b"")
    assert status == 503 and "no running node answered" in body["error"]


def test_launcher_still_serves_its_own_api_and_json_404s(idle_launcher_app) -> None:
    status, body = launcher_call(idle_launcher_app, "GET", "/api/nodes")
    assert status == 200 and [n["state"] for n in body["nodes"]] == ["stopped", "stopped"]
    status, body = launcher_call(idle_launcher_app, "GET", "/nothing-here")
    assert status == 404 and "error" in body

"""Watches on a real 3-node cluster: SSE streams from the leader and from followers.

What must hold (issue "Watches, leases, transactions" point 1): events in revision order,
each once, for a key or a prefix; from a revision or from a linearizable "now"; resume with
Last-Event-ID on another node; 410 past the retained history; progress events; a revoked
token ends its watch; bad input is a 400.
"""
from __future__ import annotations

import http.client
import json
import queue
import socket
import threading
import time
from typing import Iterator
from urllib.parse import urlencode

import pytest

from axon.client import Client
from axon.client.http import ClientError
from axon.client.sse import Event, EventParser
from axon.testing.cluster import Cluster, NodeHandle, wait_for

pytestmark = pytest.mark.slow

HISTORY = 50


class Watcher:
    """One GET /watch, read by a thread into a queue of events."""

    def __init__(self, node: NodeHandle, token: str | None = None, last_event_id: str | None = None,
                 **query: object) -> None:
        host, port = node.http.rsplit(":", 1)
        self.conn = http.client.HTTPConnection(host, int(port), timeout=30)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        self.conn.request("GET", "/watch?" + urlencode(query), headers=headers)
        self.response = self.conn.getresponse()
        self.status = self.response.status
        self.events: queue.Queue[Event | None] = queue.Queue()
        if self.status == 200:
            threading.Thread(target=self._read, daemon=True).start()
        else:
            self.body = json.loads(self.response.read())

    def _read(self) -> None:
        parser = EventParser()
        try:
            while True:
                chunk = self.response.read1(65536)
                if not chunk:
                    break
                for event in parser.feed(chunk):
                    self.events.put(event)
        except (OSError, ValueError, AttributeError, http.client.HTTPException):
            pass   # closed under us (AttributeError: http.client drops its file on close)
        self.events.put(None)   # the stream ended

    def next(self, timeout: float = 10.0, skip_progress: bool = True) -> Event | None:
        deadline = time.monotonic() + timeout
        while True:
            event = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            if event is None or not (skip_progress and event.event == "progress"):
                return event

    def changes(self, count: int, timeout: float = 10.0) -> list[tuple[str, str, str | None, int]]:
        """The next ``count`` changes as (kind, key, value, revision)."""
        out = []
        for _ in range(count):
            event = self.next(timeout)
            assert event is not None, f"stream ended after {out}"
            assert event.event in ("put", "delete"), event
            data = json.loads(event.data)
            assert event.id == str(data["revision"])
            out.append((event.event, data["key"], data["value"], data["revision"]))
        return out

    def close(self) -> None:
        self.conn.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("watch"), n=3,
                extra_args=["--watch-history", str(HISTORY), "--watch-progress-interval", "1"])
    try:
        yield c
    finally:
        c.close()


def followers(cluster: Cluster) -> list[NodeHandle]:
    leader = cluster.leader()
    return [n for n in cluster.nodes if n is not leader]


def put(cluster: Cluster, key: str, value: str) -> int:
    return cluster.leader().client.put(key, value)["revision"]


def test_a_prefix_watch_on_every_node_sees_the_same_changes_in_order(cluster: Cluster) -> None:
    watchers = [Watcher(node, prefix="p1/") for node in cluster.nodes]
    try:
        assert [w.status for w in watchers] == [200, 200, 200]
        r1 = put(cluster, "p1/a", "1")
        put(cluster, "other/x", "ignored")
        r2 = put(cluster, "p1/b", "2")
        r3 = cluster.leader().client.delete("p1/a")["revision"]
        expected = [("put", "p1/a", "1", r1), ("put", "p1/b", "2", r2), ("delete", "p1/a", None, r3)]
        for watcher in watchers:
            assert watcher.changes(3) == expected
    finally:
        for watcher in watchers:
            watcher.close()


def test_a_key_watch_sees_that_key_only(cluster: Cluster) -> None:
    watcher = Watcher(followers(cluster)[0], key="k2/exact")
    try:
        put(cluster, "k2/exact-not", "x")
        put(cluster, "k2/exactly", "x")
        rev = put(cluster, "k2/exact", "yes")
        assert watcher.changes(1) == [("put", "k2/exact", "yes", rev)]
    finally:
        watcher.close()


def test_a_watch_from_now_misses_nothing_after_and_nothing_before_the_request(cluster: Cluster) -> None:
    for node in followers(cluster):
        put(cluster, "p3/before", "old")    # acknowledged before the watch is asked for
        watcher = Watcher(node, prefix="p3/")
        try:
            rev = put(cluster, "p3/after", "new")
            assert watcher.changes(1) == [("put", "p3/after", "new", rev)]
        finally:
            watcher.close()


def test_from_revision_replays_and_last_event_id_resumes_on_another_node(cluster: Cluster) -> None:
    revs = [put(cluster, f"p4/{i}", str(i)) for i in range(5)]
    leader, follower = cluster.leader(), followers(cluster)[0]
    first = Watcher(leader, prefix="p4/", from_revision=revs[0])
    try:
        seen = first.changes(3)
        assert [r for *_, r in seen] == revs[:3]
    finally:
        first.close()
    resumed = Watcher(follower, prefix="p4/", last_event_id=str(revs[2]))
    try:
        more = put(cluster, "p4/5", "5")
        assert [r for *_, r in resumed.changes(3)] == revs[3:] + [more]
    finally:
        resumed.close()


def test_a_start_older_than_the_history_is_410_with_the_compacted_revision(cluster: Cluster) -> None:
    first = put(cluster, "p5/first", "x")
    for i in range(HISTORY + 10):
        put(cluster, f"p5/{i}", "x")
    for node in cluster.nodes:
        wait_for(lambda: node.status()["applied_index"] >= first + HISTORY, 10)
        watcher = Watcher(node, prefix="p5/", from_revision=first)
        assert watcher.status == 410, node.node_id
        assert watcher.body["compacted_revision"] >= first
        assert "error" in watcher.body
        watcher.close()


def test_progress_events_say_how_far_a_quiet_watch_has_seen(cluster: Cluster) -> None:
    rev = put(cluster, "p6/x", "x")
    watcher = Watcher(followers(cluster)[0], prefix="p6-quiet/")
    try:
        event = watcher.next(timeout=5, skip_progress=False)
        assert event is not None and event.event == "progress"
        assert json.loads(event.data)["revision"] >= rev
        assert event.id == str(json.loads(event.data)["revision"])
    finally:
        watcher.close()


@pytest.mark.parametrize("query,headers", [
    ({}, {}),
    ({"key": "a", "prefix": "a"}, {}),
    ({"prefix": "a", "from_revision": "x"}, {}),
    ({"prefix": "a", "from_revision": "0"}, {}),
    ({"prefix": "a", "from_revision": "²"}, {}),
    ({"prefix": "a", "from_revision": "1"}, {"Last-Event-ID": "3"}),
    ({"prefix": "a"}, {"Last-Event-ID": "not a number"}),
    ({"key": ""}, {}),
])
def test_bad_watch_requests_are_400(cluster: Cluster, query: dict, headers: dict) -> None:
    host, port = cluster.nodes[1].http.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", "/watch?" + urlencode(query), headers=headers)
        resp = conn.getresponse()
        assert resp.status == 400, resp.read()
        assert "error" in json.loads(resp.read())
    finally:
        conn.close()


def test_a_slow_watcher_is_cut_with_a_final_event_and_the_node_carries_on(cluster: Cluster) -> None:
    leader, node = cluster.leader(), followers(cluster)[0]
    host, port = node.http.rsplit(":", 1)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)   # keep what the kernel absorbs small
    sock.settimeout(30)
    sock.connect((host, int(port)))
    try:
        sock.sendall(f"GET /watch?prefix=p8/ HTTP/1.1\r\nHost: {node.http}\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)
        assert head.startswith(b"HTTP/1.1 200"), head
        # Stop reading; write far more than the watch may buffer (2 x history) plus socket buffers.
        value = "v" * 4096
        numbers = iter(range(2000))
        lock = threading.Lock()

        def writer() -> None:
            while True:
                with lock:
                    n = next(numbers, None)
                if n is None:
                    return
                leader.client.put(f"p8/{n % 500}", value)
        threads = [threading.Thread(target=writer) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        received = b""
        while b"event: error" not in received:
            chunk = sock.recv(1 << 20)
            assert chunk, "the stream ended without a final event"
            received += chunk
        while b"0\r\n\r\n" not in received[received.index(b"event: error"):]:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            received += chunk
        tail = received[received.index(b"event: error"):]
        assert b"fell behind" in tail, tail[:300]
        assert received.count(b"event: put") < 2000   # it was cut, not delivered in full
        assert leader.client.put("p8/after", "x")["revision"] > 0
        assert node.status()["applied_index"] > 0
    finally:
        sock.close()


def test_auth_decides_watches_and_a_revoked_token_ends_its_watch(tmp_path) -> None:
    c = Cluster(tmp_path, n=1, extra_args=["--watch-progress-interval", "1"])
    try:
        node = c.nodes[0]
        root = node.client.auth_enable()["token"]
        admin = Client(node.http, token=root, retry_for=0)
        reader = admin.token_create("reader", "read", "app/")["token"]
        assert Watcher(node, prefix="app/").status == 401
        assert Watcher(node, token=reader, prefix="other/").status == 403
        assert Watcher(node, token=reader, key="other").status == 403
        watcher = Watcher(node, token=reader, prefix="app/")
        assert watcher.status == 200
        rev = admin.put("app/x", "1")["revision"]
        assert watcher.changes(1) == [("put", "app/x", "1", rev)]
        admin.token_revoke("reader")
        event = watcher.next(timeout=10)
        assert event is not None and event.event == "error", event
        assert watcher.next(timeout=5) is None   # and the stream ends
        with pytest.raises(ClientError):
            node.client.call("GET", "/watch?prefix=app/", headers={"Authorization": f"Bearer {reader}"})
    finally:
        c.close()

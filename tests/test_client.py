"""The public Python client against a real 3-node cluster: failover, safe retries, watches that
resume on another node without losing or repeating a change."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time

import pytest

from axon.client import Client, ClientError, OutcomeUnknown, WatchCompacted
from axon.testing.cluster import Cluster, free_ports

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path, n=3, extra_args=["--watch-history", "100", "--watch-progress-interval", "1"])
    try:
        yield c
    finally:
        c.close()


def dead_endpoint() -> str:
    return f"127.0.0.1:{free_ports(1)[0]}"   # nobody listens there


def test_keys_and_transactions_fail_over_past_a_dead_endpoint(cluster: Cluster) -> None:
    with Client([dead_endpoint()] + [n.http for n in cluster.nodes], timeout=3) as c:
        first = c.put("c/a", "1")
        assert c.get("c/a")["value"] == "1"
        assert c.get("c/missing") is None
        with pytest.raises(ClientError) as err:
            c.put("c/a", "2", if_revision=first["revision"] + 100)
        assert err.value.status == 412
        assert c.put("c/a", "2", if_revision=first["revision"])["value"] == "2"
        assert c.put("c/b", "x", if_absent=True)["value"] == "x"
        txn = c.txn(compare=[{"key": "c/b", "exists": True}],
                    success=[{"op": "delete", "key": "c/b"}, {"op": "get", "key": "c/a"}])
        assert txn["succeeded"] and txn["results"][1]["value"] == "2"
        assert c.delete("c/b") is None
        assert [i["key"] for i in c.list("c/", page_size=1)] == ["c/a"]


def test_no_endpoint_answering_is_an_error_within_retry_for() -> None:
    started = time.monotonic()
    with Client([dead_endpoint(), dead_endpoint()], timeout=1, retry_for=1.5) as c:
        with pytest.raises(ClientError) as err:
            c.get("k")
    assert err.value.status == 0
    assert time.monotonic() - started < 10


def test_a_write_whose_answer_is_lost_is_outcome_unknown_not_resent(cluster: Cluster) -> None:
    leader = cluster.leader()
    follower = next(n for n in cluster.nodes if n is not leader)
    follower.pause()
    try:
        with Client([follower.http, leader.http], timeout=1, retry_for=5) as c:
            with pytest.raises(OutcomeUnknown):
                c.put("c/unknown", "x")
            assert c.get("c/unknown") is None or c.get("c/unknown")["value"] == "x"   # reads fail over
    finally:
        follower.resume()


def test_a_watch_resumes_on_another_node_without_losing_or_repeating_a_change(cluster: Cluster) -> None:
    leader = cluster.leader()
    followers = [n for n in cluster.nodes if n is not leader]
    watched = followers[0]
    seen: list = []
    errors: list = []
    done = threading.Event()
    start = leader.client.put("marker", "x")["revision"] + 1   # a known start: no race with the writes

    def watch() -> None:
        with Client([watched.http, followers[1].http, leader.http], timeout=2) as c:
            try:
                for event in c.watch(prefix="w/", from_revision=start):
                    seen.append(event)
                    if event.key == "w/last":
                        break
            except Exception as exc:   # reported below
                errors.append(exc)
            finally:
                done.set()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    with Client([leader.http], timeout=5) as writer:
        revisions = []
        for i in range(60):
            revisions.append(writer.put(f"w/{i % 7}", str(i))["revision"])
            if i == 20:
                watched.kill()       # the node serving the watch dies mid-stream
            if i == 40:
                watched.start()
        revisions.append(writer.put("w/last", "end")["revision"])
    assert done.wait(30), f"watch did not finish; {len(seen)} events"
    assert not errors, errors
    assert [e.revision for e in seen] == revisions     # in order, no gap, no repeat


class CuttingProxy:
    """Passes one connection on to ``upstream`` and cuts it right after the ``after``-th SSE
    event of kind ``event`` the node sends: a stream that breaks at a known point."""

    def __init__(self, upstream: str, event: str, after: int) -> None:
        self.upstream = upstream
        self.marker = f"event: {event}\n".encode()
        self.after = after
        self.cut = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.addr = f"127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._serve_one, daemon=True).start()

    def _serve_one(self) -> None:
        client, _ = self.listener.accept()
        self.listener.close()      # later tries fail fast: the client moves to the next endpoint
        host, port = self.upstream.rsplit(":", 1)
        node = socket.create_connection((host, int(port)))
        threading.Thread(target=self._pump, args=(client, node), daemon=True).start()
        seen, sent = b"", 0
        try:
            while not self.cut.is_set():
                data = node.recv(65536)
                if not data:
                    break
                seen += data
                end = self._cut_point(seen)
                if end is not None:
                    self.cut.set()
                client.sendall(seen[sent:end])
                sent = len(seen) if end is None else end
        finally:
            client.close()
            node.close()

    def _cut_point(self, seen: bytes) -> int | None:
        """Where the ``after``-th such event ends in what the node sent so far, if it does yet."""
        at = -1
        for _ in range(self.after):
            at = seen.find(self.marker, at + 1)
            if at < 0:
                return None
        end = seen.find(b"\n\n", at)
        return None if end < 0 else end + 2

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass


def test_a_watch_cut_partway_through_a_revision_resumes_without_losing_its_other_changes(tmp_path) -> None:
    """A lease revocation deletes 300 keys at one revision; the stream breaks after 100 of them."""
    cluster = Cluster(tmp_path, n=3)
    try:
        leader = cluster.leader()
        follower = next(n for n in cluster.nodes if n is not leader)
        with Client([leader.http], timeout=10) as writer:
            lease = writer.lease_grant(600)["id"]
            keys = [f"r/{i:03d}" for i in range(300)]
            for key in keys:
                writer.put(key, "v", lease=lease)
            revoked = writer.lease_revoke(lease)["revision"]
            writer.put("r/~end", "x")
        proxy = CuttingProxy(follower.http, "delete", after=100)
        seen = []
        with Client([proxy.addr, follower.http, leader.http], timeout=5) as c:
            for event in c.watch(prefix="r/", from_revision=revoked):
                seen.append(event)
                if event.key == "r/~end":
                    break
        assert proxy.cut.is_set(), "the proxy never cut the stream"
        assert [(e.kind, e.key, e.revision) for e in seen[:-1]] == [("delete", k, revoked) for k in keys]
        assert (seen[-1].kind, seen[-1].key) == ("put", "r/~end")
    finally:
        cluster.close()


def test_a_watch_start_past_the_history_raises_watch_compacted(cluster: Cluster) -> None:
    with Client([n.http for n in cluster.nodes], timeout=5) as c:
        first = c.put("h/0", "x")["revision"]
        for i in range(120):
            c.put(f"h/{i}", "x")
        with pytest.raises(WatchCompacted) as err:
            next(iter(c.watch(prefix="h/", from_revision=first)))
        assert err.value.compacted_revision >= first


def axon_cli(*args: str, stdin: str = "") -> "subprocess.CompletedProcess[str]":
    return subprocess.run([sys.executable, "-m", "axon", *args], input=stdin, capture_output=True,
                          text=True, timeout=60)


def test_cli_watch_and_txn(cluster: Cluster) -> None:
    addrs = ",".join([dead_endpoint()] + [n.http for n in cluster.nodes])
    start = cluster.leader().client.put("cli/0", "a")["revision"]
    cluster.leader().client.put("other", "b")
    cluster.leader().client.delete("cli/0")
    watched = axon_cli("kv", "watch", "--prefix", "cli/", "--from-revision", str(start), "--count", "2",
                       "--addr", addrs)
    assert watched.returncode == 0, watched.stderr
    assert watched.stdout.splitlines() == [f"{start} put cli/0 a", f"{start + 2} delete cli/0"]
    doc = json.dumps({"compare": [{"key": "cli/0", "exists": False}],
                      "success": [{"op": "put", "key": "cli/1", "value": "x"}]})
    ran = axon_cli("txn", "-", "--addr", addrs, stdin=doc)
    assert ran.returncode == 0 and ran.stdout.startswith("succeeded at revision"), ran
    again = axon_cli("txn", "-", "--addr", addrs, "--json",
                     stdin=doc.replace('"exists": false', '"exists": true'))
    assert again.returncode == 2 and json.loads(again.stdout)["succeeded"] is False
    for bad, args in [("{", ["txn", "-"]), ("[]", ["txn", "-"]), ("", ["kv", "watch"]),
                      ('{"success": [{"op": "x", "key": "k"}]}', ["txn", "-"])]:
        res = axon_cli(*args, "--addr", addrs, stdin=bad)
        assert res.returncode == 1 and res.stderr.startswith("error: ") and len(res.stderr.splitlines()) == 1, res

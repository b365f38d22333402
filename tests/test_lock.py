"""Locks and elections on a real 3-node cluster: mutual exclusion, fencing tokens that only grow,
one waiter woken per release, a killed or paused holder replaced after its TTL, whose late writes
a fencing resource refuses; `axon lock NAME -- CMD`."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from axon.client import Client
from axon.client.lock import LockCancelled, LockTimeout
from axon.testing.cluster import REPO_ROOT, Cluster, wait_for

pytestmark = pytest.mark.slow

TTL = 2   # the shortest lease the nodes grant (1.5 x the longest election timeout)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("lock"), n=3, extra_args=["--watch-progress-interval", "1"])
    try:
        yield c
    finally:
        c.close()


def client(cluster: Cluster) -> Client:
    return Client([n.http for n in cluster.nodes], timeout=5)


class FencedResource:
    """A storage service that refuses a write whose fencing token is lower than the highest seen."""

    def __init__(self) -> None:
        self.highest = 0
        self.accepted: list[tuple[str, int]] = []   # (writer, token) in the order applied
        self.refused: list[tuple[str, int]] = []
        self._lock = threading.Lock()
        resource = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                query = parse_qs(urlparse(self.path).query)
                ok = resource.write(query["writer"][0], int(query["token"][0]))
                self.send_response(200 if ok else 409)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/write"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def write(self, writer: str, token: int) -> bool:
        with self._lock:
            if token < self.highest:
                self.refused.append((writer, token))
                return False
            self.highest = token
            self.accepted.append((writer, token))
            return True

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# A holder in its own process: takes the lock, says its token, then writes to the resource with
# it every 50 ms for ever, saying when it learns that it lost the lock.
HOLDER = r"""
import sys, time, urllib.request, urllib.error
from axon.client import Client
endpoints, name, ttl, url, writer = sys.argv[1].split(","), sys.argv[2], float(sys.argv[3]), sys.argv[4], sys.argv[5]
c = Client(endpoints, timeout=5)
lock = c.lock(name, ttl=ttl)
token = lock.acquire()
print("token", token, flush=True)
told = False
while True:
    if not lock.valid and not told:
        print("lost", flush=True)
        told = True
    if url != "-":
        try:
            urllib.request.urlopen(urllib.request.Request(f"{url}?writer={writer}&token={token}", method="POST"), timeout=5)
        except urllib.error.HTTPError:
            pass
    time.sleep(0.05)
"""


def start_holder(cluster: Cluster, name: str, url: str = "-", writer: str = "old") -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, ",".join(n.http for n in cluster.nodes), name,
                             str(TTL), url, writer], stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)
    line = proc.stdout.readline().split()
    assert line[:1] == ["token"], line
    return proc, int(line[1])


def test_contending_clients_exclude_each_other_and_tokens_only_grow(cluster: Cluster) -> None:
    inside = threading.Lock()
    tokens: list[int] = []
    problems: list[str] = []

    def contend(worker: int) -> None:
        with client(cluster) as c:
            for _ in range(5):
                with c.lock("t/mutex", ttl=TTL, timeout=60) as lock:
                    if not inside.acquire(blocking=False):
                        problems.append(f"worker {worker} entered while another held the lock")
                        continue
                    tokens.append(lock.token)
                    time.sleep(0.02)
                    inside.release()

    threads = [threading.Thread(target=contend, args=(w,)) for w in range(4)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    print(f"20 acquisitions by 4 contending clients in {time.monotonic() - started:.2f}s")
    assert not problems
    assert len(tokens) == 20
    assert tokens == sorted(tokens) and len(set(tokens)) == 20, tokens   # strictly increasing


def test_a_waiter_watches_only_its_predecessor_so_a_release_wakes_one(cluster: Cluster) -> None:
    with client(cluster) as ca, client(cluster) as cb, client(cluster) as cc:
        a = ca.lock("t/queue", ttl=TTL)
        a.acquire()
        b, c = cb.lock("t/queue", ttl=TTL), cc.lock("t/queue", ttl=TTL)
        threads = [threading.Thread(target=b.acquire), None]
        threads[0].start()
        wait_for(lambda: b.watched, 10, message="b to wait")
        threads[1] = threading.Thread(target=c.acquire)
        threads[1].start()
        wait_for(lambda: c.watched, 10, message="c to wait")
        assert b.watched == [a.key] and c.watched == [b.key]
        token_a = a.token
        a.release()
        threads[0].join(10)
        assert b.held and b.token > token_a
        time.sleep(1.0)   # c keeps waiting: a's release did not wake it
        assert not c.held and c.watched == [b.key]
        token_b = b.token
        b.release()
        threads[1].join(10)
        assert c.held and c.token > token_b
        assert c.watched == [b.key]   # one watch, woken once
        c.release()


def test_a_waiter_that_gives_up_hands_its_successor_on_to_its_own_predecessor(cluster: Cluster) -> None:
    with client(cluster) as ca, client(cluster) as cb, client(cluster) as cc:
        a = ca.lock("t/giveup", ttl=TTL)
        a.acquire()
        b, c = cb.lock("t/giveup", ttl=TTL), cc.lock("t/giveup", ttl=TTL)
        b_got: list[BaseException] = []
        b_waits = threading.Thread(target=lambda: _catch(b_got, b.acquire))
        b_waits.start()
        wait_for(lambda: b.watched, 10, message="b to wait")
        c_waits = threading.Thread(target=lambda: _catch([], lambda: c.acquire(timeout=30)))
        c_waits.start()
        wait_for(lambda: c.watched, 10, message="c to wait")
        b_key = b.key
        b.cancel()
        b_waits.join(10)
        assert b_got and isinstance(b_got[0], LockCancelled)
        wait_for(lambda: len(c.watched) == 2, 10, message="c to wait on a")
        assert c.watched == [b_key, a.key]   # b left: c now waits on b's predecessor
        started = time.monotonic()
        with pytest.raises(LockTimeout):
            cb.lock("t/giveup", ttl=TTL).acquire(timeout=0.5)
        assert time.monotonic() - started < 3
        assert not c.held
        a.release()
        c_waits.join(10)
        assert c.held
        c.release()
        assert not list(ca.list("t/giveup/"))   # every contender's key is gone


def _catch(into: list, fn) -> None:
    try:
        fn()
    except BaseException as exc:   # noqa: BLE001 - handed to the test
        into.append(exc)


def test_a_killed_holder_loses_the_lock_to_the_next_waiter_after_its_ttl(cluster: Cluster) -> None:
    proc, token = start_holder(cluster, "t/killed")
    try:
        with client(cluster) as c:
            lock = c.lock("t/killed", ttl=TTL)
            result: list = []
            waiter = threading.Thread(target=lambda: result.append(lock.acquire(timeout=30)))
            waiter.start()
            wait_for(lambda: lock.watched, 10, message="the waiter to wait")
            killed = time.monotonic()
            proc.send_signal(signal.SIGKILL)
            waiter.join(30)
            took = time.monotonic() - killed
            print(f"killed holder (TTL {TTL}s) -> next waiter holds after {took:.2f}s")
            assert result and result[0] > token
            assert took < TTL + 3, took   # the TTL, plus the expiry duty's tick and the watch
            lock.release()
    finally:
        proc.kill()
        proc.wait()


def test_a_paused_holder_is_fenced_off_and_no_two_holders_writes_interleave(cluster: Cluster) -> None:
    resource = FencedResource()
    proc, old_token = start_holder(cluster, "t/paused", resource.url, "old")
    try:
        wait_for(lambda: len(resource.accepted) >= 5, 10, message="the first holder to write")
        proc.send_signal(signal.SIGSTOP)
        with client(cluster) as c:
            with c.lock("t/paused", ttl=TTL, timeout=30) as lock:
                assert lock.token > old_token
                for _ in range(5):
                    assert resource.write("new", lock.token)
                proc.send_signal(signal.SIGCONT)
                assert proc.stdout.readline().strip() == "lost"   # the old holder is told
                wait_for(lambda: len(resource.refused) >= 3, 10, message="the old holder's late writes")
                for _ in range(3):
                    assert resource.write("new", lock.token)
        writers = [w for w, _ in resource.accepted]
        first_new = writers.index("new")
        assert "old" not in writers[first_new:], writers   # no write of the old holder after the new one's
        assert all(w == "old" for w, _ in resource.refused)
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.kill()
        proc.wait()
        resource.close()


def test_election_leader_observe_and_resign(cluster: Cluster) -> None:
    with client(cluster) as ca, client(cluster) as cb, client(cluster) as co:
        ea, eb = ca.election("t/leader", ttl=TTL), cb.election("t/leader", ttl=TTL)
        seen: list = []
        observer = co.election("t/leader")
        watching = threading.Thread(target=lambda: seen.extend(
            (l.value if l else None) for l in observer.observe(timeout=20)))
        watching.start()
        wait_for(lambda: seen == [None], 10, message="the observer's first answer")
        ea.campaign("node-a")
        assert observer.leader().value == "node-a"
        campaigning = threading.Thread(target=lambda: eb.campaign("node-b", timeout=30))
        campaigning.start()
        wait_for(lambda: "node-a" in seen, 10, message="node-a observed")
        wait_for(lambda: len(list(co.list("t/leader/"))) == 2, 10, message="node-b to stand")
        ea.resign()
        campaigning.join(20)
        assert eb.valid and eb.token > 0
        assert observer.leader().value == "node-b"
        wait_for(lambda: seen[-1:] == ["node-b"], 10, message="node-b observed")
        eb.resign()
        wait_for(lambda: seen[-1:] == [None], 10, message="nobody leads")
        observer.cancel()
        watching.join(10)
        assert seen == [None, "node-a", "node-b", None]


def axon_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "axon", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO_ROOT)


def test_cli_runs_the_command_under_the_lock_with_its_token(cluster: Cluster) -> None:
    addr = ",".join(n.http for n in cluster.nodes)
    done = axon_cli("lock", "t/cli", "--addr", addr, "--ttl", str(TTL), "--",
                    sys.executable, "-c", "import os, sys; print(os.environ['AXON_LOCK_TOKEN']); sys.exit(3)")
    assert done.returncode == 3, done.stderr
    assert int(done.stdout.strip()) > 0
    with client(cluster) as c:
        assert not list(c.list("t/cli/"))   # released
        with c.lock("t/cli", ttl=TTL):
            busy = axon_cli("lock", "t/cli", "--addr", addr, "--timeout", "1", "--", "true")
    assert busy.returncode == 1 and busy.stderr.count("\n") == 1 and "error:" in busy.stderr, busy.stderr
    missing = axon_cli("lock", "t/cli", "--addr", addr, "--", "/nonexistent/command")
    assert missing.returncode == 1 and "cannot run" in missing.stderr, missing.stderr

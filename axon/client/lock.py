"""Distributed locks with fencing tokens, on leases, transactions and watches (etcd's recipe).

    with client.lock("jobs/nightly", ttl=10) as lock:
        storage.write(data, fencing_token=lock.token)   # the storage refuses tokens older than the newest

A session is a lease kept alive by a thread.  To contend, a session creates the key
``<name>/<lease id in hex>`` attached to its lease, in a transaction that also bumps the lock's
sequence key ``<name>`` (a compare on its revision): Axon batches many commands into one Raft
entry, so without it two creations could share a revision, and two successive holders a token.
The contenders, ordered by their key's revision, form a queue: the first holds the lock and its
key's revision is its fencing token; every other one watches only the key just before its own
(its predecessor) until that key is deleted, then looks again.  A release, the holder's crash
(its lease expires) or a waiter giving up each wake exactly one waiter: no thundering herd.

A holder whose lease is lost (keepalives failing for a TTL, the lease revoked, the process paused
past the TTL) is told: ``lock.valid`` turns False and ``lock.check()`` raises ``LockLost``.  It
may still be running, so a resource shared by holders must check the tokens (``FencedResource``
in the tests shows how): the next holder's token is always higher.
"""
from __future__ import annotations

import re
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from axon.client.http import ClientError

DEFAULT_TTL = 10.0
WATCH_POLL_MAX = 5.0    # longest a waiter blocks on a watch before checking its session and deadline
_CONTENDER = re.compile(r"[0-9a-f]+")


class LockError(ClientError):
    """A lock or election could not be taken or kept."""


class LockTimeout(LockError):
    """The lock was not acquired within the timeout."""


class LockCancelled(LockError):
    """``cancel()`` stopped a waiting ``acquire``."""


class LockLost(LockError):
    """The session's lease expired or was revoked: this process no longer holds the lock."""


# ---------------------------------------------------------------------- pure ordering

@dataclass(frozen=True, slots=True)
class Contender:
    """One session's key in a lock's queue."""
    key: str
    value: str
    revision: int


def contenders(items: Iterable[dict], name: str) -> list[Contender]:
    """The queue of lock ``name``: its contenders' keys (``<name>/<hex>``) by revision, then key.

    Other keys under the prefix (a lock named ``<name>/x``) are not contenders.  Ties cannot
    happen (the sequence key gives every creation its own revision); the key breaks them anyway
    so every client sees the same order.
    """
    prefix = name + "/"
    queue = [Contender(item["key"], item["value"], item["revision"]) for item in items
             if item["key"].startswith(prefix) and _CONTENDER.fullmatch(item["key"][len(prefix):])]
    queue.sort(key=lambda c: (c.revision, c.key))
    return queue


def position(queue: list[Contender], key: str) -> tuple[bool, Contender | None]:
    """(whether ``key`` holds the lock, the contender just before it); LockLost if it is not queued."""
    for i, contender in enumerate(queue):
        if contender.key == key:
            return i == 0, (queue[i - 1] if i else None)
    raise LockLost(f"{key} is no longer queued: its lease expired or was revoked")


def contender_key(name: str, lease_id: Any) -> str:
    """The key a session's lease contends with: ``<name>/<lease id in hex>``."""
    return f"{name}/{lease_id:x}" if isinstance(lease_id, int) else f"{name}/{lease_id}"


def check_name(name: str) -> str:
    """A lock or election name: a non-empty key prefix without a trailing slash."""
    if not isinstance(name, str) or not name or name.endswith("/"):
        raise ValueError(f"a lock name is a non-empty key without a trailing '/', got {name!r}")
    return name


# ---------------------------------------------------------------------- session

class Session:
    """A lease kept alive by a thread; ``valid`` turns False once it may have expired on the server."""

    def __init__(self, client: Any, ttl: float = DEFAULT_TTL) -> None:
        self.client = client
        self.ttl = ttl
        granted = client.call("POST", "/leases", {"ttl": ttl}, write=True, ok=(200, 201))
        self.id = granted["id"]
        self.granted_ttl = float(granted.get("ttl", ttl))
        # A keepalive sent at t makes the lease last at least until t + ttl on the server.
        self._expires = time.monotonic() + self.granted_ttl
        self._lost: str | None = None
        self._stop = threading.Event()
        self._listeners: list[Callable[[str], None]] = []
        self._thread = threading.Thread(target=self._keepalive, daemon=True, name=f"axon-session-{self.id}")
        self._thread.start()

    @property
    def valid(self) -> bool:
        return self._lost is None and time.monotonic() < self._expires

    @property
    def lost_reason(self) -> str | None:
        if self._lost is None and time.monotonic() >= self._expires:
            return f"no keepalive of lease {self.id} acknowledged for {self.granted_ttl:g}s"
        return self._lost

    def on_lost(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(reason)`` (from the keepalive thread) when the lease is found lost."""
        self._listeners.append(listener)

    def _keepalive(self) -> None:
        # Every ttl/3 from the last one's sending, not from its answer: a slow answer (a loaded
        # leader) must not push the next keepalive past the TTL.
        interval = max(0.2, self.granted_ttl / 3)
        next_at = time.monotonic() + interval
        while not self._stop.wait(max(0.0, next_at - time.monotonic())):
            sent = time.monotonic()
            next_at = sent + interval
            try:
                answer = self.client.call("POST", f"/leases/{self.id}/keepalive", {}, write=False)
            except ClientError as exc:
                if exc.status == 404:
                    self._lose(f"lease {self.id} expired or was revoked")
                    return
                if time.monotonic() >= self._expires:
                    self._lose(f"no keepalive of lease {self.id} acknowledged for {self.granted_ttl:g}s: {exc}")
                    return
                next_at = time.monotonic() + 0.2
                continue   # another endpoint may answer before the lease runs out
            if sent >= self._expires:   # paused past the TTL: it may have expired meanwhile
                self._lose(f"lease {self.id} went {sent - self._expires + self.granted_ttl:.1f}s "
                           f"without a keepalive (TTL {self.granted_ttl:g}s)")
                return
            self._expires = sent + float(answer.get("ttl", self.granted_ttl))

    def _lose(self, reason: str) -> None:
        self._lost = reason
        for listener in self._listeners:
            listener(reason)

    def close(self) -> None:
        """Stop the keepalives and revoke the lease (deleting its keys); errors leave it to expire."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(5)
        if self._lost is None:
            self._lost = "closed"
            try:
                self.client.call("DELETE", f"/leases/{self.id}", None, write=True, ok=(200, 204, 404))
            except ClientError:
                pass   # the lease expires on its own within its TTL


# ---------------------------------------------------------------------- waiting on a key

class _Waiter:
    """Blocks until a key changes after a revision, a deadline passes, or ``cancel()`` is called."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.cancelled = threading.Event()
        self._stream: Any = None

    def cancel(self) -> None:
        self.cancelled.set()
        stream = self._stream
        if stream is not None and stream.conn.sock is not None:
            try:
                stream.conn.sock.shutdown(socket.SHUT_RDWR)   # wakes the blocked read at once
            except OSError:
                pass

    def changes(self, query: dict, after: int, deadline: float | None,
                alive: Callable[[], None]) -> Iterator[Any]:
        """Events of ``query`` after revision ``after``, forever; raises LockTimeout / LockCancelled,
        or whatever ``alive()`` raises (it is called every WATCH_POLL_MAX at least)."""
        from axon.client.client import WatchCompacted
        while True:
            self._check(deadline, alive)
            try:
                stream = self.client._open_watch(query, after)
            except WatchCompacted:
                yield None   # the history no longer reaches back: look at the keys again
                continue
            except ClientError as exc:
                if exc.status not in (0, 503):
                    raise
                self.client._next_endpoint()
                self.cancelled.wait(0.1)
                continue
            self._stream = stream
            if self.cancelled.is_set():
                stream.close()
                continue
            remaining = WATCH_POLL_MAX if deadline is None else deadline - time.monotonic()
            stream.conn.sock.settimeout(max(0.05, min(WATCH_POLL_MAX, remaining)))
            try:
                for event in stream.events():
                    after = max(after, event.revision)
                    if event.kind != "progress":
                        yield event
                    self._check(deadline, alive)
            finally:
                self._stream = None
                stream.close()

    def _check(self, deadline: float | None, alive: Callable[[], None]) -> None:
        if self.cancelled.is_set():
            raise LockCancelled("cancelled while waiting")
        alive()
        if deadline is not None and time.monotonic() >= deadline:
            raise LockTimeout("not acquired within the timeout")


# ---------------------------------------------------------------------- the lock

class Lock:
    """A distributed mutex; ``acquire()`` then ``release()``, or ``with client.lock(name) as lock:``.

    ``token`` is the fencing token while held.  ``session``: share one lease among several
    locks (it is then not revoked on release); by default each acquire grants its own.
    Entering a ``with`` waits at most ``timeout`` seconds (None: for ever), then LockTimeout.
    """

    def __init__(self, client: Any, name: str, ttl: float = DEFAULT_TTL, value: str = "",
                 session: Session | None = None, timeout: float | None = None) -> None:
        self.client = client
        self.timeout = timeout            # for ``with``: how long entering may wait
        self.name = check_name(name)
        self.ttl = ttl
        self.value = value
        self.session = session
        self._own_session = session is None
        self.key: str | None = None
        self.revision = 0                 # our key's revision once created
        self.token: int | None = None     # the fencing token while held
        self.watched: list[str] = []      # each predecessor waited on, in order (one per wake-up)
        self._waiter = _Waiter(client)

    @property
    def held(self) -> bool:
        return self.token is not None

    @property
    def valid(self) -> bool:
        """Held and the session's lease surely not expired (a holder should stop when it turns False)."""
        return self.held and self.session is not None and self.session.valid

    def check(self) -> int:
        """The fencing token; LockLost when the lock is not held or its lease may have expired."""
        if not self.held:
            raise LockLost(f"lock {self.name} is not held")
        if not self.session.valid:
            raise LockLost(f"lock {self.name} lost: {self.session.lost_reason}")
        return self.token

    def cancel(self) -> None:
        """Stop a waiting ``acquire`` (from another thread): it raises LockCancelled."""
        self._waiter.cancel()

    def acquire(self, timeout: float | None = None) -> int:
        """Wait for the lock (at most ``timeout`` seconds); returns the fencing token."""
        if self.held:
            raise LockError(f"lock {self.name} is already held by this object")
        deadline = None if timeout is None else time.monotonic() + timeout
        self.watched = []
        if self.session is None or not self.session.valid:
            self.session, self._own_session = Session(self.client, self.ttl), True
        try:
            self.key = contender_key(self.name, self.session.id)
            self.revision = self._enqueue()
            while True:
                queue = contenders(self.client.list(self.name + "/"), self.name)
                holds, predecessor = position(queue, self.key)
                if holds:
                    self.token = self.revision
                    return self.token
                self.watched.append(predecessor.key)
                self._wait_gone(predecessor, deadline)
        except BaseException:
            self._leave()
            raise

    def _enqueue(self) -> int:
        """Create our key (attached to the lease) and bump the sequence key in one transaction."""
        from axon.client.client import OutcomeUnknown
        sequence = 0   # the sequence key's revision as we last saw it (0: absent)
        while True:
            try:
                result = self.client.txn(
                    compare=[{"key": self.name, "revision": sequence}, {"key": self.key, "exists": False}],
                    success=[{"op": "put", "key": self.name, "value": self.key, "lease": self.session.id},
                             {"op": "put", "key": self.key, "value": self.value, "lease": self.session.id}],
                    failure=[{"op": "get", "key": self.name}, {"op": "get", "key": self.key}])
            except OutcomeUnknown:
                mine = self.client.get(self.key)   # did it apply? our key says (only we write it)
                if mine is not None:
                    return mine["revision"]
                continue
            if result["succeeded"]:
                return result["revision"]
            seq, mine = result["results"]
            if mine["value"] is not None:
                raise LockError(f"{self.key} already exists: this session already contends for {self.name}")
            sequence = seq["revision"]

    def _alive(self) -> None:
        if not self.session.valid:
            raise LockLost(f"lock {self.name}: {self.session.lost_reason}")

    def _wait_gone(self, predecessor: Contender, deadline: float | None) -> None:
        """Block until ``predecessor``'s key changes (a contender's key is only ever deleted)."""
        for _ in self._waiter.changes({"key": predecessor.key}, predecessor.revision, deadline, self._alive):
            return

    def release(self) -> None:
        """Give the lock up (or stop contending): delete our key, revoke our own session's lease."""
        self._leave()

    def _leave(self) -> None:
        self.token = None
        if self.session is None:
            return
        try:
            if self._own_session:
                self.session.close()   # revoking the lease deletes our key (and the sequence key's)
            elif self.key is not None and self.revision:
                self.client.delete(self.key, if_revision=self.revision)
        except ClientError:
            pass   # the lease's TTL cleans up
        finally:
            self.revision = 0
            if self._own_session:
                self.session = None

    def __enter__(self) -> "Lock":
        self.acquire(self.timeout)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

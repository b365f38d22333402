"""Leader election on the lock recipe: the leader is the first candidate in the lock's queue.

    election = client.election("services/indexer")
    election.campaign("host-a:8080")        # blocks until this candidate leads
    ...
    election.resign()

Each candidate's key holds its identity, so anyone can ask who leads (``leader()``) or follow
the changes (``observe()``) without campaigning.  A leader whose lease is lost stops leading
(``valid`` turns False); its ``token`` (the key's revision) fences its writes as a lock's does.
"""
from __future__ import annotations

import time
from typing import Any, Iterator

from axon.client.lock import DEFAULT_TTL, Contender, Lock, LockError, _Waiter, check_name, contenders


class Election:
    """One election (a lock name): campaign, resign, ask or follow who leads."""

    def __init__(self, client: Any, name: str, ttl: float = DEFAULT_TTL) -> None:
        self.client = client
        self.name = check_name(name)
        self.ttl = ttl
        self._lock: Lock | None = None
        self._observer = _Waiter(client)

    def campaign(self, identity: str, timeout: float | None = None) -> int:
        """Stand with ``identity``; returns once leading (the fencing token), or LockTimeout."""
        if self._lock is not None and self._lock.held:
            raise LockError(f"already leading {self.name}")
        self._lock = Lock(self.client, self.name, self.ttl, value=identity)
        return self._lock.acquire(timeout)

    @property
    def token(self) -> int | None:
        return self._lock.token if self._lock is not None else None

    @property
    def valid(self) -> bool:
        """Leading, and the session's lease surely not expired."""
        return self._lock is not None and self._lock.valid

    def resign(self) -> None:
        """Stop leading (or stop campaigning): the next candidate leads."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def cancel(self) -> None:
        """Stop a waiting ``campaign`` (from another thread) or an ``observe`` loop."""
        if self._lock is not None:
            self._lock.cancel()
        self._observer.cancel()

    def leader(self) -> Contender | None:
        """The current leader (``key``, ``value`` = its identity, ``revision``), or None."""
        queue = contenders(self.client.list(self.name + "/"), self.name)
        return queue[0] if queue else None

    def observe(self, timeout: float | None = None) -> Iterator[Contender | None]:
        """The leader now, then each change of leader (None: nobody leads), until ``timeout``.

        Watches the queue from a revision taken before the first listing, so no change after it
        is missed; each change of the queue lists it again, and a new leader is yielded once.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        since = self.client.status()["commit_index"]
        last = self.leader()
        yield last
        try:
            for _ in self._observer.changes({"prefix": self.name + "/"}, since, deadline, lambda: None):
                now = self.leader()
                if now != last:
                    last = now
                    yield now
        except LockError:
            return   # timed out or cancelled: the iteration ends

    def __enter__(self) -> "Election":
        return self

    def __exit__(self, *exc: object) -> None:
        self.resign()

"""The chaos suite's lock check: clients taking turns at one lock, writing to a fencing resource.

Each client (the public ``Client``, every node an endpoint) acquires the lock, writes to an
in-memory resource for a moment while ``lock.valid`` holds, releases, then tries one more write
with its old token, as a holder paused past its lease would.  The resource applies a write only
if its token is at least the highest it has seen.  ``check()``: each acquisition's token is
higher than every earlier one, a token belongs to one holder, and no two holders' writes
interleave (once a later holder has written, an earlier one never writes again).
"""
from __future__ import annotations

import threading
import time
from typing import Callable

from axon.client.http import ClientError

CLIENT_TIMEOUT = 5.0
ERROR_BACKOFF = 0.2


class FencingResource:
    """Refuses a write whose token is lower than the highest seen; keeps the applied ones in order."""

    def __init__(self) -> None:
        self.log: list[tuple[int, int]] = []   # (writer, token) of applied writes, in order
        self.refused = 0
        self.refused_valid: list[tuple[int, int]] = []   # refused though the writer's lease was alive
        self._highest = 0
        self._mutex = threading.Lock()

    def write(self, writer: int, token: int, still_valid: Callable[[], bool] | None = None) -> bool:
        """Apply a write unless fenced off; ``still_valid`` (the writer's ``lock.valid``) is asked
        at the moment of writing: False stops the write, and a refusal while it holds means
        another holder took the lock before this one's lease could have expired."""
        with self._mutex:
            if still_valid is not None and not still_valid():
                return False
            if token < self._highest:
                self.refused += 1
                if still_valid is not None:
                    self.refused_valid.append((writer, token))
                return False
            self._highest = token
            self.log.append((writer, token))
            return True


def interleavings(log: list[tuple[int, int]]) -> list[str]:
    """Problems in an applied-writes log: a token used by two writers, a holder writing after a later one."""
    problems = []
    owner: dict[int, int] = {}
    finished: set[int] = set()
    current = None
    for writer, token in log:
        if owner.setdefault(token, writer) != writer:
            problems.append(f"lock token {token} used by clients {owner[token]} and {writer}")
        if token != current:
            if token in finished:
                problems.append(f"the holder with token {token} wrote again after a later holder")
            if current is not None:
                finished.add(current)
            current = token
    return problems


class LockWorkload:
    """Threads taking turns at one lock and writing to a FencingResource while they hold it."""

    def __init__(self, endpoints: Callable[[], list[str]], clients: int = 3, name: str = "chaos/lock",
                 ttl: float = 3.0, hold: float = 0.2) -> None:
        self.endpoints = endpoints
        self.name = name
        self.ttl = ttl
        self.hold = hold
        self.resource = FencingResource()
        self.tokens: list[int] = []   # of each acquisition, in the order granted
        self.late_refused = 0         # writes after a release that the fence refused
        self.errors: list[str] = []
        self.stop = threading.Event()
        self._mutex = threading.Lock()
        self.clients = clients
        self._threads: list[threading.Thread] = []

    def start(self) -> "LockWorkload":
        """Start the clients' threads (stopped by ``close``)."""
        self._threads = [threading.Thread(target=self._run, args=(c,), daemon=True, name=f"chaos-lock-{c}")
                         for c in range(self.clients)]
        for thread in self._threads:
            thread.start()
        return self

    def close(self) -> None:
        """Stop the clients: each ends its turn (or gives up waiting) and releases first."""
        self.stop.set()
        deadline = time.monotonic() + CLIENT_TIMEOUT * 3 + self.ttl * 10 + 5
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _run(self, client: int) -> None:
        from axon.client import Client
        with Client(self.endpoints(), timeout=CLIENT_TIMEOUT) as api:
            while not self.stop.is_set():
                lock = api.lock(self.name, ttl=self.ttl)
                try:
                    token = lock.acquire(timeout=self.ttl * 10)
                except ClientError as exc:   # no quorum for long, an unknown outcome: try again
                    self.errors.append(f"client {client}: {exc}")
                    self.stop.wait(ERROR_BACKOFF)
                    continue
                with self._mutex:
                    self.tokens.append(token)
                try:
                    end = time.monotonic() + self.hold
                    while (time.monotonic() < end and not self.stop.is_set()
                           and self.resource.write(client, token, lambda: lock.valid)):
                        self.stop.wait(0.02)
                finally:
                    lock.release()
                # the late write: applied only while nobody else has written since
                refused_before = self.resource.refused
                self.resource.write(client, token)
                self.late_refused += self.resource.refused - refused_before

    def check(self) -> list[str]:
        """Tokens only grow from one acquisition to the next; no two holders' writes interleave."""
        problems = [f"lock token {after} granted after {before}"
                    for before, after in zip(self.tokens, self.tokens[1:]) if after <= before]
        problems += [f"client {writer}'s write with token {token} was fenced off while its lease was "
                     f"surely alive: two holders at once" for writer, token in self.resource.refused_valid]
        return (problems + interleavings(self.resource.log))[:20]

    def counts(self) -> dict[str, int]:
        return {"acquisitions": len(self.tokens), "writes": len(self.resource.log),
                "late writes refused": self.late_refused, "errors": len(self.errors)}

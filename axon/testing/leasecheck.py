"""Leases under faults: holders that keep a lease alive with a key attached, and what must hold.

Each holder grants a lease, attaches one key to it, and sends a keepalive every TTL/3 to any
node that answers, reading its key (linearizably) after each.  Two properties are checked:

- early: while kept alive, the key never vanishes (a read finds it gone, or a keepalive
  answers 404) before TTL seconds after the *sending* of the last acknowledged keepalive.  A
  404 seen at time t means the revocation happened before t, so t < sent + TTL is a sure
  violation (the check never accuses the cluster of what the observation cannot show);
- late: once every holder has stopped, every key under the prefix is gone within TTL +
  two election timeouts (+ a second of slack) of the holder's last keepalive attempt.

A lease found gone after its TTL had run out without an acknowledged keepalive (every node
down, say) is fair: the holder starts a new lease with a new key and carries on.
"""
from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from axon.client import Client
from axon.client.http import ClientError, HttpPool

PREFIX = "lease/"
RETRY_PAUSE = 0.2


@dataclass
class HolderRecord:
    """What one holder did: acknowledged keepalives, leases it lost fairly, when it stopped."""
    name: str
    keepalives: int = 0
    leases: list[int] = field(default_factory=list)
    lost_fairly: int = 0
    stopped_at: float | None = None   # the end of its last request (monotonic)


class LeaseHolders:
    """``holders`` threads, each holding a lease of ``ttl`` seconds; ``problems`` collects violations."""

    def __init__(self, addresses: Callable[[], Sequence[str]], holders: int = 2, ttl: int = 4,
                 seed: int = 11, timeout: float = 5.0) -> None:
        self.addresses = addresses
        self.ttl = ttl
        self.timeout = timeout
        self.problems: list[str] = []
        self.records = [HolderRecord(f"h{i}") for i in range(holders)]
        self.stop = threading.Event()
        self._threads = [threading.Thread(target=self._hold, args=(record, random.Random(seed * 100 + i)),
                                          daemon=True, name=f"lease-holder-{i}")
                         for i, record in enumerate(self.records)]

    def start(self) -> "LeaseHolders":
        for thread in self._threads:
            thread.start()
        return self

    def close(self) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)

    @property
    def keepalives(self) -> int:
        return sum(r.keepalives for r in self.records)

    def _hold(self, record: HolderRecord, rng: random.Random) -> None:
        pool = HttpPool(self.timeout)   # one a thread: a pool is not shared between threads
        try:
            self._keep(record, lambda: Client(rng.choice(list(self.addresses())), timeout=self.timeout,
                                              retry_for=0, pool=pool))
        finally:
            record.stopped_at = time.monotonic()
            pool.close()

    def _keep(self, record: HolderRecord, client: Callable[[], Client]) -> None:
        generation = 0
        lease_id: int | None = None
        key = ""
        kept_until = 0.0   # sent time of the last acknowledged keepalive (or grant) + TTL
        while not self.stop.is_set():
            if lease_id is None:
                generation += 1
                key = f"{PREFIX}{record.name}-{generation}"
                sent = time.monotonic()
                lease_id = self._grant(client(), key)
                if lease_id is None:
                    self.stop.wait(RETRY_PAUSE)
                    continue
                record.leases.append(lease_id)
                kept_until = sent + self.ttl
                continue
            sent = time.monotonic()
            try:
                client().call("POST", f"/leases/{lease_id}/keepalive", write=False)
                record.keepalives += 1
                kept_until = max(kept_until, sent + self.ttl)
                gone = client().get(key) is None
            except ClientError as exc:
                if exc.status != 404:
                    self.stop.wait(RETRY_PAUSE)   # no leader, a dead node: another may answer
                    continue
                gone = True
            if gone:
                seen = time.monotonic()
                if seen < kept_until:
                    self.problems.append(
                        f"{record.name}: lease {lease_id} ({key}) was gone {kept_until - seen:.2f}s before "
                        f"its TTL of {self.ttl}s since the last acknowledged keepalive had run out")
                else:
                    record.lost_fairly += 1
                lease_id = None
                continue
            self.stop.wait(max(0.0, sent + self.ttl / 3 - time.monotonic()))

    def _grant(self, client: Client, key: str) -> int | None:
        """A new lease with ``key`` attached, or None (a lease whose put failed expires on its own)."""
        try:
            lease_id = client.call("POST", "/leases", {"ttl": self.ttl}, ok=(201,))["id"]
            client.put(key, "held", lease=lease_id)
            return lease_id
        except ClientError:
            return None

    def check_gone(self, list_keys: Callable[[str], list[str]], election_timeout: float) -> list[str]:
        """After close(): every key under PREFIX gone in time; ``list_keys(prefix)`` asks the leader."""
        stopped = max((r.stopped_at or time.monotonic()) for r in self.records)
        deadline = stopped + self.ttl + 2 * election_timeout + 1.0
        left: list[str] = []
        while True:
            try:
                left = list_keys(PREFIX)
            except ClientError:
                left = ["(unreadable)"]
            if not left:
                return []
            if time.monotonic() >= deadline:
                return [f"lease keys still there {time.monotonic() - stopped:.1f}s after the holders stopped "
                        f"(TTL {self.ttl}s): {left[:5]}"]
            time.sleep(0.1)

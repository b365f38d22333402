"""Watch completeness under faults: a watcher beside the chaos workload, and the check of what it saw.

``WatchRecorder`` follows the workload's keys with the public client (``axon.client.Client``)
over every node, so it resumes on another node whenever the one it reads from is killed,
paused or cut off.  ``check_watch`` compares what it received with the recorded history
and the final values:

* events come in revision order, none twice (a key deleted twice at one revision needs two
  client deletes there: many clients' commands share an entry, and so a revision);
* every change is one some client asked for (its unique value, on its key), and an
  acknowledged write's event carries the revision the write was answered with;
* every acknowledged write and delete since the start is there (nothing lost);
* replaying the events gives each key's final value and revision.
"""
from __future__ import annotations

import threading
from collections import Counter
from typing import Callable, Iterable, Sequence

from axon.client import Client, ClientError, WatchCompacted, WatchEvent
from axon.testing.history import NOT_FOUND, Op

SENTINEL_SUFFIX = "-watch-end"


class WatchRecorder:
    """Records every change under ``prefix`` from revision ``start`` on, in a thread."""

    def __init__(self, endpoints: Callable[[], Sequence[str]], prefix: str, start: int,
                 retry_for: float = 90.0) -> None:
        self.endpoints = endpoints
        self.prefix = prefix
        self.from_revision = start
        self.retry_for = retry_for
        self.events: list[WatchEvent] = []
        self.problems: list[str] = []
        self.gaps: list[tuple[int, int]] = []   # (first, last) revisions the watch could not get
        self.sentinel = prefix + SENTINEL_SUFFIX
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="chaos-watcher")

    def start(self) -> "WatchRecorder":
        """Start watching (a daemon thread: a watch still waiting when the run ends dies with it)."""
        self._thread.start()
        return self

    def _run(self) -> None:
        client = Client(list(self.endpoints()), timeout=5, retry_for=self.retry_for)
        start = self.from_revision
        try:
            while True:
                try:
                    for event in client.watch(prefix=self.prefix, from_revision=start):
                        if event.key == self.sentinel:
                            return
                        self.events.append(event)
                except WatchCompacted as exc:
                    # The history no longer reaches back (every node restarted: it is kept in
                    # memory); note the gap, go on after it as a client that re-read would.
                    last = self.events[-1].revision if self.events else start - 1
                    self.gaps.append((last + 1, exc.compacted_revision))
                    start = exc.compacted_revision + 1
        except ClientError as exc:
            self.problems.append(f"the watch stopped: {exc}")
        finally:
            client.close()
            self.done.set()


def check_watch(events: Sequence[WatchEvent], ops: Iterable[Op], start: int,
                final: dict[str, tuple[str | None, int | None]],
                gaps: Sequence[tuple[int, int]] = ()) -> list[str]:
    """What is wrong with ``events`` given the history ``ops`` and the ``final`` (value, revision) per key.

    ``gaps``: revision ranges the watch was told are no longer retained (410); changes in
    them are not expected (the caller decides whether a gap itself is allowed).
    """
    ops = list(ops)
    problems = _order(events) + _repeated_deletes(events, ops)
    writes = {op.value: op for op in ops if op.kind in ("write", "cas") and op.value is not None}
    deleted_keys = {op.key for op in ops if op.kind == "delete" and op.status != "fail"}
    seen_values = set()
    seen_deletes = set()
    for event in events:
        if event.kind == "put":
            seen_values.add(event.value)
            problems += _check_put(event, writes.get(event.value))
        else:
            seen_deletes.add((event.key, event.revision))
            if event.key not in deleted_keys:
                problems.append(f"delete of {event.key} at {event.revision}: no client deleted it")
    problems += _missing(ops, start, seen_values, seen_deletes, gaps)
    problems += _final(events, final)
    return problems[:20]


def _order(events: Sequence[WatchEvent]) -> list[str]:
    problems, last, seen = [], 0, set()
    for event in events:
        if event.revision < last:
            problems.append(f"revision {event.revision} ({event.key}) came after {last}")
        if event.kind == "put":   # a put's value is unique: seen twice, sent twice (deletes: below)
            if event in seen:
                problems.append(f"event twice: {event}")
            seen.add(event)
        last = max(last, event.revision)
    return problems


def _repeated_deletes(events: Sequence[WatchEvent], ops: Sequence[Op]) -> list[str]:
    """Deletes of one key at one revision beyond the client deletes that can explain them.

    Many clients' commands share an entry, so one revision may really delete a key twice
    (delete, put, delete): two identical events are only wrong when fewer deletes were made.
    """
    acked = Counter((op.key, op.result) for op in ops if op.kind == "delete" and op.status == "ok")
    unsure = Counter(op.key for op in ops if op.kind == "delete" and op.status not in ("ok", "fail"))
    seen: Counter = Counter()
    problems = []
    for event in events:
        if event.kind != "delete":
            continue
        seen[event.key, event.revision] += 1
        if seen[event.key, event.revision] > max(1, acked[event.key, event.revision] + unsure[event.key]):
            problems.append(f"event twice: {event}")
    return problems


def _check_put(event: WatchEvent, op: Op | None) -> list[str]:
    if op is None or op.key != event.key:
        return [f"put {event.key}={event.value!r} at {event.revision}: no client wrote that"]
    if op.status == "fail":
        return [f"put {event.key}={event.value!r} at {event.revision}: its write failed"]
    if op.status == "ok" and isinstance(op.result, int) and op.result != event.revision:
        return [f"put {event.key}={event.value!r}: the write was answered revision {op.result}, "
                f"the event says {event.revision}"]
    return []


def _missing(ops: Sequence[Op], start: int, values: set, deletes: set,
             gaps: Sequence[tuple[int, int]]) -> list[str]:
    problems = []
    for op in ops:
        if op.status != "ok" or not isinstance(op.result, int) or op.result < start:
            continue
        if any(first <= op.result <= last for first, last in gaps):
            continue
        if op.kind in ("write", "cas") and op.value not in values:
            problems.append(f"acknowledged {op.kind} {op.key}={op.value!r} at {op.result} never arrived")
        elif op.kind == "delete" and op.result != NOT_FOUND and (op.key, op.result) not in deletes:
            problems.append(f"acknowledged delete of {op.key} at {op.result} never arrived")
    return problems


def _final(events: Sequence[WatchEvent], final: dict[str, tuple[str | None, int | None]]) -> list[str]:
    state: dict[str, tuple[str | None, int | None]] = {}
    for event in events:
        state[event.key] = (event.value, event.revision) if event.kind == "put" else (None, None)
    return [f"{key}: the events end at {state[key]}, the cluster holds {final[key]}"
            for key in final if key in state and state[key] != final[key]]

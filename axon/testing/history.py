"""Recording of client operations (invoke / complete) for the linearizability checker.

An ``Op`` is one client call against one key.  Its meaning, as the checker
(``axon.testing.linearizability``) reads it:

``kind``
    ``"read"``, ``"write"``, ``"cas"`` (a conditional write), ``"delete"`` or ``"txn"``
    (a transaction over several keys, see ``parts``).
``value``
    The value written by ``write`` / ``cas``; ``None`` for ``read`` / ``delete``.
``expected``
    For ``cas`` (required) and ``delete`` (optional, a conditional delete): the
    *revision* the key must have for the operation to apply.  Axon's CAS is by
    revision; a key's revision is the Raft index of the entry that last changed
    it, and an absent key has revision 0, so ``expected=0`` means "only if absent".
``status``
    ``"pending"`` until completed, then ``"ok"``, ``"fail"`` or ``"unknown"``.
    ``fail`` means the server definitely did not apply the operation.  For
    ``cas`` and conditional ``delete`` it means more: the server evaluated the
    condition and it was false (the 409/412 conflict).  A conditional operation
    rejected *before* evaluation (e.g. 503 "not leader") must be recorded with
    ``unknown`` or ``discard`` instead.  ``unknown`` (timeout, lost connection)
    means it may or may not have taken effect, at any time after ``invoke``.
    Ops still ``pending`` when checked are treated as ``unknown``.
``result``
    * read ok: ``(value, revision)``; ``value`` None means absent (revision then
      ignored).  ``revision`` may be None when the server did not report it.
    * write / cas ok: the new revision (int), or None if not reported.
    * delete ok: the revision of the delete (int), None if not reported, or
      ``NOT_FOUND`` when the server said the key was absent (nothing changed).
    * cas / conditional delete fail: optionally the current ``(value, revision)``
      the server reported with the conflict, else None.
    * anything else: None.

A ``txn`` op (``History.invoke_txn``) spans keys: ``parts`` is ``(compares, success,
failure)``, the compares ``(key, revision)`` pairs (revision 0: absent) that must all hold for
the success branch to run, each branch a tuple of ``("put", key, value)`` and ``("get", key,
None)``.  Its ok result is ``(succeeded, revision, reads)``: which branch ran, the revision it
ran at (None if not reported) and one ``(key, value, revision)`` per get of that branch, in
order (value None: absent).  ``fail`` means certainly not applied; ``unknown`` as above.  Its
``key`` is only a label (the keys joined by ``+``); the checker reads the keys from ``parts``.

Reads served with ``stale=true`` are allowed to be stale and must simply not be
recorded.
"""
from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable

KINDS = ("read", "write", "cas", "delete", "txn")
STATUSES = ("pending", "ok", "fail", "unknown")
NOT_FOUND = "not_found"   # delete result: the key was absent, nothing changed


class HistoryError(ValueError):
    """Malformed operation, misuse of the recorder, or an unreadable dump."""


@dataclass(slots=True)
class Op:
    id: int
    client: int
    key: str
    kind: str
    value: str | None
    expected: int | None
    invoke: float
    complete: float | None = None
    status: str = "pending"
    result: Any = None
    parts: Any = None   # txn only: (compares, success, failure), see the module docstring

    def keys(self) -> tuple[str, ...]:
        """The keys this op touches (a txn's from its parts), sorted."""
        if self.kind != "txn":
            return (self.key,)
        compares, success, failure = self.parts
        return tuple(sorted({k for k, _ in compares} | {p[1] for p in success + failure}))

    def describe(self, origin: float = 0.0) -> str:
        """A short human-readable line, times relative to ``origin``."""
        what = self.kind
        if self.parts is not None:
            compares, success, failure = self.parts
            what += (" if " + ",".join(f"{k}@{r}" for k, r in compares) + " then "
                     + ",".join(_part_text(p) for p in success) + " else "
                     + ",".join(_part_text(p) for p in failure))
        if self.value is not None:
            what += f" {self.value!r}"
        if self.expected is not None:
            what += f" if rev={self.expected}"
        end = "…" if self.complete is None else f"{self.complete - origin:.6f}"
        outcome = self.status if self.result is None else f"{self.status} {self.result!r}"
        return (f"#{self.id} client {self.client} {what} -> {outcome} "
                f"[{self.invoke - origin:.6f}, {end}]")


def _part_text(part: tuple) -> str:
    return f"{part[0]} {part[1]}" + ("" if part[2] is None else f"={part[2]!r}")


def _check_parts(parts: Any) -> tuple:
    """Normalise a txn's ``(compares, success, failure)`` (lists from JSON become tuples)."""
    if not isinstance(parts, (tuple, list)) or len(parts) != 3:
        raise HistoryError(f"txn parts must be (compares, success, failure), got {parts!r}")
    try:
        compares = tuple((k, r) for k, r in parts[0])
        branches = [tuple(tuple(p) for p in branch) for branch in parts[1:]]
    except (TypeError, ValueError):
        raise HistoryError(f"txn parts must be (compares, success, failure), got {parts!r}") from None
    for k, r in compares:
        if not isinstance(k, str) or not _is_revision(r):
            raise HistoryError(f"a txn compare is (key, revision >= 0), got {(k, r)!r}")
    for p in branches[0] + branches[1]:
        if not (len(p) == 3 and isinstance(p[1], str) and
                ((p[0] == "put" and isinstance(p[2], str)) or (p[0] == "get" and p[2] is None))):
            raise HistoryError(f'a txn op is ("put", key, value) or ("get", key, None), got {p!r}')
    return (compares, branches[0], branches[1])


def _check_txn_result(op: "Op", result: Any) -> tuple:
    """Normalise a txn's ok result ``(succeeded, revision, ((key, value, revision), ...))``."""
    if not isinstance(result, (tuple, list)) or len(result) != 3 or not isinstance(result[0], bool):
        raise HistoryError(f"a txn result is (succeeded, revision, reads), got {result!r}")
    succeeded, revision, reads = result
    if revision is not None and not _is_revision(revision):
        raise HistoryError(f"txn revision must be an int >= 0 or None, got {revision!r}")
    try:
        reads = tuple((k, *_check_read_like((v, r))) for k, v, r in reads)
    except (TypeError, ValueError):
        raise HistoryError(f"txn reads are (key, value, revision) triples, got {reads!r}") from None
    branch = op.parts[1] if succeeded else op.parts[2]
    if [k for k, *_ in reads] != [p[1] for p in branch if p[0] == "get"]:
        raise HistoryError(f"txn #{op.id}: the reads {reads!r} do not match the gets of its branch")
    return (succeeded, revision, reads)


def _check_invoke(client: int, key: str, kind: str, value: Any, expected: Any) -> None:
    if not isinstance(client, int) or isinstance(client, bool):
        raise HistoryError(f"client must be an int, got {client!r}")
    if not isinstance(key, str):
        raise HistoryError(f"key must be a str, got {key!r}")
    if kind not in KINDS:
        raise HistoryError(f"kind must be one of {KINDS}, got {kind!r}")
    if kind in ("write", "cas") and not isinstance(value, str):
        raise HistoryError(f"{kind} needs a str value, got {value!r}")
    if kind in ("read", "delete", "txn") and value is not None:
        raise HistoryError(f"{kind} takes no value, got {value!r}")
    if kind == "cas" and expected is None:
        raise HistoryError("cas needs an expected revision")
    if kind in ("read", "write", "txn") and expected is not None:
        raise HistoryError(f"{kind} takes no expected revision")
    if expected is not None and not _is_revision(expected):
        raise HistoryError(f"expected revision must be an int >= 0, got {expected!r}")


def _is_revision(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _check_read_like(result: Any) -> tuple[str | None, int | None]:
    """Normalise a ``(value, revision)`` result (None = absent)."""
    if result is None:
        return (None, None)
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise HistoryError(f"expected (value, revision) or None, got {result!r}")
    value, revision = result
    if value is not None and not isinstance(value, str):
        raise HistoryError(f"read value must be a str or None, got {value!r}")
    if revision is not None and not _is_revision(revision):
        raise HistoryError(f"revision must be an int >= 0 or None, got {revision!r}")
    return (value, revision)


def _normalise_ok_result(op: Op, result: Any) -> Any:
    if op.kind == "txn":
        return _check_txn_result(op, result)
    if op.kind == "read":
        return _check_read_like(result)
    if op.kind == "delete" and result == NOT_FOUND:
        return NOT_FOUND
    if result is not None and not _is_revision(result):
        raise HistoryError(f"{op.kind} ok result must be a revision or None, got {result!r}")
    return result


def _normalise_fail_result(op: Op, result: Any) -> Any:
    if result is None:
        return None
    if op.kind in ("cas", "delete") and op.expected is not None:
        return _check_read_like(result)
    raise HistoryError(f"a failed {op.kind} carries no result, got {result!r}")


class History:
    """A thread- and greenlet-safe recorder of client operations."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        # A plain lock is safe under gevent too: nothing here yields while holding it.
        self._lock = threading.Lock()
        self._clock = clock
        self._ops: list[Op | None] = []

    def invoke(self, client: int, key: str, kind: str, value: str | None = None,
               expected: int | None = None) -> Op:
        """Record the start of an operation; complete it with ok/fail/unknown."""
        _check_invoke(client, key, kind, value, expected)
        with self._lock:
            op = Op(len(self._ops), client, key, kind, value, expected, self._clock())
            self._ops.append(op)
        return op

    def invoke_txn(self, client: int, compares: Any, success: Any, failure: Any = ()) -> Op:
        """Record the start of a transaction (see the module docstring for its parts)."""
        parts = _check_parts((compares, success, failure))
        with self._lock:
            op = Op(len(self._ops), client, "", "txn", None, None, self._clock(), parts=parts)
            op.key = "+".join(op.keys())
            self._ops.append(op)
        return op

    def ok(self, op: Op, result: Any = None) -> None:
        self._complete(op, "ok", _normalise_ok_result(op, result))

    def fail(self, op: Op, result: Any = None) -> None:
        """The server did not apply ``op`` (for cas / conditional delete: a conflict)."""
        self._complete(op, "fail", _normalise_fail_result(op, result))

    def unknown(self, op: Op) -> None:
        """The outcome of ``op`` is unknown (timeout, connection lost)."""
        self._complete(op, "unknown", None)

    def discard(self, op: Op) -> None:
        """Forget ``op``: it certainly had no effect and taught nothing (e.g. 503 before evaluation)."""
        with self._lock:
            self._own(op)
            self._ops[op.id] = None

    def _own(self, op: Op) -> None:
        if not (0 <= op.id < len(self._ops)) or self._ops[op.id] is not op:
            raise HistoryError(f"op #{op.id} does not belong to this history")

    def _complete(self, op: Op, status: str, result: Any) -> None:
        with self._lock:
            self._own(op)
            if op.status != "pending":
                raise HistoryError(f"op #{op.id} already completed ({op.status})")
            op.complete = self._clock()
            op.status = status
            op.result = result

    def ops(self) -> list[Op]:
        with self._lock:
            return [op for op in self._ops if op is not None]

    def by_key(self) -> dict[str, list[Op]]:
        out: dict[str, list[Op]] = {}
        for op in self.ops():
            out.setdefault(op.key, []).append(op)
        return out

    def __len__(self) -> int:
        return len(self.ops())

    @classmethod
    def from_ops(cls, ops: Iterable[Op]) -> "History":
        """A history holding already-built ops (ids are reassigned in order)."""
        history = cls()
        for op in ops:
            _validate_op(op)
            op.id = len(history._ops)
            history._ops.append(op)
        return history

    def dump(self, path: str) -> None:
        """Write the history as JSON lines, one op per line."""
        with open(path, "w", encoding="utf-8") as f:
            for op in self.ops():
                f.write(json.dumps(asdict(op), allow_nan=False) + "\n")

    @classmethod
    def load(cls, path: str) -> "History":
        ops = []
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if line.strip():
                    ops.append(_op_from_json(line, f"{path}:{lineno}"))
        history = cls.from_ops(ops)
        return history


_FIELDS = ("id", "client", "key", "kind", "value", "expected", "invoke", "complete",
           "status", "result", "parts")


def _op_from_json(line: str, where: str) -> Op:
    try:
        raw = json.loads(line)
    except ValueError as e:
        raise HistoryError(f"{where}: not JSON: {e}") from None
    if isinstance(raw, dict):
        raw.setdefault("parts", None)   # dumps from before transactions
    if not isinstance(raw, dict) or set(raw) != set(_FIELDS):
        raise HistoryError(f"{where}: expected an object with fields {_FIELDS}")
    op = Op(**raw)
    if isinstance(op.result, list):
        op.result = tuple(op.result)
    try:
        _validate_op(op)
    except HistoryError as e:
        raise HistoryError(f"{where}: {e}") from None
    return op


def _is_time(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _validate_op(op: Op) -> None:
    """Raise HistoryError unless ``op`` is well formed (used for loaded / hand-built ops)."""
    if not isinstance(op, Op):
        raise HistoryError(f"not an Op: {op!r}")
    _check_invoke(op.client, op.key, op.kind, op.value, op.expected)
    if (op.kind == "txn") != (op.parts is not None):
        raise HistoryError(f"op #{op.id}: parts go with kind txn, and only with it")
    if op.parts is not None:
        try:
            op.parts = _check_parts(op.parts)
        except HistoryError as e:
            raise HistoryError(f"op #{op.id}: {e}") from None
    if op.status not in STATUSES:
        raise HistoryError(f"status must be one of {STATUSES}, got {op.status!r}")
    if not _is_time(op.invoke):
        raise HistoryError(f"invoke must be a finite number, got {op.invoke!r}")
    if op.status == "pending":
        if op.complete is not None or op.result is not None:
            raise HistoryError(f"pending op #{op.id} has a completion")
        return
    if not _is_time(op.complete) or op.complete < op.invoke:
        raise HistoryError(f"op #{op.id}: complete must be a number >= invoke, got {op.complete!r}")
    if op.status == "ok":
        op.result = _normalise_ok_result(op, op.result)
    elif op.status == "fail":
        op.result = _normalise_fail_result(op, op.result)
    elif op.result is not None:
        raise HistoryError(f"unknown op #{op.id} carries a result")

"""Per-key linearizability checking of a recorded ``History`` (Wing & Gong / Lowe search).

Model: each key is a register whose state is ``(value, revision, exact)``.

* ``value`` is the current value, None when absent.
* ``revision`` is the Raft index of the last change.  When ``exact`` is False
  it is only a lower bound: an operation whose revision we never learnt (an
  ``unknown`` write, an ok write without a reported revision) moved the
  register to *some* revision >= the previous one.  A later read that reports
  the revision pins it (``exact`` becomes True).  Revisions only grow, but two
  writes may share one (Axon batches many commands into one Raft entry), so
  every check is ``>=``, never ``>``.
* The revision a client sees for an absent key is 0, so a CAS with expected
  revision 0 means "only if absent"; ``revision`` keeps the floor for the
  monotonicity checks.

Operation semantics (see ``axon.testing.history`` for how results are encoded):

* read ok ``(v, r)``: needs ``value == v`` and, when present and ``r`` known,
  ``r`` compatible with ``revision`` (equal if exact, >= otherwise).
* write ok ``r``: needs ``r >= revision``; state becomes ``(value', r)``.
* cas/conditional delete: applies iff the visible revision equals ``expected``.
  ok -> as write / delete; ``fail`` -> the condition must be false at the
  linearization point (only decidable when the revision is exact; an inexact
  revision could differ, so it is accepted); a reported current
  ``(value, revision)`` is checked like a read.
* delete ok ``r``: needs the key present; ``NOT_FOUND``: needs it absent.
* ``fail`` of read / write / unconditional delete: removed (no effect).
* ``unknown`` / ``pending``: optional.  They have no return event (complete =
  +infinity): they may be linearized anywhere after their invoke, with effect,
  or never (equivalent to "did not happen" or "CAS condition was false").

Soundness over precision: a legal history is never rejected; a few illegal
ones that hinge on revisions we never learnt are accepted.

Search: the ops' call/return events form a doubly linked list sorted by time
(calls first on equal times, so touching ops count as concurrent).  Walking
from the head, any call before the first remaining return may be linearized
next if the model allows it; it is then lifted out of the list.  Reaching a
return means backtracking.  A cache of (linearized-set bitset, model state)
prunes states already explored; candidates are tried in revision order (a
pure heuristic).  These reductions keep unknown ops and concurrency
affordable (each is argued where it is implemented):

* an unknown write whose unique value was observed is required, due by the
  first observer's return (``_require_observed``);
* values nobody observed are all replaced by one placeholder, and optional ops
  with the same effect are interchangeable (``_forget_unseen_values``,
  ``_Search``);
* a required op that only observes (no mutation) and leaves the state
  unchanged is taken without branching, and an op right after an optional
  one that it would overwrite anyway is skipped (``_Search``).

Optionally (``unknown_horizon``) unknown ops must take effect within a bound
after their invoke; that is faster to refute but only sound if the system
really guarantees such a bound.

Transactions (``txn`` ops, several keys at once): linearizability is local
(P-compositional) only per *object*, and a transaction makes its keys one
object.  ``check_history`` therefore splits the keys into groups connected by
transactions and searches each group whole, its state the tuple of its keys'
registers.  A txn that ran its success branch needs every compare to hold (as
a CAS does, pinning revisions) and applies its puts at its revision, its gets
observing; one that ran its failure branch needs some compare able to fail
and its gets observe; an unknown one is optional with the success branch's
effect.  Groups with a transaction lose no reduction above, only speed: the
search is over all their ops together.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Iterable

from axon.testing.history import NOT_FOUND, History, Op

_CHECK_EVERY = 2048   # search iterations between deadline checks
_EXPLAIN_LAST = 6     # linearized ops shown in a failure explanation


class CheckError(ValueError):
    """The ops given to the checker are malformed (e.g. several keys to check_register)."""


@dataclass(frozen=True, slots=True)
class CheckResult:
    ok: bool
    key: str | None
    explanation: str
    timed_out: bool = False   # ok is False then, but the history may be linearizable


# State: (value, revision, exact).  A tuple so it is hashable for the cache.
State = tuple
INITIAL: State = (None, 0, True)


def _rev_compatible(state: State, revision: int) -> bool:
    _, rev, exact = state
    return rev == revision if exact else revision >= rev


def _observe(state: State, seen: tuple) -> State | None:
    """State after observing a reported (value, revision), or None if impossible."""
    value, revision = seen
    if value != state[0]:
        return None
    if value is None or revision is None:
        return state
    if not _rev_compatible(state, revision):
        return None
    return (value, revision, True)


def _condition_holds(state: State, expected: int) -> State | None:
    """State (possibly pinned) if the visible revision can equal ``expected``, else None."""
    if expected == 0:
        return state if state[0] is None else None
    if state[0] is None or not _rev_compatible(state, expected):
        return None
    return (state[0], expected, True)


def _condition_can_fail(state: State, expected: int) -> bool:
    if expected == 0:
        return state[0] is not None
    return state[0] is None or not (state[2] and state[1] == expected)


def _set(state: State, value: str | None, revision: int | None) -> State | None:
    """Change the value; ``revision`` None means unknown (some revision >= current)."""
    if revision is None:
        return (value, state[1], False)
    if revision < state[1]:
        return None
    return (value, revision, True)


def _step_mutation(state: State, op: Op, revision: int | None) -> State | None:
    """Apply a write / cas / delete that took effect with ``revision`` (None = unknown)."""
    if op.expected is not None:
        state = _condition_holds(state, op.expected)
        if state is None:
            return None
    if op.kind == "delete":
        if state[0] is None:
            return None   # a delete of an absent key changes nothing; it reports NOT_FOUND
        return _set(state, None, revision)
    return _set(state, op.value, revision)


def step(state: State, op: Op) -> State | None:
    """The register state after linearizing ``op`` in ``state``, or None if not allowed."""
    if op.kind == "read" and op.status != "ok":
        return state   # a read without a result neither changes nor reveals anything
    if op.status in ("unknown", "pending"):
        return _step_mutation(state, op, None)
    if op.status == "fail":   # only conditional ops reach here: a conflict
        if op.result is not None:
            state = _observe(state, op.result)
            if state is None:
                return None
        return state if _condition_can_fail(state, op.expected) else None
    if op.kind == "read":
        return _observe(state, op.result)
    if op.kind == "delete" and op.result == NOT_FOUND:
        return state if state[0] is None else None
    return _step_mutation(state, op, op.result)


def _step_txn(states: dict[str, State], op: Op) -> dict[str, State] | None:
    """The registers (by key, only those ``op`` touches) after the txn ``op``, or None."""
    compares, success, failure = op.parts
    if op.status in ("unknown", "pending"):
        succeeded, revision, reads = True, None, None
    else:
        succeeded, revision, reads = op.result
    states = dict(states)
    if succeeded:
        for key, expected in compares:
            states[key] = _condition_holds(states[key], expected)
            if states[key] is None:
                return None
    gets = iter(reads or ())
    for part in success if succeeded else failure:
        key = part[1]
        if part[0] == "put":
            states[key] = _set(states[key], part[2], revision)
        elif reads is not None:
            _, value, rev = next(gets)
            states[key] = _observe(states[key], (value, rev))
        if states[key] is None:
            return None
    if not succeeded and not any(_condition_can_fail(states[k], r) for k, r in compares):
        return None
    return states


class _Register:
    """The model of one key: the state is that key's register."""

    def __init__(self, key: str | None) -> None:
        self.label = repr(key)
        self.initial = INITIAL

    step = staticmethod(step)

    @staticmethod
    def floor(state: State) -> int:
        return state[1]

    @staticmethod
    def describe(state: State) -> str:
        value, revision, exact = state
        return f"register after it: value={value!r} revision{'=' if exact else '>='}{revision}"


class _Group:
    """The model of keys joined by transactions: the state is a tuple of registers, by ``keys``."""

    def __init__(self, keys: list[str]) -> None:
        self.keys = keys
        self.index = {key: i for i, key in enumerate(keys)}
        self.label = "+".join(repr(k) for k in keys)
        self.initial = tuple(INITIAL for _ in keys)

    def step(self, state: tuple, op: Op) -> tuple | None:
        if op.kind != "txn":
            i = self.index[op.key]
            new = step(state[i], op)
            return None if new is None else state[:i] + (new,) + state[i + 1:]
        touched = _step_txn({key: state[self.index[key]] for key in op.keys()}, op)
        if touched is None:
            return None
        out = list(state)
        for key, register in touched.items():
            out[self.index[key]] = register
        return tuple(out)

    @staticmethod
    def floor(state: tuple) -> int:
        return max(register[1] for register in state)

    def describe(self, state: tuple) -> str:
        return "registers after it: " + ", ".join(
            f"{key}: value={value!r} revision{'=' if exact else '>='}{revision}"
            for key, (value, revision, exact) in zip(self.keys, state))


def _writes(op: Op) -> list[tuple[str, object]]:
    """(key, value) of each value ``op`` may write."""
    if op.kind in ("write", "cas"):
        return [(op.key, op.value)]
    if op.kind == "txn" and not (op.status == "ok" and not op.result[0]):
        return [(p[1], p[2]) for p in op.parts[1] if p[0] == "put"]
    return []


def _sightings(op: Op) -> list[tuple[str, str | None, int | None]]:
    """(key, value, revision) of each value ``op`` reports having seen."""
    if op.kind == "txn":
        return list(op.result[2]) if op.status == "ok" else []
    if isinstance(op.result, tuple):
        return [(op.key, *op.result)]
    return []


def _is_optional(op: Op) -> bool:
    return op.status in ("unknown", "pending")


def _only_observes(op: Op) -> bool:
    """Whether ``op`` can never change the register: it can only pin or refute a state.

    A mutation that happens to leave this state unchanged (rewriting the value
    at an unknown or equal revision) may change a later one, e.g. un-pin an
    exact revision, so where it goes still matters.
    """
    if op.kind == "txn":
        return op.status == "ok" and not (op.result[0] and any(p[0] == "put" for p in op.parts[1]))
    if op.kind == "read" or op.status == "fail":
        return True
    return op.kind == "delete" and op.result == NOT_FOUND


def _is_relevant(op: Op) -> bool:
    """False for ops that certainly had no effect and carry no information."""
    if op.kind == "read":
        return op.status == "ok"
    if op.kind == "txn":   # certainly not applied, or maybe applied but with nothing to write
        return op.status == "ok" or (op.status != "fail" and any(p[0] == "put" for p in op.parts[1]))
    if op.status != "fail":
        return True
    return op.kind in ("cas", "delete") and op.expected is not None


def _require_observed(ops: list[Op], horizon: float | None
                      ) -> tuple[list[Op], dict[int, Op]]:
    """Make optional writes whose (unique) value was seen required, due by the first sighting.

    If a value only one op wrote was observed, that op took effect, and did so
    before the observer returned (and within the horizon, if any).  Returns the
    new ops and, for the rewritten ones, the original op by ``id()`` of the copy
    (for explanations).
    """
    writers: dict[object, list[Op]] = {}
    for op in ops:
        for _, value in _writes(op):
            writers.setdefault(value, []).append(op)
    first_seen: dict[object, float] = {}
    for op in ops:
        for _, value, _ in _sightings(op):
            if value is not None and op.complete is not None:
                first_seen[value] = min(first_seen.get(value, op.complete), op.complete)
    out, originals = [], {}
    for op in ops:
        seen = [first_seen[value] for _, value in _writes(op)
                if value in first_seen and len(writers[value]) == 1]
        # (a txn whose success branch reads stays optional: what its gets saw is unknown)
        if _is_optional(op) and seen and not (op.kind == "txn" and any(p[0] == "get" for p in op.parts[1])):
            due = min(seen)
            if horizon is not None:
                due = min(due, op.invoke + horizon)
            due = max(op.invoke, due)
            result = (True, None, ()) if op.kind == "txn" else None
            copy = replace(op, status="ok", complete=due, result=result)
            originals[id(copy)] = op
            op = copy
        out.append(op)
    return out, originals


class _Unseen:
    """Stands for every written value no result ever showed."""

    def __repr__(self) -> str:
        return "<a value never read>"


UNSEEN = _Unseen()


def _forget_unseen_values(ops: list[Op], originals: dict[int, Op]) -> list[Op]:
    """Replace values nobody observed by UNSEEN, so the states they lead to merge.

    Such a value is only ever compared with observed ones, and differs from all
    of them, so which one it is cannot matter; merged states let the cache cut
    the many placements of unknown writes.
    """
    seen = {value for op in ops for _, value, _ in _sightings(op)}
    out = []
    for op in ops:
        copy = None
        if op.kind in ("write", "cas") and op.value not in seen:
            copy = replace(op, value=UNSEEN)
        elif op.kind == "txn" and any(p[0] == "put" and p[2] not in seen for p in op.parts[1]):
            compares, success, failure = op.parts
            success = tuple((p[0], p[1], UNSEEN) if p[0] == "put" and p[2] not in seen else p
                            for p in success)
            copy = replace(op, parts=(compares, success, failure))
        if copy is not None:
            originals[id(copy)] = originals.get(id(op), op)
            op = copy
        out.append(op)
    return out


class _Node:
    __slots__ = ("index", "op", "is_call", "match", "prev", "next")

    def __init__(self, index: int, op: Op | None, is_call: bool) -> None:
        self.index = index
        self.op = op
        self.is_call = is_call
        self.match: _Node | None = None
        self.prev: _Node | None = None
        self.next: _Node | None = None


def _build_list(ops: list[Op], required: list[int]) -> _Node:
    """The time-sorted call/return list of the required ops; returns its head sentinel."""
    events = []
    for i in required:
        call, ret = _Node(i, ops[i], True), _Node(i, ops[i], False)
        call.match = ret
        events.append((ops[i].invoke, 0, i, call))
        events.append((ops[i].complete, 1, i, ret))
    events.sort(key=lambda e: e[:3])
    head = _Node(-1, None, False)
    prev = head
    for *_, node in events:
        prev.next = node
        node.prev = prev
        prev = node
    return head


def _lift(call: _Node) -> None:
    for node in (call, call.match):
        node.prev.next = node.next
        if node.next is not None:
            node.next.prev = node.prev


def _unlift(call: _Node) -> None:
    for node in (call.match, call):
        node.prev.next = node
        if node.next is not None:
            node.next.prev = node


class _Failure(Exception):
    def __init__(self, explanation: str, timed_out: bool = False) -> None:
        super().__init__(explanation)
        self.explanation = explanation
        self.timed_out = timed_out


class _Cache:
    """Explored (required set, state) pairs, each with the optional sets used to reach them.

    Reaching a pair again with a superset of optional ops linearized is
    pointless: fewer optional ops used leaves strictly more choices.
    """

    def __init__(self) -> None:
        self._seen: dict[tuple[int, State], list[int]] = {}

    def add_if_new(self, required_bits: int, optional_bits: int, state: State) -> bool:
        masks = self._seen.setdefault((required_bits, state), [])
        if any(m & optional_bits == m for m in masks):
            return False
        masks.append(optional_bits)
        return True


class _Search:
    """Depth-first search for a linearization of one key's ops.

    Each level's candidates are the calls of required ops before the first
    remaining return, most likely first (by the revision they report), then
    optional ops invoked before that return.  Optional ops go last so that the
    cache discards most of their placements; optional ops with the same effect
    are interchangeable once invoked, so only the earliest unused one of each
    class is a candidate.

    A required candidate that only observes (a read, a conflict, a delete
    finding nothing) and leaves the state unchanged is a forced move: taking
    it now is never worse than later, since it changes nothing and every op
    that must precede it is already linearized (a later state it would have
    pinned is only less permissive without it).  Its level then has no
    alternatives to try when backtracking.  A mutation is never forced, even
    when it changes nothing here: later it could change the state.
    """

    def __init__(self, ops: list[Op], deadline: float, originals: dict[int, Op],
                 horizon: float | None = None, model: "_Register | _Group | None" = None) -> None:
        self.model = model or _Register(None)
        self.step = self.model.step
        self.ops = ops
        self.deadline = deadline
        self.horizon = horizon
        self.latest_invoke = float("-inf")   # of the ops linearized so far
        self.originals = originals
        required = [i for i, op in enumerate(ops) if not _is_optional(op)]
        self.head = _build_list(ops, required)
        self.remaining = len(required)
        self.hints = _revision_hints(ops)
        self.optional = sorted((i for i, op in enumerate(ops) if _is_optional(op)),
                               key=lambda i: ops[i].invoke)
        classes: dict[tuple, list[int]] = {}
        for slot, i in enumerate(self.optional):
            classes.setdefault(_effect(ops[i]), []).append(slot)
        self.class_slots = list(classes.values())
        self.cache = _Cache()
        self.state: State = self.model.initial
        self.required_bits = 0
        self.optional_bits = 0
        # Per linearized op: (node or optional slot, state before, its level, index in
        # the level's candidates, forced, latest_invoke before).  A level is
        # (candidates, blocker op).
        self.stack: list[tuple[_Node | int, State, tuple, int, bool, float]] = []
        # The deepest point reached, captured (lazily: copying is O(depth)) on leaving it.
        self.best_depth = 0
        self.best: tuple[list[Op], State, Op | None] = ([], self.model.initial, None)

    def run(self) -> None:
        level: tuple | None = None
        pos = 0
        iterations = 0
        while self.remaining:
            iterations += 1
            if iterations % _CHECK_EVERY == 0 and time.monotonic() > self.deadline:
                if len(self.stack) >= len(self.best[0]):
                    self._capture(None)
                raise _Failure(self._explain(timed_out=True), timed_out=True)
            if level is None:
                level, forced = self._level()
                pos = 0
                if forced is not None:
                    if self._apply(forced, level, 0, forced=True):
                        level = None
                    else:
                        level, pos = self._backtrack(level)
                    continue
            if pos >= len(level[0]):
                level, pos = self._backtrack(level)
            elif self._apply(level[0][pos], level, pos, forced=False):
                level = None
            else:
                pos += 1

    def _level(self) -> tuple[tuple, _Node | None]:
        """This level's candidates (and blocker), or a forced move."""
        state = self.state
        before = self._before_optional()
        scored = []
        node = self.head.next
        while node.is_call:   # the list always ends with a return while any remain
            new_state = self.step(state, node.op)
            if (new_state == state and _only_observes(node.op)
                    and not self._expires_optional(node.op)):
                return ((), node.match.op), node
            if new_state is not None and not self._dominated(before, node.op, new_state):
                hint = self.hints.get(node.index) or (self.model.floor(state), 0)
                scored.append((hint, node.op.invoke, node.index, node))
            node = node.next
        blocker = node.op
        scored.sort(key=lambda s: s[:3])
        candidates: list[_Node | int] = [s[3] for s in scored]
        for slot in self._optional_candidates(blocker.complete):
            op = self.ops[self.optional[slot]]
            new_state = self.step(state, op)
            if new_state is not None and not self._dominated(before, op, new_state):
                candidates.append(slot)
        return (candidates, blocker), None

    def _optional_candidates(self, limit: float) -> list[int]:
        """Per class, the earliest unused, unexpired optional op invoked by ``limit``.

        Using the earliest one first is never worse: the others stay available
        at least as long (with a horizon, they expire later).
        """
        out = []
        for slots in self.class_slots:
            for slot in slots:
                op = self.ops[self.optional[slot]]
                if op.invoke > limit:
                    break
                if self.optional_bits >> slot & 1:
                    continue
                if self.horizon is not None and op.invoke + self.horizon < self.latest_invoke:
                    continue   # expired: an op invoked after its horizon is already linearized
                out.append(slot)
                break
        out.sort()
        return out

    def _expires_optional(self, op: Op) -> bool:
        """Whether linearizing ``op`` now would expire an unused optional op.

        A forced move must not: taking it early could then rule out orders
        where that optional op comes first.
        """
        if self.horizon is None or op.invoke <= self.latest_invoke:
            return False
        for slot, i in enumerate(self.optional):
            expiry = self.ops[i].invoke + self.horizon
            if self.latest_invoke <= expiry < op.invoke and not self.optional_bits >> slot & 1:
                return True
        return False

    def _before_optional(self) -> State | None:
        """The state before the last op, if that op was an optional one."""
        if self.stack and not isinstance(self.stack[-1][0], _Node):
            return self.stack[-1][1]
        return None

    def _dominated(self, before: State | None, op: Op, new_state: State) -> bool:
        """Whether ``op`` right after the last (optional) op is pointless.

        If ``op`` yields the same state without it, the sequence "optional,
        op" is dominated by "op" alone at the previous level (same candidates
        there, as an optional op lifts nothing), which uses one optional op less.
        """
        return before is not None and self.step(before, op) == new_state

    def _apply(self, entry: _Node | int, level: tuple, pos: int, forced: bool) -> bool:
        """Linearize ``entry`` next if the model and the cache allow it."""
        new_state = self.step(self.state, self._op_of(entry))
        if new_state is None:
            return False
        if isinstance(entry, _Node):
            required_bits, optional_bits = self.required_bits | (1 << entry.index), self.optional_bits
        else:
            required_bits, optional_bits = self.required_bits, self.optional_bits | (1 << entry)
        if not self.cache.add_if_new(required_bits, optional_bits, new_state):
            return False
        self.required_bits, self.optional_bits = required_bits, optional_bits
        if isinstance(entry, _Node):
            _lift(entry)
            self.remaining -= 1
        self.stack.append((entry, self.state, level, pos, forced, self.latest_invoke))
        self.state = new_state
        self.latest_invoke = max(self.latest_invoke, self._op_of(entry).invoke)
        self.best_depth = max(self.best_depth, len(self.stack))
        return True

    def _backtrack(self, failed_level: tuple) -> tuple[tuple, int]:
        """Undo linearized ops up to the last real choice; return its level and next index."""
        if len(self.stack) == self.best_depth and len(self.best[0]) < self.best_depth:
            self._capture(failed_level[1])
        while True:
            if not self.stack:
                raise _Failure(self._explain())
            entry, self.state, level, pos, forced, self.latest_invoke = self.stack.pop()
            if isinstance(entry, _Node):
                self.required_bits &= ~(1 << entry.index)
                _unlift(entry)
                self.remaining += 1
            else:
                self.optional_bits &= ~(1 << entry)
            if not forced:
                return level, pos + 1

    def _op_of(self, entry: _Node | int) -> Op:
        return entry.op if isinstance(entry, _Node) else self.ops[self.optional[entry]]

    def _capture(self, blocker: Op | None) -> None:
        self.best = ([self._op_of(e[0]) for e in self.stack], self.state, blocker)

    def _explain(self, timed_out: bool = False) -> str:
        def shown(op: Op | None) -> Op | None:
            return self.originals.get(id(op), op)
        prefix, state, blocker = self.best
        return _explain([shown(op) for op in self.ops], [shown(op) for op in prefix],
                        self.model.describe(state), shown(blocker), timed_out)


def _revision_hints(ops: list[Op]) -> dict[int, tuple[int, int]]:
    """Per op index, (revision, 0 for changes / 1 for reads): the order to try candidates in.

    Only a heuristic: the true order of a legal history follows revisions, so
    trying them in that order avoids most backtracking.
    """
    first_seen: dict[object, int] = {}
    for op in ops:
        for _, value, revision in _sightings(op):
            if value is not None and revision is not None:
                first_seen[value] = min(first_seen.get(value, revision), revision)
    hints = {}
    for i, op in enumerate(ops):
        if op.kind == "txn":
            revisions = ([op.result[1]] if op.status == "ok" and op.result[1] is not None else
                         [first_seen[v] for _, v in _writes(op) if v in first_seen])
            if revisions:
                hints[i] = (min(revisions), 0 if _writes(op) else 1)
        elif isinstance(op.result, tuple):
            if op.result[0] is not None and op.result[1] is not None:
                hints[i] = (op.result[1], 1)
        elif isinstance(op.result, int):
            hints[i] = (op.result, 0)
        elif op.kind in ("write", "cas") and op.value in first_seen:
            hints[i] = (first_seen[op.value], 0)
    return hints


def _effect(op: Op) -> tuple:
    """What an optional op does when linearized; equal tuples mean interchangeable ops."""
    return (op.kind, op.key, op.value, op.expected, op.parts)


def _search(ops: list[Op], deadline: float, originals: dict[int, Op],
            horizon: float | None, model: "_Register | _Group | None" = None) -> None:
    """Raise _Failure unless ``ops`` (of the model's keys) have a linearization."""
    _Search(ops, deadline, originals, horizon, model).run()


def _explain(ops: list[Op], prefix: list[Op], state: str, blocker: Op | None,
             timed_out: bool = False) -> str:
    origin = min(op.invoke for op in ops)
    required = sum(1 for op in ops if not _is_optional(op))
    head = ("search timed out (verdict unknown); " if timed_out else "not linearizable; ")
    lines = [head + f"longest linearizable prefix: {len(prefix)} ops "
             f"({required} must be linearized, {len(ops)} considered)", state]
    if prefix:
        lines.append("last linearized:")
        lines += ["  " + op.describe(origin) for op in prefix[-_EXPLAIN_LAST:]]
    if blocker is not None:
        lines.append("cannot be linearized before it returns:")
        lines.append("  " + blocker.describe(origin))
        done = {id(op) for op in prefix}
        rivals = [op for op in ops if id(op) not in done and op is not blocker
                  and op.invoke <= (blocker.complete or 0.0)
                  and (op.complete is None or _is_optional(op) or op.complete >= blocker.invoke)]
        if rivals:
            lines.append("concurrent ops not yet linearized:")
            lines += ["  " + op.describe(origin) for op in rivals[:_EXPLAIN_LAST]]
    return "\n".join(lines)


def _one_key(ops: Iterable[Op]) -> tuple[str | None, list[Op]]:
    ops = list(ops)
    for op in ops:
        if not isinstance(op, Op):
            raise CheckError(f"not an Op: {op!r}")
    keys = {op.key for op in ops}
    if len(keys) > 1:
        raise CheckError(f"check_register takes ops of one key, got {sorted(keys)[:5]}")
    return (keys.pop() if keys else None), ops


def _phantom_read(ops: list[Op]) -> Op | None:
    """An op reporting a value no op could have written to its key (fails fast, clear message)."""
    written = {pair for op in ops if op.status in ("ok", "unknown", "pending") for pair in _writes(op)}
    for op in ops:
        if any(value is not None and (key, value) not in written for key, value, _ in _sightings(op)):
            return op
    return None


def check_register(ops: list[Op], *, timeout: float = 30.0,
                   unknown_horizon: float | None = None) -> CheckResult:
    """Check that the ops of one key are linearizable as a register.

    ``unknown_horizon``: if set, an unknown op may only take effect within that
    many seconds of its invoke (or never).  None (the default) is always sound;
    a horizon makes refuting histories with many unknown ops much cheaper, but
    is only right if the system really cannot apply a request later than that.
    """
    key, ops = _one_key(ops)
    return _check(ops, key, _Register(key), timeout, unknown_horizon)


def check_group(ops: list[Op], *, timeout: float = 30.0,
                unknown_horizon: float | None = None) -> CheckResult:
    """Check ops over several keys (transactions among them) as one object: the keys' registers."""
    ops = list(ops)
    for op in ops:
        if not isinstance(op, Op):
            raise CheckError(f"not an Op: {op!r}")
    keys = sorted({key for op in ops for key in op.keys()})
    label = "+".join(keys) if keys else None
    return _check(ops, label, _Group(keys), timeout, unknown_horizon)


def _check(ops: list[Op], label: str | None, model: "_Register | _Group", timeout: float,
           unknown_horizon: float | None) -> CheckResult:
    what = f"key {label!r}" if isinstance(model, _Register) else f"keys {model.label}"
    ops = [op for op in ops if _is_relevant(op)]
    phantom = _phantom_read(ops)
    if phantom is not None:
        origin = min(op.invoke for op in ops)
        return CheckResult(False, label, f"{what}: not linearizable; this op saw a value "
                           f"never written:\n  {phantom.describe(origin)}")
    ops, originals = _require_observed(ops, unknown_horizon)
    ops = _forget_unseen_values(ops, originals)
    if not any(not _is_optional(op) for op in ops):
        return CheckResult(True, label, f"{len(ops)} ops, nothing to check")
    try:
        _search(ops, time.monotonic() + timeout, originals, unknown_horizon, model)
    except _Failure as failure:
        return CheckResult(False, label, f"{what}: {failure.explanation}", failure.timed_out)
    return CheckResult(True, label, f"{len(ops)} ops linearizable")


def key_groups(ops: Iterable[Op]) -> list[list[Op]]:
    """The ops split by keys connected through transactions (union-find), each group in op order.

    Linearizability is compositional per object; a transaction makes its keys one object.
    """
    parent: dict[str, str] = {}

    def root(key: str) -> str:
        while parent.setdefault(key, key) != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    ops = list(ops)
    for op in ops:
        first, *rest = op.keys()
        for key in rest:
            parent[root(key)] = root(first)
    groups: dict[str, list[Op]] = {}
    for op in ops:
        groups.setdefault(root(op.keys()[0]), []).append(op)
    return [groups[k] for k in sorted(groups, key=lambda k: min(op.keys()[0] for op in groups[k]))]


def check_history(history: History, *, timeout_per_key: float = 30.0,
                  unknown_horizon: float | None = None) -> CheckResult:
    """Check every key (or group of keys joined by transactions) of ``history``; the first failure wins."""
    total = 0
    groups = key_groups(history.ops())
    for ops in groups:
        single = {key for op in ops for key in op.keys()}
        check = check_register if len(single) == 1 and all(op.kind != "txn" for op in ops) else check_group
        result = check(ops, timeout=timeout_per_key, unknown_horizon=unknown_horizon)
        if not result.ok:
            return result
        total += len(ops)
    return CheckResult(True, None, f"{len(groups)} keys or groups of keys, {total} ops linearizable")

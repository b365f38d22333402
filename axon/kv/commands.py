"""Client commands carried in NORMAL Raft entries: types, wire encoding, semantics.

One NORMAL entry carries a batch of commands (many client writes share one
entry).  Everything here is pure: the store supplies a key's current state
and writes whatever :func:`evaluate` decides.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import msgpack

# Wire tags; part of the replicated log format, so never renumber them.
_PUT = 0
_DELETE = 1
_AUTH_ENABLE = 2
_TOKEN_ADD = 3
_TOKEN_REVOKE = 4
_TXN = 5
_TXN_GET = 6
_LEASE_GRANT = 7
_LEASE_REVOKE = 8
ROLES = ("read", "write", "admin")
COMPARE_TARGETS = ("revision", "value", "exists")
COMPARE_OPS = ("==", "!=", "<", ">")


RawWrite = tuple[str, "str | None"]   # (key, value); value None: the key is deleted


class CommandError(ValueError):
    """Commands that cannot be encoded or data that is not a valid command batch."""


# Put, Delete and Result are made several times for every write (the api, each node's apply),
# so they are not frozen: a frozen dataclass's __init__ costs about three times as much.
# Treat them as values all the same: nothing changes one after it is made.
@dataclass(slots=True)
class Put:
    key: str
    value: str
    if_revision: int | None = None   # 0 means "must not exist"
    if_absent: bool = False
    lease: int = 0                   # the lease the key is attached to (axon/kv/leases.py); 0: none


@dataclass(slots=True)
class Delete:
    key: str
    if_revision: int | None = None


@dataclass(frozen=True, slots=True)
class AuthEnable:
    """Turn auth on with a root (admin, prefix "") token; refused when auth is on already."""
    root_hash: str


@dataclass(frozen=True, slots=True)
class TokenAdd:
    """A named token: only its SHA-256 hash is replicated, never the secret."""
    name: str
    token_hash: str
    role: str
    prefix: str


@dataclass(frozen=True, slots=True)
class TokenRevoke:
    name: str


@dataclass(frozen=True, slots=True)
class Compare:
    """A condition on a key: its ``revision`` (0 when absent), ``value`` or ``exists``."""
    key: str
    target: str          # one of COMPARE_TARGETS
    op: str              # one of COMPARE_OPS ("exists" takes == and != only)
    operand: int | str | bool


@dataclass(frozen=True, slots=True)
class TxnGet:
    """A read inside a transaction: the key as the transaction's earlier operations left it."""
    key: str


TxnOp = Put | Delete | TxnGet


@dataclass(frozen=True, slots=True)
class Txn:
    """If every compare holds, the ``success`` operations, else the ``failure`` ones: one entry, atomic.

    Its puts and deletes are unconditional (the compares are the conditions).
    """
    compares: tuple[Compare, ...]
    success: tuple[TxnOp, ...]
    failure: tuple[TxnOp, ...]


@dataclass(frozen=True, slots=True)
class LeaseGrant:
    """A new lease (its id chosen by the leader's api, refused if taken) of ``ttl`` seconds."""
    lease_id: int
    ttl: int


@dataclass(frozen=True, slots=True)
class LeaseRevoke:
    """End a lease and delete every key attached to it, all at this entry's revision.

    ``within``: the revocation holds only if every attached key starts with it when the entry
    is applied (the prefix a token may write under; None for no such condition).  The API
    checks the keys when it proposes; a key attached in between must not slip through.
    """
    lease_id: int
    expired: bool = False   # proposed by the leader's expiry duty, not by a client
    within: str | None = None


AuthCommand = AuthEnable | TokenAdd | TokenRevoke
LeaseCommand = LeaseGrant | LeaseRevoke
Command = Put | Delete | AuthEnable | TokenAdd | TokenRevoke | Txn | LeaseGrant | LeaseRevoke


@dataclass(slots=True)
class Result:   # not frozen: see Put
    ok: bool
    key: str
    value: str | None = None   # new value on put, previous value on delete, current value on a failed CAS
    revision: int = 0          # new revision on ok put/delete; current revision on conflict; 0 when absent
    error: str | None = None   # None | "conflict" | "not_found"


@dataclass(frozen=True, slots=True)
class TxnResult:
    """Whether the compares held, the revision (entry index) it ran at, one Result per operation."""
    succeeded: bool
    revision: int
    results: tuple[Result, ...]
    ok: bool = True      # refused as a whole only when a put names a lease it cannot take
    error: str | None = None


def command_size(cmd: Command) -> int:
    """Roughly the bytes a command takes in an entry (characters, not encoded bytes: cheap)."""
    if isinstance(cmd, Put):
        return len(cmd.key) + len(cmd.value)
    if isinstance(cmd, Delete):
        return len(cmd.key)
    if isinstance(cmd, Txn):
        return sum(len(c.key) + len(str(c.operand)) for c in cmd.compares) + \
            sum(command_size(op) if not isinstance(op, TxnGet) else len(op.key)
                for op in cmd.success + cmd.failure)
    return 128


def encode_commands(cmds: Sequence[Command]) -> bytes:
    """Commands -> compact msgpack; raises CommandError for anything not encodable."""
    rows = [_command_to_row(cmd) for cmd in cmds]
    try:
        return msgpack.packb(rows, use_bin_type=True)
    except (ValueError, TypeError, OverflowError) as exc:   # e.g. a lone surrogate in a key
        raise CommandError(f"cannot encode commands: {exc}") from exc


def decode_commands(data: bytes) -> list[Command]:
    """Inverse of encode_commands; raises CommandError on anything malformed."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CommandError(f"command data must be bytes, not {type(data).__name__}")
    try:
        rows = msgpack.unpackb(bytes(data), raw=False, use_list=True, strict_map_key=True)
    except Exception as exc:   # msgpack raises a zoo of types (ExtraData, StackError, UnicodeDecodeError...)
        raise CommandError(f"command data is not valid msgpack: {exc}") from exc
    if not isinstance(rows, list):
        raise CommandError("command data must be a list of commands")
    return [_row_to_command(row, position) for position, row in enumerate(rows)]


def evaluate(cmd: Command, current: tuple[str, int] | None, index: int) -> Result:
    """Decide a command's outcome given the key's current (value, revision) and the entry index.

    When the result is ok, a Put sets the key to (cmd.value, index) and a Delete
    removes it; a failed result changes nothing.
    """
    if isinstance(cmd, Put):
        return _evaluate_put(cmd, current, index)
    if isinstance(cmd, Delete):
        return _evaluate_delete(cmd, current, index)
    raise CommandError(f"not a command: {type(cmd).__name__}")


def reads_current(cmd: Command) -> bool:
    """Whether evaluate() needs the key's current state (an unconditional Put does not)."""
    return not (isinstance(cmd, Put) and cmd.if_revision is None and not cmd.if_absent)


def is_auth(cmd: Command) -> bool:
    return isinstance(cmd, (AuthEnable, TokenAdd, TokenRevoke))


def is_lease(cmd: Command) -> bool:
    return isinstance(cmd, (LeaseGrant, LeaseRevoke))


Current = Callable[[str], "tuple[str, int] | None"]   # a key's (value, revision) as the batch stands


def evaluate_txn(txn: Txn, current: Current, index: int) -> tuple[TxnResult, list[RawWrite]]:
    """A transaction's outcome and the writes it makes, in order ((key, value); value None: delete).

    ``current`` gives a key's state before the transaction; its own operations see each other.
    """
    succeeded = all(compare_holds(c, current(c.key)) for c in txn.compares)
    view: dict[str, tuple[str, int] | None] = {}
    results: list[Result] = []
    writes: list[RawWrite] = []
    for op in txn.success if succeeded else txn.failure:
        state = view[op.key] if op.key in view else current(op.key)
        if isinstance(op, TxnGet):
            results.append(Result(ok=True, key=op.key, value=state[0], revision=state[1]) if state is not None
                           else Result(ok=False, key=op.key, error="not_found"))
        elif isinstance(op, Put):
            view[op.key] = (op.value, index)
            writes.append((op.key, op.value))
            results.append(Result(ok=True, key=op.key, value=op.value, revision=index))
        elif state is None:
            results.append(Result(ok=False, key=op.key, error="not_found"))
        else:
            view[op.key] = None
            writes.append((op.key, None))
            results.append(Result(ok=True, key=op.key, value=state[0], revision=index))
    return TxnResult(succeeded, index, tuple(results)), writes


def compare_holds(compare: Compare, state: tuple[str, int] | None) -> bool:
    """Whether ``compare`` holds for a key in ``state``; a value compare on a missing key never does."""
    if compare.target == "exists":
        mine, theirs = state is not None, compare.operand
    elif compare.target == "revision":
        mine, theirs = (state[1] if state is not None else 0), compare.operand
    elif state is None:
        return False
    else:
        mine, theirs = state[0], compare.operand
    if compare.op == "==":
        return mine == theirs
    if compare.op == "!=":
        return mine != theirs
    if compare.op == "<":
        return mine < theirs      # type: ignore[operator]  # validated: both int or both str
    return mine > theirs          # type: ignore[operator]


def _evaluate_put(cmd: Put, current: tuple[str, int] | None, index: int) -> Result:
    if _put_precondition_holds(cmd, current):
        return Result(True, cmd.key, cmd.value, index)
    return _conflict(cmd.key, current)


def _put_precondition_holds(cmd: Put, current: tuple[str, int] | None) -> bool:
    current_revision = current[1] if current is not None else 0
    if cmd.if_absent and current is not None:
        return False
    if cmd.if_revision is not None and cmd.if_revision != current_revision:
        return False
    return True


def _evaluate_delete(cmd: Delete, current: tuple[str, int] | None, index: int) -> Result:
    current_revision = current[1] if current is not None else 0
    if cmd.if_revision is not None and cmd.if_revision != current_revision:
        return _conflict(cmd.key, current)
    if current is None:
        return Result(ok=False, key=cmd.key, error="not_found")
    return Result(ok=True, key=cmd.key, value=current[0], revision=index)


def _conflict(key: str, current: tuple[str, int] | None) -> Result:
    if current is None:
        return Result(ok=False, key=key, error="conflict")
    return Result(ok=False, key=key, value=current[0], revision=current[1], error="conflict")


def _command_to_row(cmd: Any) -> list:
    if isinstance(cmd, Put):
        _check_str("key", cmd.key)
        _check_str("value", cmd.value)
        _check_revision(cmd.if_revision)
        if not isinstance(cmd.if_absent, bool):
            raise CommandError("if_absent must be a bool")
        if cmd.lease:   # a put without a lease keeps the shorter row entries always had
            _check_lease(cmd.lease)
            return [_PUT, cmd.key, cmd.value, cmd.if_revision, cmd.if_absent, cmd.lease]
        return [_PUT, cmd.key, cmd.value, cmd.if_revision, cmd.if_absent]
    if isinstance(cmd, Delete):
        _check_str("key", cmd.key)
        _check_revision(cmd.if_revision)
        return [_DELETE, cmd.key, cmd.if_revision]
    if isinstance(cmd, AuthEnable):
        _check_str("root_hash", cmd.root_hash)
        return [_AUTH_ENABLE, cmd.root_hash]
    if isinstance(cmd, TokenAdd):
        for name in ("name", "token_hash", "role", "prefix"):
            _check_str(name, getattr(cmd, name))
        return [_TOKEN_ADD, cmd.name, cmd.token_hash, cmd.role, cmd.prefix]
    if isinstance(cmd, TokenRevoke):
        _check_str("name", cmd.name)
        return [_TOKEN_REVOKE, cmd.name]
    if isinstance(cmd, Txn):
        return [_TXN, [_compare_to_row(c) for c in cmd.compares],
                [_txn_op_to_row(op) for op in cmd.success], [_txn_op_to_row(op) for op in cmd.failure]]
    if isinstance(cmd, LeaseGrant):
        _check_lease(cmd.lease_id)
        _check_ttl(cmd.ttl)
        return [_LEASE_GRANT, cmd.lease_id, cmd.ttl]
    if isinstance(cmd, LeaseRevoke):
        _check_lease(cmd.lease_id)
        if not isinstance(cmd.expired, bool):
            raise CommandError("expired must be a bool")
        if cmd.within is None:
            return [_LEASE_REVOKE, cmd.lease_id, cmd.expired]
        _check_str("within", cmd.within)
        return [_LEASE_REVOKE, cmd.lease_id, cmd.expired, cmd.within]
    raise CommandError(f"not a command: {type(cmd).__name__}")


def _compare_to_row(compare: Any) -> list:
    if not isinstance(compare, Compare):
        raise CommandError(f"not a compare: {type(compare).__name__}")
    _check_compare(compare.key, compare.target, compare.op, compare.operand)
    return [compare.key, compare.target, compare.op, compare.operand]


def _txn_op_to_row(op: Any) -> list:
    if isinstance(op, TxnGet):
        _check_str("key", op.key)
        return [_TXN_GET, op.key]
    if isinstance(op, (Put, Delete)) and op.if_revision is None and not getattr(op, "if_absent", False):
        return _command_to_row(op)
    raise CommandError(f"not a transaction operation: {op!r}")


def _check_compare(key: Any, target: Any, op: Any, operand: Any) -> None:
    _check_str("compare key", key)
    if target not in COMPARE_TARGETS or op not in COMPARE_OPS:
        raise CommandError(f"bad compare {target!r} {op!r}")
    wanted = {"revision": int, "value": str, "exists": bool}[target]
    if type(operand) is not wanted or (target == "exists" and op not in ("==", "!=")):
        raise CommandError(f"bad compare operand {operand!r} for {target} {op}")


def _txn_from_row(row: list) -> Txn:
    _, compares, success, failure = row
    if not all(isinstance(part, list) for part in (compares, success, failure)):
        raise CommandError("a transaction's parts must be lists")
    parsed = []
    for c in compares:
        if not isinstance(c, list) or len(c) != 4:
            raise CommandError("a compare must be [key, target, op, operand]")
        _check_compare(*c)
        parsed.append(Compare(*c))
    return Txn(tuple(parsed), tuple(_txn_op_from_row(op) for op in success),
               tuple(_txn_op_from_row(op) for op in failure))


def _txn_op_from_row(row: Any) -> TxnOp:
    if isinstance(row, list) and len(row) == 2 and row[0] == _TXN_GET and type(row[0]) is int:
        _check_str("key", row[1])
        return TxnGet(row[1])
    op = _row_to_command(row, 0)
    if not isinstance(op, (Put, Delete)) or op.if_revision is not None or getattr(op, "if_absent", False):
        raise CommandError("a transaction operation must be an unconditional put, a delete or a get")
    return op


def _row_to_command(row: Any, position: int) -> Command:
    if not isinstance(row, list) or not row:
        raise CommandError(f"command {position} is not a non-empty list")
    tag = row[0]
    try:
        if tag == _PUT and type(tag) is int and len(row) in (5, 6):
            return _command_from_put_row(row)
        if tag == _DELETE and type(tag) is int and len(row) == 3:
            _check_str("key", row[1])
            _check_revision(row[2])
            return Delete(key=row[1], if_revision=row[2])
        if type(tag) is int and tag in _AUTH_ARITY and len(row) == _AUTH_ARITY[tag]:
            return _auth_command(row)
        if tag == _TXN and type(tag) is int and len(row) == 4:
            return _txn_from_row(row)
        if type(tag) is int and (tag, len(row)) in ((_LEASE_GRANT, 3), (_LEASE_REVOKE, 3), (_LEASE_REVOKE, 4)):
            return _lease_command(row)
    except CommandError as exc:
        raise CommandError(f"command {position}: {exc}") from None
    raise CommandError(f"command {position} has an unknown tag or wrong arity")


# Auth rows: [tag, str fields...]; their tags come after Put/Delete so old entries decode as before.
_AUTH_ARITY = {_AUTH_ENABLE: 2, _TOKEN_ADD: 5, _TOKEN_REVOKE: 2}


def _auth_command(row: list) -> AuthCommand:
    for field in row[1:]:
        _check_str("field", field)
    if row[0] == _AUTH_ENABLE:
        return AuthEnable(row[1])
    if row[0] == _TOKEN_ADD:
        if row[3] not in ROLES:
            raise CommandError(f"unknown role {row[3]!r}")
        return TokenAdd(*row[1:])
    return TokenRevoke(row[1])


def _command_from_put_row(row: list) -> Put:
    # every node decodes every put: the usual row (str, str, None, bool) is checked inline
    key, value, if_revision, if_absent = row[1], row[2], row[3], row[4]
    if not (isinstance(key, str) and isinstance(value, str)):
        _check_str("key", key)
        _check_str("value", value)
    if if_revision is not None:
        _check_revision(if_revision)
    if not isinstance(if_absent, bool):
        raise CommandError("if_absent must be a bool")
    if len(row) == 6:
        _check_lease(row[5])
        return Put(key, value, if_revision, if_absent, row[5])
    return Put(key, value, if_revision, if_absent)


def _lease_command(row: list) -> LeaseCommand:
    _check_lease(row[1])
    if row[0] == _LEASE_GRANT:
        _check_ttl(row[2])
        return LeaseGrant(row[1], row[2])
    if not isinstance(row[2], bool):
        raise CommandError("expired must be a bool")
    if len(row) == 4:
        _check_str("within", row[3])
        return LeaseRevoke(row[1], row[2], row[3])
    return LeaseRevoke(row[1], row[2])


def _check_lease(value: Any) -> None:
    if type(value) is not int or not 0 < value < 1 << 63:
        raise CommandError(f"a lease id must be an int > 0, not {value!r}")


def _check_ttl(value: Any) -> None:
    if type(value) is not int or not 0 < value < 1 << 31:
        raise CommandError(f"a lease ttl must be an int > 0, not {value!r}")


def _check_str(name: str, value: Any) -> None:
    if not isinstance(value, str):
        raise CommandError(f"{name} must be a string, not {type(value).__name__}")


def _check_revision(value: Any) -> None:
    if value is None:
        return
    # bool is an int subclass; a revision of True is a bug, not a revision.
    if type(value) is not int or value < 0:
        raise CommandError(f"if_revision must be None or an int >= 0, not {value!r}")

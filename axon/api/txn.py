"""Transactions: the JSON a client sends, checked and turned into one ``Txn`` command, and its answer.

    {"compare": [{"key": "a", "revision": 7}, {"key": "b", "exists": false, "op": "=="},
                 {"key": "c", "value": "x", "op": "!="}],
     "success": [{"op": "put", "key": "a", "value": "1", "lease": 7}, {"op": "delete", "key": "b"},
                 {"op": "get", "key": "c"}],
     "failure": [{"op": "get", "key": "a"}]}

A compare names its target by the field it carries (``revision``, ``value`` or ``exists``)
and defaults to ``"op": "=="``; ``<`` and ``>`` order revisions as numbers and values as
strings; a value compare on a missing key never holds.  The chosen branch's operations run
in order in one Raft entry, each seeing the ones before it.  A put may name the lease its key
is attached to (axon/api/leases.py); a lease that does not exist refuses the whole transaction.  Limits: MAX_TXN_OPS compares
and as many operations per branch, each key and value within the node's limits, and a key
written at most once per branch (its change would otherwise appear twice at one revision).
"""
from __future__ import annotations

from axon.api import validate
from axon.api.errors import InvalidInput, TooLarge
from axon.api.leases import parse_lease_id
from axon.kv.commands import (COMPARE_OPS, Compare, Delete, Put, Result, Txn, TxnGet, TxnOp,
                              TxnResult)

MAX_TXN_OPS = 128
_TARGETS = {"revision": int, "value": str, "exists": bool}


def parse_txn(body: bytes, max_key_bytes: int, max_value_bytes: int) -> Txn:
    """The transaction a request body describes; InvalidInput or TooLarge when it is not one."""
    data = validate.json_object(body, validate.request_body_limit(max_value_bytes))
    unknown = set(data) - {"compare", "success", "failure"}
    if unknown:
        raise InvalidInput(f"unknown field(s) in a transaction: {', '.join(sorted(unknown))}")
    compares = tuple(_compare(c, max_key_bytes) for c in _list(data, "compare"))
    success = _branch(_list(data, "success"), "success", max_key_bytes, max_value_bytes)
    failure = _branch(_list(data, "failure"), "failure", max_key_bytes, max_value_bytes)
    return Txn(compares, success, failure)


def txn_keys(txn: Txn) -> tuple[list[str], list[str]]:
    """(keys it reads: compares and gets, keys it writes: puts and deletes), for the auth decision."""
    reads = [c.key for c in txn.compares]
    writes = []
    for op in txn.success + txn.failure:
        (reads if isinstance(op, TxnGet) else writes).append(op.key)
    return reads, writes


def txn_reply(result: TxnResult, txn: Txn) -> dict:
    """``{"succeeded", "revision", "results"}``: one result per operation of the branch that ran."""
    ops = txn.success if result.succeeded else txn.failure
    return {"succeeded": result.succeeded, "revision": result.revision,
            "results": [_op_result(op, r) for op, r in zip(ops, result.results)]}


def _op_result(op: TxnOp, result: Result) -> dict:
    if isinstance(op, TxnGet):
        if not result.ok:
            return {"op": "get", "key": op.key, "value": None, "revision": 0}
        return {"op": "get", "key": op.key, "value": result.value, "revision": result.revision}
    if isinstance(op, Put):
        return {"op": "put", "key": op.key, "revision": result.revision}
    if not result.ok:
        return {"op": "delete", "key": op.key, "deleted": False}
    return {"op": "delete", "key": op.key, "deleted": True, "revision": result.revision}


def _list(data: dict, name: str) -> list:
    value = data.get(name, [])
    if not isinstance(value, list):
        raise InvalidInput(f'"{name}" must be a list')
    if len(value) > MAX_TXN_OPS:
        raise TooLarge(f'"{name}" has {len(value)} entries; at most {MAX_TXN_OPS}')
    return value


def _compare(item: object, max_key_bytes: int) -> Compare:
    if not isinstance(item, dict):
        raise InvalidInput("each compare must be an object")
    key = validate.key(_str(item, "key", "compare"), max_key_bytes)
    targets = [t for t in _TARGETS if t in item]
    if len(targets) != 1:
        raise InvalidInput('a compare names exactly one of "revision", "value" and "exists"')
    if set(item) - {"key", "op", targets[0]}:
        raise InvalidInput(f"unknown field(s) in a compare: {', '.join(sorted(set(item) - {'key', 'op', targets[0]}))}")
    target = targets[0]
    op = item.get("op", "==")
    if op not in COMPARE_OPS or (target == "exists" and op not in ("==", "!=")):
        allowed = "== and !=" if target == "exists" else ", ".join(COMPARE_OPS)
        raise InvalidInput(f"a compare on {target} takes {allowed}")
    operand = item[target]
    if type(operand) is not _TARGETS[target] or (target == "revision" and not 0 <= operand < 1 << 63):
        raise InvalidInput(f'"{target}" of a compare must be {_describe(target)}')
    if target == "value":
        _utf8(operand, "a compared value")
    return Compare(key, target, op, operand)


def _branch(items: list, name: str, max_key_bytes: int, max_value_bytes: int) -> tuple[TxnOp, ...]:
    ops = tuple(_op(item, max_key_bytes, max_value_bytes) for item in items)
    written = [op.key for op in ops if not isinstance(op, TxnGet)]
    if len(written) != len(set(written)):
        raise InvalidInput(f'"{name}" writes a key more than once')
    return ops


def _op(item: object, max_key_bytes: int, max_value_bytes: int) -> TxnOp:
    if not isinstance(item, dict):
        raise InvalidInput("each operation must be an object")
    kind = item.get("op")
    if not isinstance(kind, str):   # e.g. {}: unhashable, it would fail the lookup below with a TypeError
        raise InvalidInput('"op" of an operation must be "put", "delete" or "get"')
    key = validate.key(_str(item, "key", "operation"), max_key_bytes)
    allowed = {"put": {"op", "key", "value", "lease"}, "delete": {"op", "key"}, "get": {"op", "key"}}.get(kind)
    if allowed is None:
        raise InvalidInput('"op" of an operation must be "put", "delete" or "get"')
    if set(item) - allowed:
        raise InvalidInput(f"unknown field(s) in a {kind}: {', '.join(sorted(set(item) - allowed))}")
    if kind == "get":
        return TxnGet(key)
    if kind == "delete":
        return Delete(key)
    value = item.get("value")
    if not isinstance(value, str):
        raise InvalidInput('"value" of a put must be a string')
    if len(value.encode("utf-8", "surrogatepass")) > max_value_bytes:
        raise TooLarge(f"value is larger than {max_value_bytes} bytes")
    _utf8(value, '"value"')
    lease = item.get("lease")
    if lease is not None and type(lease) is not int:
        raise InvalidInput('"lease" of a put must be a lease id (a number)')
    return Put(key, value, lease=0 if lease is None else parse_lease_id(str(lease)))


def _str(item: dict, name: str, what: str) -> str:
    value = item.get(name)
    if not isinstance(value, str):
        raise InvalidInput(f'"{name}" of each {what} must be a string')
    return value


def _utf8(text: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"{what} is not valid UTF-8") from None


def _describe(target: str) -> str:
    return {"revision": "a revision number", "value": "a string", "exists": "true or false"}[target]

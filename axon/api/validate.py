"""Pure request validation: raw HTTP pieces in, typed values out, BadRequest otherwise."""
from __future__ import annotations

import json

from axon.api.errors import BadRequest, PayloadTooLarge

MAX_LIST_LIMIT = 1000


def key(raw: str, max_bytes: int) -> str:
    if not raw:
        raise BadRequest("key must not be empty")
    if len(raw.encode("utf-8", "surrogatepass")) > max_bytes:
        raise BadRequest(f"key is longer than {max_bytes} bytes")
    if "\x00" in raw:
        raise BadRequest("key must not contain NUL")
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest("key is not valid UTF-8") from None
    return raw


def json_object(body: bytes, max_bytes: int) -> dict:
    if len(body) > max_bytes:
        raise PayloadTooLarge(f"request body is larger than {max_bytes} bytes")
    if not body:
        raise BadRequest("request body must be a JSON object")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object")
    return data


def put_value(body: bytes, max_value_bytes: int) -> str:
    # JSON escaping can at most ~6x a value; the exact limit is checked on the decoded value.
    data = json_object(body, max_value_bytes * 6 + 1024)
    if "value" not in data:
        raise BadRequest('missing "value"')
    value = data["value"]
    if not isinstance(value, str):
        raise BadRequest('"value" must be a string')
    if len(value.encode("utf-8", "surrogatepass")) > max_value_bytes:
        raise PayloadTooLarge(f"value is larger than {max_value_bytes} bytes")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest('"value" is not valid UTF-8') from None
    return value


def if_match(header: str | None) -> int | None:
    """'If-Match: <revision>' (quotes allowed, as for ETags) -> revision."""
    if header is None:
        return None
    text = header.strip().strip('"')
    if not text.isdigit() or len(text) > 19:
        raise BadRequest("If-Match must be a revision number")
    return int(text)


def if_none_match(header: str | None) -> bool:
    if header is None:
        return False
    if header.strip() != "*":
        raise BadRequest('If-None-Match supports only "*"')
    return True


def boolean(raw: str | None, name: str) -> bool:
    if raw is None or raw == "":
        return False
    low = raw.lower()
    if low in ("true", "1", "yes"):
        return True
    if low in ("false", "0", "no"):
        return False
    raise BadRequest(f"{name} must be true or false")


def limit(raw: str | None, default: int = 100) -> int:
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIST_LIMIT:
        raise BadRequest(f"limit must be a number from 1 to {MAX_LIST_LIMIT}")
    return int(raw)


def member(data: dict) -> tuple[str, str, str, str]:
    """A join request's {"node_id","raft","http"[,"gossip"]} -> validated tuple."""
    from axon.config import check_node_id, parse_addr
    from axon.config import ConfigError
    try:
        node_id = check_node_id(_text(data, "node_id"))
        raft = _text(data, "raft")
        http = _text(data, "http")
        parse_addr(raft, "raft address")
        parse_addr(http, "http address")
        gossip = data.get("gossip") or ""
        if gossip:
            parse_addr(_text(data, "gossip"), "gossip address")
    except ConfigError as exc:
        raise BadRequest(str(exc)) from None
    return node_id, raft, http, gossip


def _text(data: dict, name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise BadRequest(f'"{name}" must be a non-empty string')
    return value

"""Pure request validation: raw request pieces in, typed values out, InvalidInput otherwise."""
from __future__ import annotations

import re
from dataclasses import dataclass

from axon import jsontext
from axon.api.errors import InvalidInput, TooLarge
from axon.config import ConfigError, check_node_id, parse_addr

MAX_LIST_LIMIT = 1000
MAX_REVISION_DIGITS = 19          # a revision is a Raft index: it fits 63 bits
JOIN_BODY_LIMIT = 64 * 1024
_CLUSTER_ID = re.compile(r"[0-9a-f]{32}")   # 16 random bytes, lowercase hex (axon/node/cluster_id.py)


def request_body_limit(max_value_bytes: int) -> int:
    """The largest request body worth reading: a value JSON-escaped at worst (6 bytes a byte) plus slack."""
    return max_value_bytes * 6 + 4096


def ascii_digits(text: str) -> bool:
    """Whether ``text`` is a non-empty run of 0-9 (``str.isdigit`` also takes '¹' and other digits)."""
    return text.isascii() and text.isdigit()


def key(raw: str, max_bytes: int) -> str:
    if not raw:
        raise InvalidInput("key must not be empty")
    size, valid = _utf8_size(raw)
    if size > max_bytes:
        raise InvalidInput(f"key is longer than {max_bytes} bytes")
    if "\x00" in raw:
        raise InvalidInput("key must not contain NUL")
    if not valid:
        raise InvalidInput("key is not valid UTF-8")
    return raw


def _utf8_size(text: str) -> tuple[int, bool]:
    """The UTF-8 size of ``text`` and whether it encodes at all (a lone surrogate does not:
    its size is then counted as surrogatepass would); one encode on the usual, valid text."""
    try:
        return len(text.encode("utf-8")), True
    except UnicodeEncodeError:
        return len(text.encode("utf-8", "surrogatepass")), False


def json_object(body: bytes, max_bytes: int) -> dict:
    if len(body) > max_bytes:
        raise TooLarge(f"request body is larger than {max_bytes} bytes")
    if not body:
        raise InvalidInput("request body must be a JSON object")
    try:
        # UTF-8 only, as RFC 8259 8.1 asks of JSON between systems; decoding it ourselves
        # spares json.loads its encoding sniffing on every request
        data = jsontext.loads(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("request body is not valid JSON") from None
    except RecursionError:   # the decoder gives up on deep nesting; no body of ours nests
        raise InvalidInput("request body nests too deeply") from None
    if not isinstance(data, dict):
        raise InvalidInput("request body must be a JSON object")
    return data


def put_value(body: bytes, max_value_bytes: int) -> str:
    # The body limit allows for JSON escaping; the exact limit is checked on the decoded value.
    data = json_object(body, request_body_limit(max_value_bytes))
    if "value" not in data:
        raise InvalidInput('missing "value"')
    value = data["value"]
    if not isinstance(value, str):
        raise InvalidInput('"value" must be a string')
    size, valid = _utf8_size(value)
    if size > max_value_bytes:
        raise TooLarge(f"value is larger than {max_value_bytes} bytes")
    if not valid:
        raise InvalidInput('"value" is not valid UTF-8')
    return value


def if_match(header: str | None) -> int | None:
    """'If-Match: <revision>' (quotes allowed, as for ETags) -> revision."""
    if header is None:
        return None
    text = header.strip().strip('"')
    if not ascii_digits(text) or len(text) > MAX_REVISION_DIGITS:
        raise InvalidInput("If-Match must be a revision number")
    return int(text)


def if_none_match(header: str | None) -> bool:
    if header is None:
        return False
    if header.strip() != "*":
        raise InvalidInput('If-None-Match supports only "*"')
    return True


def boolean(raw: str | None, name: str) -> bool:
    if raw is None or raw == "":
        return False
    low = raw.lower()
    if low in ("true", "1", "yes"):
        return True
    if low in ("false", "0", "no"):
        return False
    raise InvalidInput(f"{name} must be true or false")


def limit(raw: str | None, default: int = 100) -> int:
    if raw is None or raw == "":
        return default
    # the length check first: int() of thousands of digits raises
    if not ascii_digits(raw) or len(raw) > len(str(MAX_LIST_LIMIT)) or not 1 <= int(raw) <= MAX_LIST_LIMIT:
        raise InvalidInput(f"limit must be a number from 1 to {MAX_LIST_LIMIT}")
    return int(raw)


@dataclass(frozen=True)
class JoinRequest:
    """Who asks to join: its id, where it listens, and the cluster it already belongs to (if any)."""
    node_id: str
    raft: str
    http: str
    gossip: str = ""
    cluster_id: str | None = None


def join_request(data: dict) -> JoinRequest:
    """A join body {"node_id","raft","http"[,"gossip"][,"cluster_id"]} -> JoinRequest.

    Every address goes through the one strict parser (ASCII port, no spaces or control
    characters): the leader and every dashboard poll will connect where these say.
    """
    try:
        node_id = check_node_id(_text(data, "node_id"))
        raft = _address(data, "raft")
        http = _address(data, "http")
        gossip = _address(data, "gossip") if data.get("gossip") not in (None, "") else ""
    except ConfigError as exc:
        raise InvalidInput(str(exc)) from None
    return JoinRequest(node_id, raft, http, gossip, cluster_id(data.get("cluster_id")))


def cluster_id(value: object) -> str | None:
    """A cluster id as a request carries it (absent: None); anything but 32 lowercase hex digits is refused."""
    if value is None:
        return None
    if not is_cluster_id(value):
        raise InvalidInput('"cluster_id" must be 32 lowercase hex digits')
    return str(value)


def is_cluster_id(value: object) -> bool:
    """Whether ``value`` has the form of a cluster id (as made by axon/node/cluster_id.py)."""
    return isinstance(value, str) and _CLUSTER_ID.fullmatch(value) is not None


def _address(data: dict, name: str) -> str:
    text = _text(data, name)
    parse_addr(text, f"{name} address")
    return text


def _text(data: dict, name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidInput(f'"{name}" must be a non-empty string')
    return value

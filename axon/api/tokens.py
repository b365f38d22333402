"""Auth administration: turning auth on, creating, listing and revoking tokens.

Every change is a replicated command (axon/kv/commands.py), so every node holds the same
auth state and decides the same way.  A token's secret is returned once, by the call that
made it, and exists afterwards only as its SHA-256 hash; it is never logged.
"""
from __future__ import annotations

import re
from typing import Callable, Protocol

from axon.api import validate
from axon.api.auth import new_token, token_hash
from axon.api.errors import ApiError, Conflict, InvalidInput, NotFound, NotLeader, Unavailable
from axon.kv.authstate import ROOT, AuthState
from axon.kv.commands import ROLES, AuthEnable, Command, Result, TokenAdd, TokenRevoke
from axon.raft.errors import NotLeader as RaftNotLeader, RaftError

_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
BODY_LIMIT = 4096


class Proposer(Protocol):
    @property
    def leader_id(self) -> str | None: ...
    def leader_http(self) -> str | None: ...
    def propose(self, items: list, timeout: float) -> list: ...


class TokenService:
    def __init__(self, node: Proposer, state: Callable[[], AuthState], timeout: float,
                 max_prefix_bytes: int = 1024) -> None:
        self.node = node
        self.state = state
        self.timeout = timeout
        self.max_prefix_bytes = max_prefix_bytes

    def enable(self) -> dict:
        """Turn auth on; the root token (admin on every key) is in the answer, and only there."""
        if self.state().enabled:
            raise Conflict("auth is already on")
        token = new_token()
        self._propose(AuthEnable(token_hash(token)), "auth is already on")
        return {"name": ROOT, "role": "admin", "prefix": "", "token": token}

    def create(self, body: bytes) -> dict:
        data = validate.json_object(body, BODY_LIMIT)
        name, role, prefix = data.get("name"), data.get("role"), data.get("prefix", "")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise InvalidInput("name must be 1-64 letters, digits, '_', '.' or '-'")
        if role not in ROLES:
            raise InvalidInput(f"role must be one of {', '.join(ROLES)}")
        if not isinstance(prefix, str) or len(prefix.encode("utf-8", "surrogatepass")) > self.max_prefix_bytes:
            raise InvalidInput("prefix must be a string no longer than a key")
        token = new_token()
        self._propose(TokenAdd(name, token_hash(token), role, prefix), f"a token named {name!r} exists")
        return {"name": name, "role": role, "prefix": prefix, "token": token}

    def list(self) -> dict:
        """Every token's name, role and prefix (never a secret nor a hash)."""
        grants = sorted(self.state().grants.values(), key=lambda g: g.name)
        return {"enabled": self.state().enabled,
                "tokens": [{"name": g.name, "role": g.role, "prefix": g.prefix} for g in grants]}

    def revoke(self, name: str) -> dict:
        self._propose(TokenRevoke(name), "")
        return {"name": name, "revoked": True}

    def _propose(self, cmd: Command, conflict: str) -> Result:
        try:
            [result] = self.node.propose([cmd], self.timeout)
        except RaftNotLeader as exc:
            raise NotLeader(exc.leader, exc.leader_http) from None
        except RaftError as exc:
            raise Unavailable(str(exc), leader=self.node.leader_id) from None
        if result.ok:
            return result
        if result.error == "not_found":
            raise NotFound(f"no token named {result.key!r}", name=result.key)
        if result.error == "conflict":
            raise Conflict(conflict)
        raise ApiError(f"auth command refused: {result.error}")

"""The replicated auth state: on or off, and each token's grant, keyed by the token's hash.

Pure and small: the store keeps it in memory (the hot path reads it with one attribute
and one dict lookup), writes it as one record beside the applied index and carries it in
snapshots.  Only SHA-256 hashes of tokens are held, never a secret.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from axon.kv.commands import ROLES, AuthCommand, AuthEnable, Result, TokenAdd, TokenRevoke

ROOT = "root"   # the name of the token AuthEnable carries


@dataclass(frozen=True, slots=True)
class Grant:
    """What a token may do: its role on the keys under its prefix."""
    name: str
    role: str
    prefix: str


@dataclass(frozen=True)
class AuthState:
    """Immutable: an applied auth command gives a new state, so readers never see half of one."""
    enabled: bool = False
    grants: dict[str, Grant] = field(default_factory=dict)   # token hash -> grant

    def hash_of(self, name: str) -> str | None:
        for token_hash, grant in self.grants.items():
            if grant.name == name:
                return token_hash
        return None

    def to_obj(self) -> dict:
        return {"enabled": self.enabled,
                "tokens": [[h, g.name, g.role, g.prefix] for h, g in sorted(self.grants.items())]}

    @classmethod
    def from_obj(cls, obj: Any) -> AuthState:
        """Inverse of to_obj; ValueError on anything malformed (None: auth off, no tokens)."""
        if obj is None:
            return cls()
        if not isinstance(obj, dict) or type(obj.get("enabled")) is not bool:
            raise ValueError("auth state is not {enabled, tokens}")
        grants = {}
        for row in obj.get("tokens", []):
            if (not isinstance(row, (list, tuple)) or len(row) != 4
                    or not all(isinstance(f, str) for f in row) or row[2] not in ROLES):
                raise ValueError(f"malformed token row {row!r}")
            grants[row[0]] = Grant(row[1], row[2], row[3])
        return cls(obj["enabled"], grants)


def apply_auth(state: AuthState, cmd: AuthCommand) -> tuple[AuthState, Result]:
    """The state after ``cmd`` and its result (a refused command leaves the state as it was)."""
    if isinstance(cmd, AuthEnable):
        if state.enabled:
            return state, Result(ok=False, key=ROOT, error="conflict")
        grants = {h: g for h, g in state.grants.items() if g.name != ROOT}
        grants[cmd.root_hash] = Grant(ROOT, "admin", "")
        return AuthState(True, grants), Result(ok=True, key=ROOT)
    if isinstance(cmd, TokenAdd):
        if state.hash_of(cmd.name) is not None or cmd.token_hash in state.grants:
            return state, Result(ok=False, key=cmd.name, error="conflict")
        grants = {**state.grants, cmd.token_hash: Grant(cmd.name, cmd.role, cmd.prefix)}
        return AuthState(state.enabled, grants), Result(ok=True, key=cmd.name)
    if isinstance(cmd, TokenRevoke):
        token_hash = state.hash_of(cmd.name)
        if token_hash is None:
            return state, Result(ok=False, key=cmd.name, error="not_found")
        grants = {h: g for h, g in state.grants.items() if h != token_hash}
        return AuthState(state.enabled, grants), Result(ok=True, key=cmd.name)
    raise TypeError(f"not an auth command: {type(cmd).__name__}")

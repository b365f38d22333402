"""Who may do what: tokens, roles and prefixes, decided by one pure function.

Tokens are ``axon_`` + 32 random bytes (urlsafe base64).  Only their SHA-256 hashes are
replicated and stored: a secret with 256 bits of entropy cannot be guessed from its hash, so
a fast hash is sound here (a slow, salted one protects low-entropy passwords, not keys),
and a lookup stays one hash and one dict access on the hot path.  Roles nest: ``read`` may
get, list and watch keys under its prefix; ``write`` also put and delete there; ``admin`` may do
everything (membership, auth, maintenance).  A token is never logged.

Every route declares a ``Decision``; ``authorize`` answers for it, given the auth state and
the principal (the grant of the request's token, or None), or raises TokenRequired (no or
an unknown token) / Forbidden (a known token, not allowed).
"""
from __future__ import annotations

import enum
import hashlib
import hmac
import secrets

from axon.api.errors import Forbidden, TokenRequired
from axon.kv.authstate import AuthState, Grant

TOKEN_PREFIX = "axon_"
_RANK = {"read": 1, "write": 2, "admin": 3}


class Decision(enum.Enum):
    """What a route needs when auth is on."""
    OPEN = "open"                    # anyone (health, readiness, the dashboard's files)
    ANY_TOKEN = "any-token"          # any valid token (status pages)
    READ_KEY = "read-key"            # read on the key in the path
    WRITE_KEY = "write-key"          # write on the key in the path
    LIST_PREFIX = "list-prefix"      # read on every key the listed prefix can hold
    WATCH = "watch"                  # read on the watched key, or on every key under the watched prefix
    TXN = "txn"                      # a token here; read or write on each key, decided with the body
    LEASE = "lease"                  # write (any prefix); keys a lease shows or deletes, decided with it
    ADMIN = "admin"                  # membership, auth, maintenance
    PEER_OR_ADMIN = "peer-or-admin"  # a peer's proof of the cluster key (checked by the api) or admin
    AUTH_ENABLE = "auth-enable"      # anyone while auth is off, admin once it is on


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def principal(state: AuthState, bearer: str | None) -> Grant | None:
    """The grant of a bearer token (None when absent or unknown): one hash, one dict lookup."""
    if not bearer:
        return None
    return state.grants.get(token_hash(bearer))


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value, else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if not hmac.compare_digest(scheme.lower().encode(), b"bearer"):
        return None
    return token.strip() or None


def authorize(state: AuthState, grant: Grant | None, decision: Decision, key: str = "",
              peer_proof: bool = False) -> None:
    """Return when the request may go on; raise TokenRequired or Forbidden otherwise.

    ``key`` is the key (READ_KEY/WRITE_KEY), the listed prefix (LIST_PREFIX) or the watched
    key or prefix (WATCH);
    ``peer_proof`` says the body carries a peer's proof that the api will verify.
    """
    if not state.enabled or decision is Decision.OPEN:
        return
    if decision is Decision.PEER_OR_ADMIN and peer_proof and grant is None:
        return
    if grant is None:
        raise TokenRequired("a valid token is required (Authorization: Bearer <token>)")
    if decision in (Decision.ANY_TOKEN, Decision.TXN) or grant.role == "admin":
        return
    if decision in (Decision.READ_KEY, Decision.LIST_PREFIX, Decision.WATCH):
        _needs(grant, "read", key)
    elif decision is Decision.WRITE_KEY:
        _needs(grant, "write", key)
    elif decision is Decision.LEASE:
        _needs(grant, "write", grant.prefix)   # a lease holds no key until a put attaches one
    else:
        raise Forbidden(f"token {grant.name!r} ({grant.role}) may not do this; it needs admin")


def _needs(grant: Grant, role: str, key: str) -> None:
    # A listed prefix is allowed when every key it can hold is under the token's prefix,
    # which is exactly when the listed prefix itself starts with the token's prefix.
    if _RANK[grant.role] < _RANK[role]:
        raise Forbidden(f"token {grant.name!r} is {grant.role}; this needs {role}")
    if not key.startswith(grant.prefix):
        raise Forbidden(f"token {grant.name!r} is limited to keys under {grant.prefix!r}")

"""The auth gate: each route's decision enforced before its endpoint runs.

The router calls the gate with the route's decision and the decoded path parameters;
the gate finds the request's token (``Authorization: Bearer``), looks its hash up in the
replicated auth state and asks ``axon.api.auth.authorize``.  With auth off it is one
attribute check.  A node started with ``--auth`` refuses (503) every guarded request
until the auth state that turns auth on is applied, so no client write slips in first.
"""
from __future__ import annotations

from typing import Callable, Iterable

from axon.api.auth import Decision, authorize, bearer_token, principal
from axon.api.errors import Unavailable
from axon.kv.authstate import AuthState
from axon.web.params import query_params
from axon.web.wire import Request

_KEYED = (Decision.READ_KEY, Decision.WRITE_KEY)


class AuthGate:
    def __init__(self, state: Callable[[], AuthState], auth_required: bool = False,
                 proof_required: Callable[[], bool] = lambda: False) -> None:
        """``state()``: the applied auth state; ``auth_required``: the node was started with --auth;
        ``proof_required()``: joins must prove the cluster key (so a proof may stand for a token)."""
        self.state = state
        self.auth_required = auth_required
        self.proof_required = proof_required

    def __call__(self, req: Request, decision: Decision, args: tuple) -> None:
        state = self.state()
        if not state.enabled:
            if self.auth_required and decision is not Decision.OPEN:
                raise Unavailable("auth is being turned on; retry shortly")
            return
        if decision is Decision.OPEN:
            return
        grant = principal(state, bearer_token(req.headers.get("authorization")))
        key = args[0] if decision in _KEYED and args else ""
        if decision is Decision.LIST_PREFIX:
            key = query_params(req.query).get("prefix") or ""
        elif decision is Decision.WATCH:
            query = query_params(req.query)
            key = query.get("key") or query.get("prefix") or ""
        proof = decision is Decision.PEER_OR_ADMIN and self.proof_required() and b'"proof"' in req.body
        authorize(state, grant, decision, key, peer_proof=proof)
        if grant is not None:
            req.principal = grant.name

    def write_scope(self, req: Request) -> str | None:
        """The prefix a request's writes are confined to; None when unconfined (auth off, admin)."""
        state = self.state()
        if not state.enabled:
            return None
        grant = principal(state, bearer_token(req.headers.get("authorization")))
        return None if grant is None or grant.role == "admin" else grant.prefix

    def check_keys(self, req: Request, reads: Iterable[str], writes: Iterable[str]) -> None:
        """Read on every key of ``reads`` and write on every key of ``writes`` (a transaction's)."""
        state = self.state()
        if not state.enabled:
            return
        grant = principal(state, bearer_token(req.headers.get("authorization")))
        for key in reads:
            authorize(state, grant, Decision.READ_KEY, key)
        for key in writes:
            authorize(state, grant, Decision.WRITE_KEY, key)

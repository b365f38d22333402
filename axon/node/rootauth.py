"""``--auth``: the leader turns auth on as its first client entry and keeps the root token.

The token goes to ``<data-dir>/root.token`` (0600) before it is proposed, so a crash in
between leaves a token the next attempt reuses, never a cluster with a root nobody holds.
Until the AuthEnable is applied, the node refuses guarded requests (axon/web/auth.py).
"""
from __future__ import annotations

import logging
import os
from typing import Callable

import gevent

from axon.api.auth import new_token, token_hash
from axon.kv.authstate import AuthState
from axon.kv.commands import AuthEnable
from axon.raft.errors import RaftError

log = logging.getLogger("axon.node.auth")
ROOT_TOKEN_FILE = "root.token"
POLL = 0.05


def root_token(data_dir: str) -> str:
    """The root token kept in the data dir, made (0600) when there is none yet."""
    path = os.path.join(data_dir, ROOT_TOKEN_FILE)
    try:
        with open(path, encoding="ascii") as f:
            token = f.read().strip()
        if token:
            return token
    except FileNotFoundError:
        pass
    token = new_token()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(token + "\n")
        f.flush()
        os.fsync(f.fileno())
    return token


def enable_when_leader(node: object, state: Callable[[], AuthState], data_dir: str,
                       timeout: float) -> None:
    """Run until auth is on: as the leader, propose AuthEnable with the root token's hash."""
    while not state().enabled:
        if not node.is_leader:   # type: ignore[attr-defined]
            gevent.sleep(POLL)
            continue
        token_sha = token_hash(root_token(data_dir))
        try:
            node.propose([AuthEnable(token_sha)], timeout)   # type: ignore[attr-defined]
            log.info("auth is on; the root token is in %s", os.path.join(data_dir, ROOT_TOKEN_FILE))
        except RaftError as exc:
            log.info("turning auth on: %s; retrying", exc)
            gevent.sleep(POLL)

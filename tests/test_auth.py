"""Client auth below the web: the pure decision, the auth commands, and the store's auth state."""
from __future__ import annotations

import pytest

from axon.api.auth import (Decision, authorize, bearer_token, new_token, principal, token_hash)
from axon.api.errors import Forbidden, TokenRequired
from axon.kv.authstate import AuthState, Grant, apply_auth
from axon.kv.commands import (AuthEnable, Delete, Put, TokenAdd, TokenRevoke, decode_commands,
                              encode_commands)
from axon.kv.store import Slot, Store

ROOT, READ, WRITE = new_token(), new_token(), new_token()
STATE = AuthState(True, {token_hash(ROOT): Grant("root", "admin", ""),
                         token_hash(READ): Grant("r", "read", "app/"),
                         token_hash(WRITE): Grant("w", "write", "app/")})


def check(token: str | None, decision: Decision, key: str = "", proof: bool = False):
    """'ok', 401 or 403 for one decision."""
    try:
        authorize(STATE, principal(STATE, token), decision, key, peer_proof=proof)
    except TokenRequired:
        return 401
    except Forbidden:
        return 403
    return "ok"


# ---------------------------------------------------------------------- tokens
def test_tokens_are_prefixed_high_entropy_and_stored_as_sha256() -> None:
    token = new_token()
    assert token.startswith("axon_") and len(token) >= 5 + 43 and token != new_token()
    assert len(token_hash(token)) == 64 and token not in token_hash(token)


@pytest.mark.parametrize("header, token", [
    ("Bearer abc", "abc"), ("bearer abc", "abc"), ("Basic abc", None), ("Bearer ", None),
    ("", None), (None, None)])
def test_bearer_token(header, token) -> None:
    assert bearer_token(header) == token


# ---------------------------------------------------------------------- decisions
def test_auth_off_allows_everything() -> None:
    for decision in Decision:
        authorize(AuthState(), None, decision, "x")


@pytest.mark.parametrize("decision", list(Decision))
def test_open_routes_need_nothing_and_others_a_known_token(decision) -> None:
    expected = "ok" if decision is Decision.OPEN else 401
    assert check(None, decision, "app/x") == expected
    assert check(new_token(), decision, "app/x") == expected   # unknown token: as none


def test_read_token() -> None:
    assert check(READ, Decision.READ_KEY, "app/x") == "ok"
    assert check(READ, Decision.READ_KEY, "other") == 403
    assert check(READ, Decision.WRITE_KEY, "app/x") == 403
    assert check(READ, Decision.LIST_PREFIX, "app/x") == "ok"
    assert check(READ, Decision.LIST_PREFIX, "app/") == "ok"
    for outside in ("", "ap", "b"):
        assert check(READ, Decision.LIST_PREFIX, outside) == 403
    assert check(READ, Decision.ANY_TOKEN) == "ok"
    for decision in (Decision.ADMIN, Decision.PEER_OR_ADMIN, Decision.AUTH_ENABLE):
        assert check(READ, decision) == 403


def test_write_token() -> None:
    assert check(WRITE, Decision.WRITE_KEY, "app/x") == "ok"
    assert check(WRITE, Decision.READ_KEY, "app/x") == "ok"
    assert check(WRITE, Decision.WRITE_KEY, "other") == 403
    assert check(WRITE, Decision.ADMIN) == 403


def test_admin_token_does_everything() -> None:
    for decision in Decision:
        assert check(ROOT, decision, "anything") == "ok"


def test_join_with_a_peer_proof_needs_no_token() -> None:
    assert check(None, Decision.PEER_OR_ADMIN, proof=True) == "ok"
    assert check(None, Decision.PEER_OR_ADMIN) == 401


# ---------------------------------------------------------------------- commands and state
def test_auth_commands_round_trip_beside_old_ones() -> None:
    cmds = [Put("a", "1"), Delete("b"), AuthEnable("h0"), TokenAdd("r", "h1", "read", "app/"),
            TokenRevoke("r")]
    assert decode_commands(encode_commands(cmds)) == cmds
    # an entry written before auth existed decodes as it did
    assert decode_commands(encode_commands([Put("a", "1", 3, False)])) == [Put("a", "1", 3, False)]


def test_apply_auth_refuses_what_contradicts_the_state() -> None:
    state, result = apply_auth(AuthState(), AuthEnable("h0"))
    assert state.enabled and result.ok and state.grants["h0"].role == "admin"
    assert not apply_auth(state, AuthEnable("h9"))[1].ok
    state, result = apply_auth(state, TokenAdd("r", "h1", "read", "app/"))
    assert result.ok and not apply_auth(state, TokenAdd("r", "h2", "read", ""))[1].ok
    state, result = apply_auth(state, TokenRevoke("r"))
    assert result.ok and "h1" not in state.grants
    assert apply_auth(state, TokenRevoke("r"))[1].error == "not_found"


def slot(index: int, *cmds) -> Slot:
    return Slot(index, 1, commands=encode_commands(list(cmds)))


def test_store_applies_auth_invisibly_and_keeps_it(tmp_path) -> None:
    path = str(tmp_path / "s")
    with Store.open(path) as store:
        results = store.apply([slot(1, AuthEnable("h0"), TokenAdd("r", "h1", "read", "app/")),
                               slot(2, Put("app/x", "v"))])
        assert [r.ok for r in results[0]] == [True, True]
        assert store.auth.enabled and store.auth.grants["h1"] == Grant("r", "read", "app/")
        # the internal keyspace is never a user key
        items, _ = store.scan("")
        assert [k for k, _, _ in items] == ["app/x"]
        assert store.get("\x00m/auth") is None and store.get("m/auth") is None and store.count() == 1
    with Store.open(path) as store:
        assert store.auth.grants["h1"].name == "r" and store.auth.enabled
        store.apply([slot(3, TokenRevoke("r"))])
    with Store.open(path) as store:
        assert "h1" not in store.auth.grants


def test_snapshot_restore_carries_the_auth_state(tmp_path) -> None:
    with Store.open(str(tmp_path / "a")) as source, Store.open(str(tmp_path / "b")) as target:
        source.apply([slot(1, AuthEnable("h0"), Put("k", "v"))])
        target.apply([slot(1, Put("z", "old"))])
        at, stream = source.snapshot_reader(chunk_size=7)
        with stream:
            target.restore(at, stream)
        assert target.auth == source.auth and target.auth.enabled
        assert [k for k, _, _ in target.scan("")[0]] == ["k"]
        path = target.path
    with Store.open(path) as reopened:
        assert reopened.auth.enabled


def test_restore_of_a_snapshot_without_auth_turns_it_off(tmp_path) -> None:
    with Store.open(str(tmp_path / "a")) as source, Store.open(str(tmp_path / "b")) as target:
        source.apply([slot(1, Put("k", "v"))])
        target.apply([slot(1, AuthEnable("h0"))])
        at, stream = source.snapshot_reader()
        with stream:
            target.restore(at, stream)
        assert not target.auth.enabled


def test_machine_exposes_the_auth_state(tmp_path) -> None:
    from axon.kv.machine import KVStateMachine
    from axon.raft.types import Entry, EntryKind
    machine = KVStateMachine(Store.open(str(tmp_path / "m")))
    try:
        machine.apply([Entry(1, 1, EntryKind.NORMAL, encode_commands([AuthEnable("h0")]))])
        assert machine.auth.enabled
    finally:
        machine.close()

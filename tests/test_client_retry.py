"""The client's retry rules over a scripted pool (no sockets): which endpoint each try goes to,
when it stops, and what is never sent twice."""
from __future__ import annotations

import time

import pytest

from axon.client import Client, ClientError, OutcomeUnknown
from axon.client.http import Response


class ScriptedPool:
    """Answers each request from ``answers[addr]`` (a Response, or a ClientError to raise)."""

    def __init__(self, answers: dict) -> None:
        self.answers = answers
        self.sent: list[tuple[str, str, str]] = []

    def request(self, method, addr, path, body=None, headers=None, timeout=None) -> Response:
        self.sent.append((method, addr, path))
        answer = self.answers[addr]
        if isinstance(answer, ClientError):
            raise answer
        return answer

    def close(self) -> None:
        raise AssertionError("a client must not close a pool it was given")


REFUSED = ClientError("a: connection refused", unsent=True)
NO_LEADER = Response(503, {}, b'{"error": "no leader; retry later"}')
OK = Response(200, {}, b'{"key": "k", "value": "v", "revision": 3}')


def test_at_retry_for_zero_each_endpoint_is_tried_once_in_turn() -> None:
    pool = ScriptedPool({"a": REFUSED, "b": NO_LEADER, "c": REFUSED})
    with Client(["a", "b", "c"], retry_for=0, pool=pool) as client:   # type: ignore[arg-type]
        with pytest.raises(ClientError) as err:
            client.get("k")
    assert [addr for _, addr, _ in pool.sent] == ["a", "b", "c"]
    assert "connection refused" in str(err.value)


def test_a_later_endpoint_answers_and_the_client_stays_with_it() -> None:
    pool = ScriptedPool({"a": REFUSED, "b": OK})
    client = Client(["a", "b"], retry_for=0, pool=pool)   # type: ignore[arg-type]
    assert client.get("k")["value"] == "v" and client.put("k", "v")["revision"] == 3
    assert [addr for _, addr, _ in pool.sent] == ["a", "b", "b"]


def test_rounds_pause_so_a_dead_cluster_is_not_spun_on() -> None:
    pool = ScriptedPool({"a": REFUSED, "b": REFUSED})
    started = time.monotonic()
    with pytest.raises(ClientError):
        Client(["a", "b"], retry_for=0.5, pool=pool).status()   # type: ignore[arg-type]
    assert time.monotonic() - started >= 0.5
    assert len(pool.sent) <= 2 * (0.5 / 0.2 + 2)   # a round, a pause, a round...


def test_a_write_that_reached_a_node_is_never_sent_again() -> None:
    lost = ClientError("a: connection lost (RemoteDisconnected)")
    pool = ScriptedPool({"a": lost, "b": OK})
    with pytest.raises(OutcomeUnknown):
        Client(["a", "b"], pool=pool).put("k", "v")   # type: ignore[arg-type]
    assert [addr for _, addr, _ in pool.sent] == ["a"]


def test_leave_goes_to_the_named_node_only() -> None:
    pool = ScriptedPool({"a": REFUSED, "b": Response(200, {}, b'{"removed": "b"}')})
    with pytest.raises(ClientError):
        Client(["a", "b"], pool=pool).leave()   # type: ignore[arg-type]
    assert [addr for _, addr, _ in pool.sent] == ["a"]

"""The pure parts of locks: the queue's order, who holds, whom a waiter watches; the session's health."""
from __future__ import annotations

import threading

import pytest

from axon.client.http import ClientError
from axon.client.lock import (Contender, LockLost, Session, check_name, contender_key, contenders,
                              position)
from axon.testing.polling import wait_until


def item(key: str, revision: int, value: str = "") -> dict:
    return {"key": key, "value": value, "revision": revision}


def test_the_queue_is_ordered_by_revision_and_holds_only_this_locks_contenders() -> None:
    items = [item("job/c", 30), item("job/a", 10), item("job/b", 20),
             item("job/x/1f", 5),    # a contender of the lock "job/x", not of "job"
             item("job/notes", 1),   # not a lease id in hex
             item("jobs/0a", 2)]     # another lock's key that shares the text prefix
    queue = contenders(items, "job")
    assert [c.key for c in queue] == ["job/a", "job/b", "job/c"]
    assert queue[0] == Contender("job/a", "", 10)


def test_equal_revisions_are_ordered_by_key_so_every_client_agrees() -> None:
    queue = contenders([item("l/b", 7), item("l/a", 7)], "l")
    assert [c.key for c in queue] == ["l/a", "l/b"]


def test_the_first_holds_and_each_other_watches_only_the_one_just_before_it() -> None:
    queue = contenders([item("l/1", 10), item("l/2", 11), item("l/3", 12)], "l")
    assert position(queue, "l/1") == (True, None)
    assert position(queue, "l/2") == (False, queue[0])
    assert position(queue, "l/3") == (False, queue[1])   # not the holder: no herd on a release


def test_when_a_predecessor_leaves_the_waiter_watches_the_one_before_it() -> None:
    queue = contenders([item("l/1", 10), item("l/3", 12)], "l")   # l/2 gave up
    assert position(queue, "l/3") == (False, queue[0])


def test_a_key_no_longer_queued_means_the_lease_was_lost() -> None:
    with pytest.raises(LockLost):
        position(contenders([item("l/1", 10)], "l"), "l/2")


def test_contender_keys_and_names() -> None:
    assert contender_key("locks/db", 0x2a) == "locks/db/2a"
    assert check_name("locks/db") == "locks/db"
    for bad in ("", "locks/", None):
        with pytest.raises(ValueError):
            check_name(bad)


class FakeLeases:
    """A client whose lease endpoints answer from a script (no sockets)."""

    def __init__(self, keepalive_status: int = 200) -> None:
        self.keepalive_status = keepalive_status
        self.calls: list[tuple[str, str]] = []

    def call(self, method: str, path: str, payload=None, write=None, ok=(200,)):
        self.calls.append((method, path))
        if path == "/leases":
            return {"id": 0x2a, "ttl": payload["ttl"]}
        if path.endswith("/keepalive"):
            if self.keepalive_status != 200:
                raise ClientError("lease not found", self.keepalive_status, {"error": "lease not found"})
            return {"id": 0x2a, "ttl": 1.0}
        return {}


def test_a_session_keeps_its_lease_alive_and_revokes_it_on_close() -> None:
    client = FakeLeases()
    session = Session(client, ttl=1.0)
    try:
        assert session.id == 0x2a and session.valid
        wait_until(lambda: ("POST", "/leases/42/keepalive") in client.calls, 3.0, "a keepalive (every ttl / 3)")
        assert session.valid
    finally:
        session.close()
    assert ("DELETE", "/leases/42") in client.calls
    assert not session.valid


def test_a_session_whose_lease_is_gone_is_lost_and_says_so() -> None:
    client = FakeLeases(keepalive_status=404)
    session = Session(client, ttl=1.0)
    told = threading.Event()
    session.on_lost(lambda reason: told.set())
    try:
        assert told.wait(3.0)
        assert not session.valid
        assert "expired or was revoked" in session.lost_reason
    finally:
        session.close()
    assert ("DELETE", "/leases/42") not in client.calls   # nothing left to revoke


def test_the_fencing_resource_refuses_old_tokens_and_the_check_finds_interleaved_holders() -> None:
    from axon.testing.lockcheck import FencingResource, interleavings
    resource = FencingResource()
    assert resource.write(1, 10) and resource.write(2, 12)
    assert not resource.write(1, 10)                           # a paused holder, fenced off
    assert not resource.write(1, 10, still_valid=lambda: True)  # ... while its lease was alive: a problem
    assert resource.refused_valid == [(1, 10)]
    assert not resource.write(3, 13, still_valid=lambda: False)   # a holder that knows it lost
    assert resource.log == [(1, 10), (2, 12)]
    assert interleavings([(1, 10), (1, 10), (2, 12), (2, 12)]) == []
    assert interleavings([(1, 10), (2, 12), (1, 10)]) == ["the holder with token 10 wrote again after a later holder"]
    assert interleavings([(1, 10), (2, 10)]) == ["lock token 10 used by clients 1 and 2"]

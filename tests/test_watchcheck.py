"""The watch-completeness check of the chaos suite, on made-up histories."""
from __future__ import annotations

from axon.client import WatchEvent
from axon.testing.history import History
from axon.testing.watchcheck import check_watch


def history() -> History:
    h = History()
    a = h.invoke(1, "k0", "write", "c1-1")
    h.ok(a, 10)
    b = h.invoke(2, "k1", "write", "c2-1")
    h.unknown(b)                      # applied, as the events show
    c = h.invoke(1, "k0", "delete")
    h.ok(c, 12)
    d = h.invoke(2, "k1", "cas", "c2-2", 99)
    h.fail(d)
    return h


GOOD = [WatchEvent("put", "k0", "c1-1", 10), WatchEvent("put", "k1", "c2-1", 11),
        WatchEvent("delete", "k0", None, 12)]
FINAL = {"k0": (None, None), "k1": ("c2-1", 11)}


def test_a_complete_ordered_watch_passes() -> None:
    assert check_watch(GOOD, history().ops(), 1, FINAL) == []


def test_each_kind_of_wrong_watch_is_named() -> None:
    ops = history().ops()
    assert "never arrived" in check_watch(GOOD[1:], ops, 1, FINAL)[0]
    assert "came after" in check_watch([GOOD[1], GOOD[0], GOOD[2]], ops, 1, FINAL)[0]
    assert "twice" in check_watch(GOOD + [GOOD[2]], ops, 1, FINAL)[0]
    assert "no client wrote" in " ".join(check_watch(GOOD + [WatchEvent("put", "k1", "x", 13)], ops, 1, FINAL))
    assert "its write failed" in " ".join(check_watch(GOOD + [WatchEvent("put", "k1", "c2-2", 13)], ops, 1, FINAL))
    moved = [WatchEvent("put", "k0", "c1-1", 9)] + GOOD[1:]
    assert "answered revision 10" in " ".join(check_watch(moved, ops, 1, FINAL))
    assert "cluster holds" in " ".join(check_watch(GOOD, ops, 1, {"k0": ("c1-1", 10), "k1": FINAL["k1"]}))


def test_changes_before_the_start_are_not_expected() -> None:
    assert check_watch(GOOD[1:], history().ops(), 11, FINAL) == []


def test_changes_in_a_reported_gap_are_not_expected() -> None:
    assert check_watch(GOOD[1:], history().ops(), 1, FINAL, gaps=[(9, 10)]) == []
    assert check_watch(GOOD[1:], history().ops(), 1, FINAL, gaps=[(11, 12)]) != []


def test_a_key_deleted_twice_in_one_entry_is_two_events_not_a_repeat() -> None:
    # three clients' commands in one entry (revision 14): delete k0, put k0, delete k0
    h = History()
    for client, kind, value in [(1, "write", "c1-1"), (2, "delete", None), (3, "write", "c3-1"), (4, "delete", None)]:
        op = h.invoke(client, "k0", kind, value)
        h.ok(op, 13 if client == 1 else 14)
    events = [WatchEvent("put", "k0", "c1-1", 13), WatchEvent("delete", "k0", None, 14),
              WatchEvent("put", "k0", "c3-1", 14), WatchEvent("delete", "k0", None, 14)]
    final = {"k0": (None, None)}
    assert check_watch(events, h.ops(), 1, final) == []
    assert "twice" in check_watch(events + [WatchEvent("delete", "k0", None, 14)], h.ops(), 1, final)[0]

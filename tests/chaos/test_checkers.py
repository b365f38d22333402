"""The chaos suite's checkers on hand-made histories: legal ones pass, illegal ones are caught."""
from __future__ import annotations

import pytest

from axon.testing.chaos import FaultEvent, check_durability, check_linearizable, measure_unavailability
from axon.testing.history import NOT_FOUND, History, Op

_ids = iter(range(1_000_000))


def op(kind: str, invoke: float, complete: float | None, status: str, *, value: str | None = None,
       expected: int | None = None, result=None, key: str = "k", client: int = 0) -> Op:
    return Op(next(_ids), client, key, kind, value, expected, invoke, complete, status, result)


def history(*ops: Op) -> History:
    return History.from_ops(ops)


# ---------------------------------------------------------------------- linearizability

def test_sequential_writes_and_reads_are_linearizable() -> None:
    h = history(op("write", 0, 1, "ok", value="a", result=5),
                op("read", 2, 3, "ok", result=("a", 5)),
                op("cas", 4, 5, "ok", value="b", expected=5, result=7),
                op("read", 6, 7, "ok", result=("b", 7)),
                op("delete", 8, 9, "ok", result=9),
                op("read", 10, 11, "ok", result=None))
    assert check_linearizable(h).ok


def test_timed_out_write_may_take_effect_late_or_never() -> None:
    late = history(op("write", 0, 1.5, "unknown", value="a"),
                   op("read", 1, 2, "ok", result=None),
                   op("read", 5, 6, "ok", result=("a", 3)))
    never = history(op("write", 0, 1.5, "unknown", value="a"),
                    op("read", 1, 2, "ok", result=None),
                    op("read", 5, 6, "ok", result=None))
    assert check_linearizable(late).ok
    assert check_linearizable(never).ok


def test_stale_read_after_acknowledged_write_is_caught() -> None:
    h = history(op("write", 0, 1, "ok", value="a", result=3),
                op("write", 2, 3, "ok", value="b", result=4),
                op("read", 4, 5, "ok", result=("a", 3)))
    result = check_linearizable(h)
    assert not result.ok and result.key == "k"


def test_read_of_a_value_never_written_is_caught() -> None:
    h = history(op("write", 0, 1, "ok", value="a", result=3),
                op("read", 2, 3, "ok", result=("ghost", 4)))
    assert not check_linearizable(h).ok


def test_cas_that_succeeded_against_a_changed_revision_is_caught() -> None:
    h = history(op("write", 0, 1, "ok", value="a", result=3),
                op("write", 2, 3, "ok", value="b", result=4),
                op("cas", 4, 5, "ok", value="c", expected=3, result=6))
    assert not check_linearizable(h).ok


# ---------------------------------------------------------------------- durability

def test_final_value_equal_to_the_last_acknowledged_write_is_durable() -> None:
    h = history(op("write", 0, 1, "ok", value="a", result=3),
                op("write", 2, 3, "ok", value="b", result=4))
    assert check_durability(h, {"k": ("b", 4)}).ok


def test_acknowledged_write_overwritten_by_a_later_timed_out_write_is_durable() -> None:
    h = history(op("write", 0, 1, "ok", value="a", result=3),
                op("write", 2, 3, "unknown", value="b"))
    assert check_durability(h, {"k": ("b", 9)}).ok


def test_acknowledged_write_overwritten_by_a_concurrent_write_is_durable() -> None:
    h = history(op("write", 0, 4, "ok", value="a", result=3, client=0),
                op("write", 1, 2, "ok", value="b", result=2, client=1))
    # b finished first but was invoked while a ran: a's revision says a came later, so b must lose.
    assert not check_durability(h, {"k": ("b", 2)}).ok
    h2 = history(op("write", 0, 4, "ok", value="a", result=3, client=0),
                 op("write", 1, 5, "ok", value="b", result=4, client=1))
    assert check_durability(h2, {"k": ("b", 4)}).ok


def test_deleted_key_is_durable_when_a_delete_followed() -> None:
    h = history(op("write", 0, 1, "ok", value="a", result=3),
                op("delete", 2, 3, "ok", result=5))
    assert check_durability(h, {"k": (None, None)}).ok


def test_lost_acknowledged_write_is_caught() -> None:
    h = history(op("write", 0, 1, "ok", value="a", result=3),
                op("write", 2, 3, "ok", value="b", result=4))
    result = check_durability(h, {"k": ("a", 3)})
    assert not result.ok
    assert "'b'" in result.problems[0]


def test_key_vanishing_without_a_delete_is_caught() -> None:
    h = history(op("write", 0, 1, "ok", value="a", result=3),
                op("delete", 2, 3, "ok", result=NOT_FOUND),   # found nothing: cannot explain the loss
                op("read", 4, 5, "ok", result=("a", 3)))
    assert not check_durability(h, {"k": (None, None)}).ok


def test_final_value_from_a_write_that_finished_before_the_acknowledged_one_is_caught() -> None:
    h = history(op("write", 0, 1, "ok", value="old", result=2),
                op("write", 2, 3, "ok", value="new", result=4))
    assert not check_durability(h, {"k": ("old", 2)}).ok


def test_final_value_nobody_wrote_is_caught() -> None:
    h = history(op("write", 0, 1, "ok", value="a", result=3))
    result = check_durability(h, {"k": ("ghost", 7)})
    assert not result.ok and "never" in result.problems[0]


def test_failed_writes_and_cas_conflicts_do_not_count_as_overwrites() -> None:
    h = history(op("write", 0, 1, "ok", value="a", result=3),
                op("cas", 2, 3, "fail", value="b", expected=1),
                op("write", 4, 5, "fail", value="c"))
    assert check_durability(h, {"k": ("a", 3)}).ok
    assert not check_durability(h, {"k": ("b", 6)}).ok


def test_durability_is_checked_per_key() -> None:
    h = history(op("write", 0, 1, "ok", value="a", result=3, key="x"),
                op("write", 0, 1, "ok", value="b", result=4, key="y"))
    assert check_durability(h, {"x": ("a", 3), "y": ("b", 4)}).ok
    result = check_durability(h, {"x": ("a", 3), "y": (None, None)})
    assert not result.ok and result.problems[0].startswith("y:")


# ---------------------------------------------------------------------- unavailability

def test_unavailability_is_time_from_fault_and_heal_to_the_first_acknowledged_write() -> None:
    h = history(op("write", 9, 10.5, "ok", value="early", result=1),
                op("write", 10.2, 13, "unknown", value="lost"),
                op("read", 10.5, 10.6, "ok", result=("early", 1)),
                op("write", 11, 12.5, "ok", value="first", result=2),
                op("write", 12, 12.2, "ok", value="after-heal", result=3))
    gaps = measure_unavailability(h, [FaultEvent("kill-one", "kill -9 n1", injected=9.9, active=10.0, healed=11.5)])
    assert gaps["fault to first write"] == [pytest.approx(2.2)]
    assert gaps["heal to first write"] == [pytest.approx(0.7)]   # invoked later, finished first

"""The watch cursor: streams that break anywhere, even partway through a revision's changes,
resume so that the changes delivered are the history, each once, in order."""
from __future__ import annotations

from hypothesis import given, settings, strategies as st

from axon.client.watchcursor import WatchCursor


def deliver(cursor: WatchCursor, stream: list[tuple[str, int]], delivered: list[int]) -> None:
    """Feed one stream's events (("change"|"progress", revision)) through the cursor."""
    for kind, revision in stream:
        if kind == "progress":
            cursor.progress(revision)
        elif cursor.change(revision):
            delivered.append(revision)


def test_a_break_partway_through_a_revision_resumes_before_it_and_skips_what_was_delivered() -> None:
    cursor = WatchCursor(complete=9)
    delivered: list[int] = []
    cursor.new_stream(10)
    deliver(cursor, [("change", 10), ("change", 12), ("change", 12)], delivered)   # then 12 breaks
    assert cursor.resume_after() == 10          # not 12: its third change never came
    cursor.new_stream(11)
    deliver(cursor, [("change", 12), ("change", 12), ("change", 12), ("change", 13)], delivered)
    assert delivered == [10, 12, 12, 12, 13]
    assert cursor.resume_after() == 12


def test_a_progress_mark_completes_the_revision_it_covers() -> None:
    cursor = WatchCursor()
    cursor.new_stream(5)
    assert cursor.resume_after() == 4
    deliver(cursor, [("change", 7), ("change", 7), ("progress", 9)], [])
    assert cursor.resume_after() == 9
    cursor.new_stream(10)
    delivered: list[int] = []
    deliver(cursor, [("change", 10)], delivered)
    assert delivered == [10]                    # nothing left to skip after the mark


def test_a_change_at_or_before_the_resume_point_is_never_delivered() -> None:
    cursor = WatchCursor(complete=20)
    cursor.new_stream(21)
    delivered: list[int] = []
    deliver(cursor, [("change", 19), ("change", 20), ("change", 21), ("change", 21)], delivered)
    assert delivered == [21, 21]


@st.composite
def histories(draw: st.DrawFn) -> list[int]:
    """Revisions of changes in order: gaps between revisions, several changes at some."""
    revisions: list[int] = []
    revision = draw(st.integers(1, 5))
    for _ in range(draw(st.integers(0, 12))):
        revision += draw(st.integers(1, 4))
        revisions += [revision] * draw(st.integers(1, 5))
    return revisions


def stream_from(history: list[int], after: int, progress_at: set[int]) -> list[tuple[str, int]]:
    """What a node sends from ``after`` on: every later change, and a progress mark at a
    revision boundary where it has nothing unsent (as the node sends one when quiet)."""
    events: list[tuple[str, int]] = []
    pending = [r for r in history if r > after]
    for i, revision in enumerate(pending):
        events.append(("change", revision))
        last_of_revision = i + 1 == len(pending) or pending[i + 1] != revision
        if last_of_revision and i in progress_at:
            events.append(("progress", revision))
    return events


@settings(max_examples=400, deadline=None)
@given(history=histories(), data=st.data())
def test_any_breaks_deliver_the_history_once_in_order(history: list[int], data: st.DataObject) -> None:
    cursor = WatchCursor(complete=0)
    delivered: list[int] = []
    for _ in range(data.draw(st.integers(0, 6), label="breaks")):
        cursor.new_stream(cursor.resume_after() + 1)
        stream = stream_from(history, cursor.resume_after(),
                             data.draw(st.sets(st.integers(0, 70)), label="progress marks"))
        cut = data.draw(st.integers(0, len(stream)), label="cut after")
        deliver(cursor, stream[:cut], delivered)
        assert delivered == history[:len(delivered)]
    cursor.new_stream(cursor.resume_after() + 1)
    deliver(cursor, stream_from(history, cursor.resume_after(), set()), delivered)
    assert delivered == history

"""Where a watch stands, so that a new stream resumes it without losing or repeating a change.

A revision is a Raft entry's index, and one entry can carry many clients' writes, a
transaction or a lease revocation: several changes share a revision.  ``Last-Event-ID: N``
resumes with the first change after revision N, so a stream that broke partway through
revision N's changes must not resume after N: the rest of N would be lost.  The cursor
resumes after the last revision it knows was delivered whole, and skips, in the new stream,
the changes of the next revision it has already delivered.  That skip is sound because
every node applies the same entries and builds one entry's changes in the same order.

A revision is known whole once a change of a later revision arrives (a stream sends
changes in revision order) or a progress mark covers it.  Pure: no I/O.
"""
from __future__ import annotations


class WatchCursor:
    """Delivered changes in, "deliver or skip" and the resume point out."""

    def __init__(self, complete: int | None = None) -> None:
        """``complete``: every change up to this revision is delivered (None: not started yet)."""
        self.complete = complete
        self._partial: int | None = None   # revision whose changes were delivered in part, maybe
        self._delivered = 0                # how many of its changes were delivered
        self._to_skip = 0                  # how many of them this stream has yet to repeat

    def resume_after(self) -> int | None:
        """The ``Last-Event-ID`` for a new stream (None: from now)."""
        return self.complete

    def new_stream(self, start: int) -> None:
        """A stream opened whose first change is at ``start`` or later."""
        if self.complete is None:
            self.complete = start - 1
        self._to_skip = self._delivered if self._partial is not None else 0

    def change(self, revision: int) -> bool:
        """A change at ``revision`` arrived: True to deliver it, False for a repeat to drop."""
        if self._partial is not None and revision == self._partial:
            if self._to_skip:
                self._to_skip -= 1
                return False
            self._delivered += 1
            return True
        if revision <= max(self._partial or 0, self.complete or 0):
            return False   # before the resume point: a node never sends one; never deliver it twice
        if self._partial is not None:
            self.complete = self._partial   # a later revision: the partial one was whole
        self._partial, self._delivered, self._to_skip = revision, 1, 0
        return True

    def progress(self, revision: int) -> None:
        """The stream says every change up to ``revision`` has been sent."""
        if self._partial is not None and revision >= self._partial:
            self._partial, self._delivered, self._to_skip = None, 0, 0
        if self.complete is None or revision > self.complete:
            self.complete = revision

"""Polling for a condition with a deadline, for tests whose code under test runs on gevent.

``time.sleep`` would block the hub and starve the greenlets the test waits for, so this
polls with ``gevent.sleep``.  (Tests of real processes use ``axon.testing.cluster.wait_for``.)
"""
from __future__ import annotations

import time
from typing import Callable

import gevent


def wait_until(condition: Callable[[], object], timeout: float = 5.0, what: str = "condition",
               interval: float = 0.01) -> None:
    """Return once ``condition()`` is truthy; AssertionError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        gevent.sleep(interval)

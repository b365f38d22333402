"""Which dead voter, if any, the leader may remove under --reap-dead-after (pure)."""
from __future__ import annotations

from typing import Mapping

MIN_VOTERS = 3


def pick_reap(voters: list[str], dead_since: Mapping[str, float], now: float, after: float,
              self_id: str) -> str | None:
    """One voter gossip has reported dead for at least ``after`` seconds, or None.

    Removing it must leave at least MIN_VOTERS voters, and the voters still alive must
    form a quorum of the current (original) set, so reaping never decides for a minority.
    """
    if len(voters) - 1 < MIN_VOTERS:
        return None
    dead = [v for v in voters if v != self_id and v in dead_since]
    alive = len(voters) - len(dead)
    if alive < len(voters) // 2 + 1:
        return None
    due = sorted((dead_since[v], v) for v in dead if now - dead_since[v] >= after)
    return due[0][1] if due else None

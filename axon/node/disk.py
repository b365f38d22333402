"""Disk-space alarm: the pure decision (free-space floor, data-size quota) and a cheap usage probe."""
from __future__ import annotations

import os
from dataclasses import dataclass

NOSPACE = "nospace"


@dataclass(frozen=True)
class DiskLimits:
    """The two limits; 0 turns a limit off."""

    min_free_bytes: int
    quota_bytes: int


@dataclass(frozen=True)
class DiskUsage:
    """One reading: free bytes on the data dir's filesystem and the bytes the data dir holds."""

    free_bytes: int
    data_bytes: int


def over_limit(limits: DiskLimits, usage: DiskUsage) -> bool:
    """True when either limit is crossed (a limit of 0 never is)."""
    if limits.min_free_bytes and usage.free_bytes < limits.min_free_bytes:
        return True
    return bool(limits.quota_bytes and usage.data_bytes >= limits.quota_bytes)


class DiskAlarm:
    """Raised past either limit or on ENOSPC; cleared by a reading back under both limits."""

    def __init__(self, limits: DiskLimits) -> None:
        self.limits = limits
        self.raised = False
        self.enospc = False  # a write failed for lack of space: hold until a reading says otherwise

    def observe(self, usage: DiskUsage) -> bool:
        """Take a reading; returns whether the alarm is raised afterwards."""
        over = over_limit(self.limits, usage)
        # after an ENOSPC the filesystem had no room even if the floor is 0: ask for some back
        if self.enospc and not over and usage.free_bytes <= 0:
            over = True
        self.raised = over
        if not over:
            self.enospc = False
        return self.raised

    def on_enospc(self) -> None:
        """A WAL or store write failed with ENOSPC: raise now, without waiting for a reading."""
        self.enospc = True
        self.raised = True

    def alarms(self) -> list[str]:
        """The alarm names this node reports in its status."""
        return [NOSPACE] if self.raised else []


def data_bytes(path: str) -> int:
    """The bytes the files under path hold (sum of sizes: cheaper than du, close enough)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except OSError:
                continue  # a file removed while walking (LevelDB compaction) no longer counts
    return total


def free_bytes(path: str) -> int:
    """Bytes available to an unprivileged writer on path's filesystem."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def read_usage(path: str) -> DiskUsage:
    """One reading of the data dir."""
    return DiskUsage(free_bytes=free_bytes(path), data_bytes=data_bytes(path))

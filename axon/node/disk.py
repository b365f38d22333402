"""Disk-space alarm: the pure decision (free-space floor, data-size quota), a cheap usage probe,
and the loop that takes a reading every second (the node's status and metrics show its sizes).

While the alarm is raised the leader refuses writes (axon/api/service.py) and the Raft driver
waits out a write that failed for lack of space instead of stopping (``is_nospace``).
"""
from __future__ import annotations

import errno
import logging
import os
from dataclasses import dataclass
from typing import Callable

import gevent

NOSPACE = "nospace"
CHECK_INTERVAL = 1.0
# after an ENOSPC, this much must be free before writes resume, even with no floor set: a few
# bytes back would only let the next write fail the same way
ENOSPC_SLACK = 1 << 20
_NOSPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# LevelDB reports through plyvel with a message only, strerror's text included
_NOSPACE_TEXTS = (os.strerror(errno.ENOSPC), os.strerror(errno.EDQUOT))
log = logging.getLogger("axon.node.disk")


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
    wal_bytes: int = 0   # the part of data_bytes under the Raft log's dir


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
        self.usage: DiskUsage | None = None   # the last reading

    def observe(self, usage: DiskUsage) -> bool:
        """Take a reading; returns whether the alarm is raised afterwards."""
        self.usage = usage
        over = over_limit(self.limits, usage)
        if self.enospc and not over and usage.free_bytes < ENOSPC_SLACK:
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


def data_bytes(path: str, part: str | None = None) -> tuple[int, int]:
    """The bytes the files under ``path`` hold, and those under its subdir ``part``, in one walk
    (sum of sizes: cheaper than du, close enough)."""
    total = inside = 0
    part = os.path.join(part, "") if part else None
    for root, _dirs, files in os.walk(path):
        in_part = part is not None and os.path.join(root, "").startswith(part)
        for name in files:
            try:
                size = os.stat(os.path.join(root, name)).st_size
            except OSError:
                continue  # a file removed while walking (LevelDB compaction) no longer counts
            total += size
            inside += size if in_part else 0
    return total, inside


def free_bytes(path: str) -> int:
    """Bytes available to an unprivileged writer on path's filesystem."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def read_usage(path: str, wal_dir: str | None = None) -> DiskUsage:
    """One reading of the data dir (with the part under ``wal_dir`` when given)."""
    total, wal = data_bytes(path, wal_dir)
    return DiskUsage(free_bytes=free_bytes(path), data_bytes=total, wal_bytes=wal)


def is_nospace(exc: BaseException) -> bool:
    """Whether exc (or what it was raised from) is a write that failed for lack of space."""
    seen: BaseException | None = exc
    for _ in range(8):   # a cause chain is short; the bound guards against a cycle
        if seen is None:
            return False
        if isinstance(seen, OSError) and seen.errno in _NOSPACE_ERRNOS:
            return True
        if any(text in str(seen) for text in _NOSPACE_TEXTS):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def monitor(alarm: DiskAlarm, path: str, probe: Callable[[str], DiskUsage] = read_usage,
            interval: float = CHECK_INTERVAL) -> None:
    """Run in a greenlet: read path's usage every interval (off the event loop) and log changes."""
    threadpool = gevent.get_hub().threadpool
    was_raised = alarm.raised
    while True:
        try:
            usage = threadpool.apply(probe, (path,))
        except OSError as exc:
            log.warning("cannot read the disk usage of %s: %s", path, exc)
        else:
            alarm.observe(usage)
            if alarm.raised != was_raised:
                _log_change(alarm, usage)
        was_raised = alarm.raised
        gevent.sleep(interval)


def _log_change(alarm: DiskAlarm, usage: DiskUsage) -> None:
    limits = alarm.limits
    if alarm.raised:
        log.warning("alarm nospace raised: %d bytes free (floor %d), data %d bytes (quota %s); "
                    "writes are refused until space is back", usage.free_bytes, limits.min_free_bytes,
                    usage.data_bytes, limits.quota_bytes or "none")
    else:
        log.info("alarm nospace cleared: %d bytes free, data %d bytes", usage.free_bytes, usage.data_bytes)

"""The audit log: who changed membership, auth or the launcher's nodes, from where, and how it went.

One JSON object a line, appended to one file (mode 0600) by one writer per process, each
line written whole with one ``write`` on an O_APPEND descriptor, so a crash never leaves
half a line and a reader may tail it.  Only what the caller passes is written: never a
request body, a token or a key.
"""
from __future__ import annotations

import datetime
import json
import os
import threading
from typing import Any

ANONYMOUS = "anonymous"


class AuditLog:
    """Appends audit records to ``path`` (created 0600; an existing file is tightened to 0600)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        os.fchmod(self._fd, 0o600)
        self._lock = threading.Lock()

    def record(self, action: str, outcome: str, *, principal: str = ANONYMOUS, remote: str = "",
               target: str = "", **details: Any) -> None:
        """Append one line: time, principal, remote, action, target, outcome and ``details``."""
        line = json.dumps({"time": _now(), "principal": principal, "remote": remote, "action": action,
                           "target": target, "outcome": outcome, **details},
                          separators=(",", ":"), default=str) + "\n"
        with self._lock:
            if self._fd >= 0:
                os.write(self._fd, line.encode())

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")

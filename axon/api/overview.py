"""The whole cluster as one node sees it, for the dashboard (GET /cluster/overview).

``merge_overview`` is pure: it joins this node's Raft status, its gossip view and the
``/cluster/status`` each member gave (or did not give) into one table plus a quorum
verdict.  ``StatusFetcher`` is the only I/O: it asks every member concurrently with a
short timeout, so one dead node makes the answer late by at most that timeout.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Mapping

import gevent

from axon.client.http import ClientError, HttpPool

FETCH_TIMEOUT = 0.8          # per member; the dashboard polls every second
GOSSIP_STATUSES = ("alive", "suspect", "dead", "left")
RAFT_ROLES = ("leader", "follower", "candidate", "learner")


class OverviewError(Exception):
    """The pieces given to merge_overview are not in the shape the node API promises."""


# ---------------------------------------------------------------------- pure merge
def majority(voters: int) -> int:
    return voters // 2 + 1


def quorum_summary(voter_ids: list[str], online: Mapping[str, bool], leader: str | None) -> dict:
    """Whether a majority of voters answers (and a leader is known), and how many more may fail."""
    reachable = sum(1 for v in voter_ids if online.get(v))
    needed = majority(len(voter_ids)) if voter_ids else 0
    has_quorum = bool(voter_ids) and reachable >= needed and leader is not None
    return {"has_quorum": has_quorum, "voters": len(voter_ids), "reachable_voters": reachable,
            "needed": needed, "failures_tolerated": reachable - needed if has_quorum else 0}


def _require(status: Any) -> dict:
    if not isinstance(status, dict):
        raise OverviewError("this node's status must be a JSON object")
    for name in ("node_id", "voters", "learners", "nodes"):
        if name not in status:
            raise OverviewError(f"this node's status lacks {name!r}")
    if not isinstance(status["nodes"], list) or not isinstance(status["voters"], list):
        raise OverviewError("this node's status has malformed 'nodes' or 'voters'")
    return status


def _valid_peer_status(node_id: str, answer: Any) -> tuple[dict | None, str | None]:
    """(status, None) if a member's answer is usable, else (None, why not)."""
    if answer is None:
        return None, "no answer"
    if isinstance(answer, str):
        return None, answer
    if not isinstance(answer, dict):
        return None, "invalid answer"
    if answer.get("node_id") != node_id:
        return None, f"answered as {answer.get('node_id')!r}"
    return answer, None


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _lag_or_none(value: Any) -> dict | None:
    """A member's {"last", "max", "recent_max"} event-loop lag (ms) if it is in that shape."""
    if not isinstance(value, dict):
        return None
    lag = {name: value.get(name) for name in ("last", "max", "recent_max")}
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in lag.values()):
        return lag
    return None


def _row(node_id: str, config_entry: dict | None, gossip: dict | None, answer: Any,
         voters: set[str], learners: set[str], last_contact: float | None) -> dict:
    status, error = _valid_peer_status(node_id, answer)
    role = status.get("state") if status else None
    addrs = config_entry or {}
    gossip = gossip or {}
    return {
        "node_id": node_id,
        "member": config_entry is not None,
        "voter": node_id in voters,
        "learner": node_id in learners,
        "http": addrs.get("http") or gossip.get("http") or "",
        "raft": addrs.get("raft") or gossip.get("raft") or "",
        "gossip": (status or {}).get("gossip") or gossip.get("gossip") or "",
        "gossip_status": gossip.get("status") if gossip.get("status") in GOSSIP_STATUSES else None,
        "online": status is not None,
        "role": role if role in RAFT_ROLES else None,
        "leader": (status or {}).get("leader"),
        "term": _int_or_none((status or {}).get("term")),
        "commit_index": _int_or_none((status or {}).get("commit_index")),
        "applied_index": _int_or_none((status or {}).get("applied_index")),
        "last_index": _int_or_none((status or {}).get("last_index")),
        "loop_lag_ms": _lag_or_none((status or {}).get("loop_lag_ms")),
        **_about(status or {}),
        "alarms": _alarms((status or {}).get("alarms")),
        "lag": None,
        "last_contact": None if last_contact is None else round(max(0.0, last_contact), 1),
        "error": error,
    }


def _about(status: dict) -> dict:
    """A member's version, uptime and sizes (None where it gave none, e.g. an older node)."""
    version = status.get("version")
    uptime = status.get("uptime_s")
    return {"version": version if isinstance(version, str) else None,
            "uptime_s": uptime if isinstance(uptime, (int, float)) and not isinstance(uptime, bool) else None,
            "data_bytes": _int_or_none(status.get("data_bytes")),
            "wal_bytes": _int_or_none(status.get("wal_bytes"))}


def merge_overview(self_status: dict, gossip_view: list[dict] | None,
                   answers: Mapping[str, Any], last_contact: Mapping[str, float] | None = None) -> dict:
    """One table of every node known by Raft config or gossip, plus the quorum verdict.

    ``answers`` maps node id -> that node's /cluster/status (a dict), or an error string /
    None when it did not answer; ``last_contact`` maps node id -> seconds since its last answer.
    """
    status = _require(self_status)
    voters, learners = set(status["voters"]), set(status.get("learners") or [])
    config = {n["node_id"]: n for n in status["nodes"] if isinstance(n, dict) and "node_id" in n}
    gossip = {m["node_id"]: m for m in (gossip_view or []) if isinstance(m, dict) and "node_id" in m}
    contact = last_contact or {}
    answers = dict(answers)
    answers[status["node_id"]] = status     # this node always answers itself
    ids = sorted(set(config) | set(gossip) | voters | learners)
    rows = [_row(nid, config.get(nid), gossip.get(nid), answers.get(nid), voters, learners,
                 0.0 if nid == status["node_id"] else contact.get(nid)) for nid in ids]
    _fill_lag(rows)
    leader = _leader(status, rows)
    online = {r["node_id"]: r["online"] for r in rows}
    return {
        "node_id": status["node_id"],
        "leader": leader,
        "term": _int_or_none(status.get("term")),
        "voters": sorted(voters),
        "learners": sorted(learners),
        "gossip_enabled": gossip_view is not None,
        "quorum": quorum_summary(sorted(voters), online, leader),
        "nodes": rows,
        # the dashboard polls only the overview: every node's alarms and the join rule ride along
        "alarms": sorted({alarm for row in rows for alarm in row["alarms"]}),
        "join_requires_proof": bool(status.get("join_requires_proof")),
    }


def _alarms(value: Any) -> list[str]:
    """A status's alarms as a list of strings (anything else: none)."""
    return [a for a in value if isinstance(a, str)] if isinstance(value, list) else []


def _fill_lag(rows: list[dict]) -> None:
    """Lag = how far a node's applied index trails the highest commit index any node reports."""
    commits = [r["commit_index"] for r in rows if r["commit_index"] is not None]
    if not commits:
        return
    top = max(commits)
    for r in rows:
        if r["applied_index"] is not None:
            r["lag"] = max(0, top - r["applied_index"])


def _leader(status: dict, rows: list[dict]) -> str | None:
    """The leader of the highest term any online node reports (a deposed leader may lag)."""
    best: tuple[int, str] | None = None
    for r in rows:
        if r["online"] and r["leader"] and r["term"] is not None:
            if best is None or r["term"] > best[0]:
                best = (r["term"], r["leader"])
    if best is not None:
        return best[1]
    return status.get("leader")


# ---------------------------------------------------------------------- I/O
class StatusFetcher:
    """Asks members for /cluster/status concurrently; remembers when each last answered."""

    def __init__(self, pool: HttpPool, timeout: float = FETCH_TIMEOUT,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.pool = pool
        self.timeout = timeout
        self.clock = clock
        self._last_answer: dict[str, float] = {}

    def fetch(self, targets: Mapping[str, str], headers: Mapping[str, str] | None = None,
              path: str = "/cluster/status") -> dict[str, dict | str]:
        """node id -> its status dict (or what ``path`` answers), or a short error string; never
        raises, never waits past the timeout.

        ``headers``: the asking client's Authorization, so that with auth on members answer it
        (a status page for a token is one for every node's, not an anonymous 401)."""
        ids = [nid for nid, addr in targets.items() if addr]
        jobs = [gevent.spawn(self._one, targets[nid], dict(headers or {}), path) for nid in ids]
        gevent.joinall(jobs, timeout=self.timeout + 0.2)
        out: dict[str, dict | str] = {nid: "no http address" for nid, addr in targets.items() if not addr}
        now = self.clock()
        for nid, job in zip(ids, jobs):
            if not job.ready():
                job.kill(block=False)
                out[nid] = "timed out"
            elif job.successful():
                out[nid] = job.value
                if isinstance(job.value, dict) and job.value.get("node_id") == nid:
                    self._last_answer[nid] = now
            else:
                out[nid] = "error"
        return out

    def _one(self, addr: str, headers: dict[str, str], path: str) -> dict | str:
        try:
            resp = self.pool.request("GET", addr, path, None, headers, timeout=self.timeout)
            body = resp.json()
        except ClientError as exc:
            return str(exc)
        if resp.status != 200:
            return f"HTTP {resp.status}"
        return body if isinstance(body, dict) else "invalid answer"

    def seconds_since(self) -> dict[str, float]:
        """node id -> seconds since it last answered."""
        now = self.clock()
        return {nid: now - t for nid, t in self._last_answer.items()}


def collect_overview(fetcher: StatusFetcher, self_status: dict, gossip_view: list[dict] | None,
                     headers: Mapping[str, str] | None = None) -> dict:
    """Fetch every other member's status and merge everything (what the route answers)."""
    status = _require(self_status)
    targets: dict[str, str] = {}
    for n in status["nodes"]:
        if isinstance(n, dict) and n.get("node_id") and n["node_id"] != status["node_id"]:
            targets[n["node_id"]] = n.get("http") or ""
    for m in gossip_view or []:
        nid = m.get("node_id") if isinstance(m, dict) else None
        if nid and nid != status["node_id"] and not targets.get(nid) and m.get("status") != "left":
            targets[nid] = m.get("http") or ""
    answers = fetcher.fetch(targets, headers)
    return merge_overview(status, gossip_view, answers, fetcher.seconds_since())

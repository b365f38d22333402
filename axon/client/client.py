"""``axon.client.Client``: the public Python client of a cluster, over several endpoints.

    from axon.client import Client
    with Client(["10.0.0.5:7000", "10.0.0.6:7000"], token=...) as c:
        c.put("app/config", "v1")
        for event in c.watch(prefix="app/"):
            print(event.kind, event.key, event.value, event.revision)

Any node answers (followers pass writes on to the leader), so the client sticks to one
endpoint and moves to the next when it cannot be reached or has no leader.  It sends a
request again only where that cannot change the outcome: reads and watches always; writes
and transactions only when they never reached a node (e.g. connection refused).  A write
whose answer was lost raises ``OutcomeUnknown``: it may or may not have been applied.

A watch is an iterator that survives node failures: it remembers how far it delivered
(axon/client/watchcursor.py) and resumes from the next endpoint with ``Last-Event-ID``,
so no change is lost or repeated, even when a stream broke partway through a revision.
Past the retained history it raises ``WatchCompacted``: re-read the keys, then watch from
``compacted_revision + 1``.

It is the one client in the project: the CLI, the launcher, a joining node, the test
harness and the benchmarks use it too, most of them with ``retry_for=0`` (one try of each
endpoint) and, inside a node, the node's own connection pool.
"""
from __future__ import annotations

import http.client
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence
from urllib.parse import quote, urlencode

from axon.client.http import ClientError, HttpPool, kv_path
from axon.client.lock import Session
from axon.client.sse import EventParser, StreamError
from axon.client.watchcursor import WatchCursor

if TYPE_CHECKING:
    from axon.client.election import Election
    from axon.client.lock import Lock

RETRY_STATUSES = (503,)      # no leader, no quorum, or the node is busy: another node may answer
RETRY_PAUSE = 0.2            # seconds between rounds of the endpoints when none answered
READ_TIMEOUT_SLACK = 15.0    # a watch hears from the node at least every progress interval (<= 10 s)


class OutcomeUnknown(ClientError):
    """A write or transaction was sent but its answer lost: it may or may not have been applied."""


class WatchCompacted(ClientError):
    """The watch's start is older than the history the node keeps (``compacted_revision``)."""

    def __init__(self, message: str, compacted_revision: int) -> None:
        super().__init__(message, 410, {"error": message, "compacted_revision": compacted_revision})
        self.compacted_revision = compacted_revision


@dataclass(frozen=True, slots=True)
class WatchEvent:
    kind: str               # "put" | "delete"
    key: str
    value: str | None       # None for a delete
    revision: int


class Client:
    """Keys, transactions, watches and the cluster's administration on a cluster.

    ``retry_for`` bounds how long one call keeps trying (every endpoint is tried once even at 0);
    ``pool`` shares connections (a node's own pool, which may speak TLS to its peers); without
    one the client makes its own, trusting ``cacert`` for https:// endpoints, and closes it.
    """

    def __init__(self, endpoints: Sequence[str] | str, token: str | None = None, cacert: str | None = None,
                 timeout: float = 10.0, retry_for: float = 15.0, pool: HttpPool | None = None) -> None:
        self.endpoints = [endpoints] if isinstance(endpoints, str) else list(endpoints)
        if not self.endpoints:
            raise ValueError("give at least one endpoint (host:port, or https://host:port)")
        self.timeout = timeout
        self.retry_for = retry_for
        self._owns_pool = pool is None
        self.pool = HttpPool(timeout, cacert=cacert) if pool is None else pool
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._current = 0

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_pool:
            self.pool.close()

    # ------------------------------------------------------------------ keys
    def get(self, key: str, stale: bool = False) -> dict | None:
        """``{"key", "value", "revision"}``, or None when the key does not exist."""
        return self.call("GET", kv_path(key) + ("?stale=true" if stale else ""), ok=(200, 404),
                         missing=None)

    def put(self, key: str, value: str, if_revision: int | None = None, if_absent: bool = False,
            lease: "int | Lease | None" = None) -> dict:
        """Set a key; ``if_revision`` (0: must not exist) or ``if_absent`` make it a compare-and-swap
        (a failed one raises ClientError with status 412); ``lease`` (a Lease or its id) attaches
        the key to it (an unknown lease raises ClientError with status 404)."""
        headers = {}
        if if_revision is not None:
            headers["If-Match"] = str(if_revision)
        if if_absent:
            headers["If-None-Match"] = "*"
        path = kv_path(key)
        if lease is not None:
            path += f"?lease={lease.id if isinstance(lease, Lease) else int(lease)}"
        return self.call("PUT", path, {"value": value}, headers, write=True)

    def delete(self, key: str, if_revision: int | None = None) -> dict | None:
        """Delete a key: ``{"key", "value", "revision"}``, or None when it did not exist."""
        headers = {"If-Match": str(if_revision)} if if_revision is not None else {}
        return self.call("DELETE", kv_path(key), None, headers, write=True, ok=(200, 404), missing=None)

    def list(self, prefix: str = "", page_size: int = 1000, stale: bool = False) -> Iterator[dict]:
        """Every key under ``prefix`` in order, page by page (each page one request)."""
        after = None
        while True:
            page = self.list_page(prefix, page_size, after, stale)
            yield from page["items"]
            after = page["next"]
            if after is None:
                return

    def list_page(self, prefix: str = "", limit: int = 100, after: str | None = None,
                  stale: bool = False) -> dict:
        """One page of keys (``GET /kv``): ``{"items", "next"}``, ``next`` None on the last page."""
        query: dict[str, Any] = {"prefix": prefix, "limit": limit}
        if after is not None:
            query["after"] = after
        if stale:
            query["stale"] = "true"
        return self.call("GET", "/kv?" + urlencode(query))

    def txn(self, compare: Sequence[Mapping] = (), success: Sequence[Mapping] = (),
            failure: Sequence[Mapping] = ()) -> dict:
        """One transaction (``POST /txn``): ``{"succeeded", "revision", "results"}``."""
        body = {"compare": list(compare), "success": list(success), "failure": list(failure)}
        return self.call("POST", "/txn", body, write=True)

    # ------------------------------------------------------------------ the cluster
    def status(self) -> dict:
        return self.call("GET", "/cluster/status")

    def members(self) -> list:
        return self.call("GET", "/cluster/members")

    def join(self, node_id: str, raft: str, http_addr: str, gossip: str = "",
             cluster_id: str | None = None, proof: dict | None = None) -> dict:
        """Ask to add a node; ``cluster_id`` (the cluster it belongs to) and ``proof`` (of the
        cluster key, axon/api/admission.py) are sent when given."""
        body: dict[str, Any] = {"node_id": node_id, "raft": raft, "http": http_addr, "gossip": gossip}
        if cluster_id is not None:
            body["cluster_id"] = cluster_id
        if proof is not None:
            body["proof"] = proof
        return self.call("POST", "/cluster/join", body, ok=(200, 202))

    def leave(self) -> dict:
        """Take the first endpoint's node out of the cluster (never another one in its place)."""
        self._current = 0
        return self.call("POST", "/cluster/leave", failover=False)

    def remove(self, node_id: str) -> dict:
        return self.call("DELETE", "/cluster/nodes/" + quote(node_id, safe=""))

    def auth_enable(self) -> dict:
        return self.call("POST", "/auth/enable", ok=(201,))

    def token_create(self, name: str, role: str, prefix: str = "") -> dict:
        return self.call("POST", "/auth/tokens", {"name": name, "role": role, "prefix": prefix}, ok=(201,))

    def token_list(self) -> dict:
        return self.call("GET", "/auth/tokens")

    def token_revoke(self, name: str) -> dict:
        return self.call("DELETE", "/auth/tokens/" + quote(name, safe=""))

    # ------------------------------------------------------------------ leases, locks and elections
    def lease(self, ttl: float) -> "Lease":
        """Grant a lease of ``ttl`` seconds, kept alive by a thread until ``revoke()`` (or the end
        of ``with c.lease(ttl) as lease:``); attach keys with ``put(key, value, lease=lease)``."""
        return Lease(self, ttl)

    def lease_grant(self, ttl: float) -> dict:
        """Grant a lease with no keepalive thread (``lease()`` has one): ``{"id", "ttl"}``."""
        return self.call("POST", "/leases", {"ttl": ttl}, write=True, ok=(201,))

    def lease_keepalive(self, lease_id: int) -> dict:
        """One keepalive of a lease by id: ``{"id", "ttl"}`` (ClientError 404 once it is gone)."""
        return self.call("POST", f"/leases/{int(lease_id)}/keepalive", {}, write=False)

    def lease_revoke(self, lease_id: int) -> dict:
        """Revoke a lease by id, deleting its keys: ``{"id", "revision", "deleted"}``."""
        return self.call("DELETE", f"/leases/{int(lease_id)}", write=True)

    def lease_info(self, lease_id: int) -> dict | None:
        """``{"id", "ttl", "remaining", "keys"}`` of a lease, or None when it does not exist."""
        return self.call("GET", f"/leases/{int(lease_id)}", ok=(200, 404), missing=None)

    def lock(self, name: str, ttl: float = 10.0, timeout: float | None = None, value: str = "") -> "Lock":
        """A distributed lock (axon/client/lock.py): ``with c.lock(name) as lock:`` holds it, with
        ``lock.token`` its fencing token; ``lock.acquire(timeout)`` / ``release()`` by hand."""
        from axon.client.lock import Lock
        return Lock(self, name, ttl, value=value, timeout=timeout)

    def election(self, name: str, ttl: float = 10.0) -> "Election":
        """A leader election (axon/client/election.py): campaign, resign, leader, observe."""
        from axon.client.election import Election
        return Election(self, name, ttl)

    # ------------------------------------------------------------------ watches
    def watch(self, key: str | None = None, prefix: str | None = None,
              from_revision: int | None = None) -> Iterator[WatchEvent]:
        """Changes to ``key`` or under ``prefix`` (from ``from_revision``, else from now), forever.

        Resumes on another endpoint when a node fails; raises WatchCompacted past the history
        and ClientError when no endpoint answers within ``retry_for``.  Closing the generator
        (or leaving the for loop) closes the stream.
        """
        if (key is None) == (prefix is None):
            raise ValueError("give exactly one of key and prefix")
        query = {"key": key} if key is not None else {"prefix": prefix}
        cursor = WatchCursor(None if from_revision is None else from_revision - 1)
        failing_since = None
        while True:
            try:
                stream = self._open_watch(query, cursor.resume_after())
            except ClientError as exc:
                failing_since = failing_since or time.monotonic()
                if exc.status not in (0, *RETRY_STATUSES) or time.monotonic() - failing_since > self.retry_for:
                    raise
                self._next_endpoint()
                time.sleep(0.1)
                continue
            failing_since = None
            cursor.new_stream(stream.start)
            try:
                for event in stream.events():
                    if event.kind == "progress":
                        cursor.progress(event.revision)
                    elif cursor.change(event.revision):
                        yield event
            finally:
                stream.close()
            self._next_endpoint()   # the stream ended or broke: resume elsewhere

    def _open_watch(self, query: dict, resume_after: int | None) -> "_WatchStream":
        headers = dict(self._headers)
        if resume_after is not None:
            headers["Last-Event-ID"] = str(resume_after)
        addr = self.endpoints[self._current]
        conn = self.pool.new_connection(addr, self.timeout)
        try:
            conn.request("GET", "/watch?" + urlencode(query), headers=headers)
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise ClientError(f"{addr}: {exc}") from None
        if resp.status != 200:
            body = _json(resp.read())
            conn.close()
            message = body.get("error") if isinstance(body, dict) else None
            if resp.status == 410 and isinstance(body, dict) and type(body.get("compacted_revision")) is int:
                raise WatchCompacted(message or "compacted", body["compacted_revision"])
            raise ClientError(message or f"HTTP {resp.status}", resp.status, body)
        conn.sock.settimeout(self.timeout + READ_TIMEOUT_SLACK)
        start = resp.getheader("X-Axon-Start-Revision", "")
        return _WatchStream(conn, resp, int(start) if start.isdigit() else (resume_after or 0) + 1)

    # ------------------------------------------------------------------ the one request path
    def call(self, method: str, path: str, payload: Any = None, headers: Mapping[str, str] | None = None,
             ok: tuple[int, ...] = (200,), write: bool | None = None, missing: Any = ...,
             failover: bool = True) -> Any:
        """Any request of the API: the JSON answer when its status is in ``ok`` (``missing`` for a
        404 when given), else ClientError.  ``write`` (by default: any method but GET and HEAD) is
        sent again only when it never reached a node; a lost answer raises OutcomeUnknown.
        Without ``failover`` the request goes to the current endpoint only (it names that node)."""
        if write is None:
            write = method not in ("GET", "HEAD")
        body = json.dumps(payload).encode() if payload is not None else None
        hdrs = {**self._headers, **(headers or {})}
        deadline = time.monotonic() + self.retry_for
        tried = 0
        while True:
            addr = self.endpoints[self._current]
            tried += 1
            try:
                resp = self.pool.request(method, addr, path, body, hdrs, self.timeout)
            except ClientError as exc:
                if write and not exc.unsent:
                    raise OutcomeUnknown(f"{exc}; the {method} may or may not have been applied") from None
                if not failover or not self._go_on(tried, deadline):
                    raise
                continue
            data = resp.json()
            if (resp.status in RETRY_STATUSES and failover and not _maybe_applied(write, data)
                    and self._go_on(tried, deadline)):
                continue
            if resp.status == 404 and missing is not ...:
                return missing
            if resp.status not in ok:
                message = data.get("error") if isinstance(data, dict) else None
                raise ClientError(message or f"HTTP {resp.status}", resp.status, data)
            return data

    def _go_on(self, tried: int, deadline: float) -> bool:
        """Whether a failed call tries again, on the next endpoint: always until each was tried
        once, then until ``deadline``, pausing after each round so a dead cluster is not spun on."""
        if tried < len(self.endpoints):
            self._next_endpoint()
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        self._next_endpoint()
        if tried % len(self.endpoints) == 0:
            time.sleep(min(RETRY_PAUSE, left))
        return True

    def _next_endpoint(self) -> None:
        self._current = (self._current + 1) % len(self.endpoints)


class Lease(Session):
    """A granted lease (``id``, ``ttl``) and its keepalive thread: one keepalive every ttl/3, sent to
    whichever endpoint answers (so it survives a node's failure); ``valid`` turns False once no
    keepalive was acknowledged for a TTL, or the lease was found gone."""

    def __init__(self, client: Client, ttl: float) -> None:
        super().__init__(client, ttl)
        self.ttl = int(self.granted_ttl)

    def revoke(self) -> None:
        """Stop the keepalives and revoke the lease: its keys are deleted (at one revision)."""
        self.close()

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, *exc: object) -> None:
        self.revoke()


def _maybe_applied(write: bool, data: Any) -> bool:
    """Whether a write refused with 503 may still have been applied (its outcome is unknown).

    A node answers 503 "no leader" before proposing anything; a proposal that timed out says
    "outcome unknown", and sending it again could apply it twice.
    """
    text = data.get("error", "") if isinstance(data, dict) else ""
    return write and "outcome unknown" in text


def _json(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


class _WatchStream:
    """One open /watch answer: its events until the node ends the stream or the connection breaks."""

    def __init__(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse, start: int) -> None:
        self.conn = conn
        self.resp = resp
        self.start = start

    def events(self) -> Iterator[WatchEvent]:
        """Changes and progress marks (kind "progress"); raises WatchCompacted on a final event
        that says the history no longer reaches back; returns when the stream ends."""
        parser = EventParser()
        while True:
            try:
                chunk = self.resp.read1(65536)
            except (OSError, ValueError, http.client.HTTPException):
                return
            if not chunk:
                return
            try:
                events = parser.feed(chunk)
            except StreamError:
                return
            for event in events:
                data = _json(event.data.encode())
                if not isinstance(data, dict):
                    continue
                if event.event in ("put", "delete") and type(data.get("revision")) is int:
                    yield WatchEvent(event.event, data.get("key", ""), data.get("value"), data["revision"])
                elif event.event == "progress" and type(data.get("revision")) is int:
                    yield WatchEvent("progress", "", None, data["revision"])
                elif event.event == "error":
                    if type(data.get("compacted_revision")) is int:
                        raise WatchCompacted(str(data.get("error")), data["compacted_revision"])
                    return   # cut (fell behind, node stopping): resume elsewhere from the last revision

    def close(self) -> None:
        self.conn.close()

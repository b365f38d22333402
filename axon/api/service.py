"""The rules of the API: validation, CAS, consistency levels, membership.

The web layer calls this; this calls the Raft node and reads the store, returns plain
results and raises domain errors (axon/api/errors.py).  An operation that needs the
leader raises NotLeader on any other node: passing the request on to the leader is the
web layer's job, so every leader-only operation is passed on the same way.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Protocol

from axon.api import validate
from axon.api.admission import JoinAdmission
from axon.api.leases import LeaseService, lease_refusal, parse_lease_id
from axon.api.errors import (ApiError, Conflict, InvalidInput, NoSpace, NotFound, NotLeader, from_raft,
                             RevisionMismatch, Unauthenticated, Unavailable)
from axon.api.overview import StatusFetcher, collect_overview
from axon.client.http import HttpPool
from axon.config import NodeConfig
from axon.gossip.ratelimit import LogLimiter
from axon.api.txn import parse_txn, txn_reply
from axon.api.writebudget import WriteBudget
from axon.kv.commands import Delete, Put, Result, Txn, command_size
from axon.kv.leases import LEASE_FULL, LEASE_NOT_FOUND, LeaseTable
from axon.kv.store import StoreError
from axon.raft.core import ConfChange
from axon.raft.errors import RaftError
from axon.raft.types import ClusterConfig, Member

log = logging.getLogger("axon.api.service")
REFUSAL_LOG_INTERVAL = 60.0   # one line per refused joiner and reason a minute: retries would flood the log


class Consensus(Protocol):
    """What the service needs of the Raft node (axon.raft.node.RaftNode; a fake in tests)."""

    @property
    def leader_id(self) -> str | None: ...
    @property
    def is_leader(self) -> bool: ...
    @property
    def config(self) -> ClusterConfig: ...
    @property
    def applied_index(self) -> int: ...
    def leader_http(self) -> str | None: ...
    def status(self) -> dict: ...
    def propose(self, items: list, timeout: float) -> list: ...
    def read_barrier(self, timeout: float) -> None: ...
    def change_membership(self, change: ConfChange, timeout: float) -> None: ...


class DataSet(Protocol):
    """The reads the service makes of the local data (axon.kv.store.Store)."""

    def get(self, key: str) -> tuple[str, int] | None: ...
    @property
    def leases(self) -> LeaseTable: ...
    def scan(self, prefix: str = "", after: str | None = None, limit: int = 100,
             max_bytes: int | None = None) -> tuple[list[tuple[str, str, int]], str | None]: ...


class KVService:
    def __init__(self, config: NodeConfig, node: Consensus, store: DataSet, pool: HttpPool,
                 members_view: Callable[[], list[dict]] | None = None,
                 cluster_id: Callable[[], str | None] = lambda: None,
                 admission: JoinAdmission | None = None,
                 loop_lag: Callable[[], dict] | None = None,
                 alarms: Callable[[], list[str]] = list,
                 cluster_alarms: Callable[[], list[str]] = list) -> None:
        """``cluster_id()``: the id of this node's cluster (None while unknown); ``admission``
        checks a join's proof of the cluster key (by default with config.cluster_key);
        ``loop_lag()``: the event loop's lag in ms (axon/node/looplag.py), None unmeasured;
        ``alarms()``: this node's raised alarms; ``cluster_alarms()``: those of any member,
        which make this node, as leader, refuse writes that add data."""
        self.config = config
        self.node = node
        self.store = store
        self.leases = LeaseService(config, node, lambda: store.leases, check_space=self.check_space)
        self.members_view = members_view
        self.cluster_id = cluster_id
        self.loop_lag = loop_lag
        # version, uptime_s, data_bytes, wal_bytes for the status (axon/node/stats.py NodeFacts)
        self.about: Callable[[], dict] | None = None
        self.write_budget = WriteBudget(config.write_queue_bytes)
        self.alarms = alarms
        self.cluster_alarms = cluster_alarms
        self.admission = admission if admission is not None else JoinAdmission(config.cluster_key)
        self.status_fetcher = StatusFetcher(pool)
        self._refusal_lines = LogLimiter(REFUSAL_LOG_INTERVAL)

    # ------------------------------------------------------------------ KV
    def put(self, raw_key: str, body: bytes, if_match: str | None = None,
            if_none_match: str | None = None, lease: str | None = None) -> dict:
        """Set a key from a ``{"value": ...}`` body; the conditions are the raw If-Match/If-None-Match,
        ``lease`` the raw ``?lease=`` id the key is attached to (None: the key has no lease)."""
        key = validate.key(raw_key, self.config.max_key_bytes)
        value = validate.put_value(body, self.config.max_value_bytes)
        cmd = Put(key, value, if_revision=validate.if_match(if_match),
                  if_absent=validate.if_none_match(if_none_match),
                  lease=parse_lease_id(lease) if lease is not None else 0)
        self.check_space()
        return self._write(cmd)

    def delete(self, raw_key: str, if_match: str | None = None) -> dict:
        key = validate.key(raw_key, self.config.max_key_bytes)
        return self._write(Delete(key, if_revision=validate.if_match(if_match)))

    def get(self, raw_key: str, stale: str | None = None) -> dict:
        key = validate.key(raw_key, self.config.max_key_bytes)
        self.write_budget.note_other_request()   # large writes then leave it room
        if not validate.boolean(stale, "stale"):
            self._read_barrier()
        found = self._local(lambda: self.store.get(key))
        if found is None:
            raise NotFound(f"key {key!r} not found", key=key)
        value, revision = found
        return {"key": key, "value": value, "revision": revision}

    def list(self, prefix: str | None = None, limit: str | None = None, after: str | None = None,
             stale: str | None = None) -> dict:
        count = validate.limit(limit)
        self.write_budget.note_other_request()
        if not validate.boolean(stale, "stale"):
            self._read_barrier()
        items, nxt = self._local(lambda: self.store.scan(prefix or "", after or None, count,
                                                         self.config.max_page_bytes))
        return {"items": [{"key": k, "value": v, "revision": r} for k, v, r in items], "next": nxt}

    def parse_txn(self, body: bytes) -> Txn:
        """The transaction a request body describes (axon/api/txn.py), within this node's limits."""
        return parse_txn(body, self.config.max_key_bytes, self.config.max_value_bytes)

    def txn(self, txn: Txn) -> dict:
        """Run a transaction in one entry: ``{"succeeded", "revision", "results"}``."""
        if any(isinstance(op, Put) for op in txn.success + txn.failure):
            self.check_space()
        result = self._propose(txn)
        if not result.ok:
            raise lease_refusal(result.error)
        return txn_reply(result, txn)

    def check_space(self) -> None:
        """NoSpace while a disk alarm is raised anywhere in the cluster (deletes never ask)."""
        raised = self.cluster_alarms()
        if raised:
            raise NoSpace(f"writes are refused while the alarm {', '.join(raised)} is raised "
                          f"(a node is short of disk space); reads and deletes still work",
                          alarms=list(raised))

    def _local(self, read: Callable[[], Any]) -> Any:
        try:
            return read()
        except StoreError as exc:   # e.g. a snapshot is being installed
            raise Unavailable(f"local store unavailable: {exc}", leader=self.node.leader_id) from None

    def _write(self, cmd: Put | Delete) -> dict:
        return _result(self._propose(cmd))

    def _propose(self, cmd: Put | Delete | Txn) -> Result:
        """One command through the log, its result once applied; a large one waits its turn
        (WriteBudget) so that small writes never queue behind many MiB of values."""
        timeout = self.config.request_timeout
        share = self.write_budget.acquire(command_size(cmd), timeout)
        try:
            [result] = self.node.propose([cmd], timeout)
        except RaftError as exc:
            raise self._refusal(exc) from None
        finally:
            self.write_budget.release(share)
        return result

    def _read_barrier(self) -> None:
        """Return once a local read is linearizable (NotLeader on a follower)."""
        try:
            self.node.read_barrier(self.config.request_timeout)
        except RaftError as exc:
            raise self._refusal(exc) from None

    def _refusal(self, exc: RaftError) -> ApiError:
        return from_raft(exc, self.node.leader_id)

    # ------------------------------------------------------------------ cluster
    def status(self) -> dict:
        st = self.node.status()
        st["http"] = self.config.http
        st["raft"] = self.config.raft
        st["gossip"] = self.config.gossip
        st["leader_http"] = self.node.leader_http()
        st["cluster_id"] = self.cluster_id()
        st["join_requires_proof"] = self.admission.required   # the dashboard cannot make one
        st["loop_lag_ms"] = self.loop_lag() if self.loop_lag is not None else None
        if self.about is not None:
            st.update(self.about())
        st["alarms"] = list(self.alarms())
        online = self._online()
        members = st.pop("members")
        st["nodes"] = [{"node_id": nid, "raft": m["raft"], "http": m["http"],
                        "voter": nid in st["voters"], "online": online.get(nid)}
                       for nid, m in sorted(members.items())]
        return st

    def overview(self, authorization: str | None = None) -> dict:
        """The whole cluster as this node sees it, each member's status asked concurrently
        (with the client's ``authorization``, so members with auth on answer)."""
        gossip = self.members_view() if self.members_view is not None else None
        headers = {"Authorization": authorization} if authorization else None
        return collect_overview(self.status_fetcher, self.status(), gossip, headers)

    def _online(self) -> dict[str, bool | None]:
        if self.members_view is None:
            return {}
        return {m["node_id"]: m["status"] == "alive" for m in self.members_view()}

    def members(self) -> list[dict]:
        if self.members_view is not None:
            return self.members_view()
        return [{"node_id": nid, "status": "unknown", "http": m.http, "raft": m.raft, "gossip": ""}
                for nid, m in sorted(self.node.config.members().items())]

    def member_addresses(self) -> dict[str, str]:
        """node id -> http address of every member of the Raft configuration."""
        return {nid: m.http for nid, m in self.node.config.members().items()}

    def known_addresses(self) -> dict[str, str]:
        """node id -> http address of every node known: gossip's view (removed nodes too), then Raft's."""
        known = {m["node_id"]: m["http"] for m in self.members_view() if m.get("http")} \
            if self.members_view is not None else {}
        known.update(self.member_addresses())
        return known

    def leader(self) -> str | None:
        return self.node.leader_id

    def health(self) -> dict:
        return {"status": "ok", "node_id": self.config.node_id}

    def ready(self) -> dict:
        """Ready = a leader is known and this node has applied nearly all it knows committed."""
        st = self.node.status()
        if st["leader"] is None:
            raise Unavailable("no leader known", leader=None)
        if self.node.applied_index + 100 < st["commit_index"]:
            raise Unavailable("catching up", leader=st["leader"])
        return {"status": "ready", "leader": st["leader"]}

    def join(self, body: bytes) -> dict:
        """Add the node a join body names as a learner; ``status`` says whether it votes yet.

        Only the leader judges a join (a follower's NotLeader passes the body on unchanged):
        the proof of the cluster key first, then the cluster the joiner says it belongs to.
        """
        data = validate.json_object(body, validate.JOIN_BODY_LIMIT)
        req = validate.join_request(data)
        if not self.node.is_leader:
            raise NotLeader(self.node.leader_id, self.node.leader_http())
        self._admit(req, data.get("proof"))
        node_id, raft, http = req.node_id, req.raft, req.http
        config = self.node.config
        existing = config.members().get(node_id)
        if existing is not None and existing != Member(raft, http):
            raise Conflict(f"node {node_id} is already a member with other addresses "
                           f"(raft {existing.raft}, http {existing.http}); remove it first")
        if node_id in config.voters:
            return self._join_answer("voter")
        if node_id not in config.learners:
            self._change(ConfChange("add_learner", node_id, Member(raft, http)))
            log.info("member %s added as learner (raft %s, http %s)", node_id, raft, http)
        return self._join_answer("learner")

    def _join_answer(self, role: str) -> dict:
        gossip = {m["node_id"]: m["gossip"] for m in self.members_view()} if self.members_view else {}
        members = {nid: {"raft": m.raft, "http": m.http, "gossip": gossip.get(nid, "")}
                   for nid, m in self.node.config.members().items()}
        return {"status": role, "leader": self.node.leader_id, "members": members,
                "cluster_id": self.cluster_id()}

    def _admit(self, req: validate.JoinRequest, proof: object) -> None:
        """Refuse a joiner that did not prove the cluster key, or that belongs to another cluster."""
        try:
            self.admission.check(req, proof)
        except Unauthenticated as exc:
            self._log_refusal(req, exc.message, "key")
            raise
        ours = self.cluster_id()
        if req.cluster_id is not None and req.cluster_id != ours:
            # A joiner only learns an id from this cluster's join answers, so another id (or any
            # id, when this cluster has none) means it is a member of another cluster.
            message = (f"join refused: node {req.node_id} belongs to cluster {req.cluster_id}, "
                       f"not {ours or 'this one (which has no id)'}; refusing")
            self._log_refusal(req, message, "cluster")
            raise Conflict(message, cluster_id=ours)

    def _log_refusal(self, req: validate.JoinRequest, message: str, kind: str) -> None:
        if self._refusal_lines.allow((req.node_id, kind), time.monotonic()):
            log.warning("%s (node %s, raft %s, http %s)", message, req.node_id, req.raft, req.http)

    def remove(self, node_id: str) -> dict:
        config = self.node.config
        if not config.is_member(node_id):
            raise NotFound(f"node {node_id!r} is not a member", node_id=node_id)
        if set(config.voters) == {node_id}:   # raft refuses it too, but retrying never helps: not a 503
            raise Conflict(f"node {node_id!r} is the last voter: removing it would leave no one to decide")
        self._change(ConfChange("remove", node_id))
        log.info("member %s removed", node_id)
        return {"removed": node_id}

    def leave(self) -> dict:
        """Remove this node from the cluster."""
        return self.remove(self.config.node_id)

    def _change(self, change: ConfChange) -> None:
        try:
            self.node.change_membership(change, self.config.request_timeout)
        except RaftError as exc:
            raise self._refusal(exc) from None


def _result(result: Result) -> dict:
    if result.ok:
        return {"key": result.key, "value": result.value, "revision": result.revision}
    if result.error == "conflict":
        raise RevisionMismatch("revision mismatch", key=result.key, revision=result.revision)
    if result.error == "not_found":
        raise NotFound(f"key {result.key!r} not found", key=result.key)
    if result.error in (LEASE_NOT_FOUND, LEASE_FULL):
        raise lease_refusal(result.error)
    raise InvalidInput(f"command rejected: {result.error}")

"""The rules of the API: validation, CAS, consistency levels, and forwarding to the leader.

HTTP handlers call this; this calls the Raft node and reads the store; nothing here
knows about bottle.  Writes and linearizable reads that reach a follower are
forwarded to the leader over the pooled client, and the caller gets one answer.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from axon.api import validate
from axon.client.http import ClientError, HttpPool, kv_path
from axon.kv.commands import Delete, Put, Result
from axon.config import NodeConfig
from axon.raft.errors import NotLeader as NotLeaderError, RaftError
from axon.api.errors import (BadRequest, Conflict, NotFound, PreconditionFailed,
                     Unavailable)
from axon.api.overview import StatusFetcher, collect_overview
from axon.raft.core import ConfChange
from axon.raft.node import RaftNode
from axon.raft.types import Member
from axon.kv.store import Store, StoreError

log = logging.getLogger("axon.api.service")

FORWARD_HEADER = "X-Axon-Forwarded"
ORIGIN_HEADER = "X-Axon-Origin"   # the node that forwarded a request


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


def ok(body: Any, status: int = 200) -> Reply:
    return Reply(status, body)


class KVService:
    def __init__(self, config: NodeConfig, node: RaftNode, store: Store, pool: HttpPool,
                 members_view: Callable[[], list[dict]] | None = None) -> None:
        self.config = config
        self.node = node
        self.store = store
        self.pool = pool
        self.members_view = members_view
        self.status_fetcher = StatusFetcher(pool)

    # ------------------------------------------------------------------ KV
    def put(self, raw_key: str, body: bytes, if_match: str | None, if_none_match: str | None,
            forwarded: int = 0) -> Reply:
        key = validate.key(raw_key, self.config.max_key_bytes)
        value = validate.put_value(body, self.config.max_value_bytes)
        revision = validate.if_match(if_match)
        absent = validate.if_none_match(if_none_match)
        cmd = Put(key, value, if_revision=revision, if_absent=absent)
        headers = _cond_headers(if_match, if_none_match)
        # A follower forwards the client's body as it came (validated already): no re-encoding.
        return self._write(cmd, "PUT", kv_path(key), body, headers, forwarded)

    def delete(self, raw_key: str, if_match: str | None, forwarded: int = 0) -> Reply:
        key = validate.key(raw_key, self.config.max_key_bytes)
        cmd = Delete(key, if_revision=validate.if_match(if_match))
        return self._write(cmd, "DELETE", kv_path(key), None, _cond_headers(if_match, None), forwarded)

    def get(self, raw_key: str, stale: str | None, forwarded: int = 0) -> Reply:
        key = validate.key(raw_key, self.config.max_key_bytes)
        if not validate.boolean(stale, "stale"):
            forward = self._read_barrier("GET", kv_path(key), forwarded)
            if forward is not None:
                return forward
        found = self._local(lambda: self.store.get(key))
        if found is None:
            raise NotFound(f"key {key!r} not found", key=key)
        value, revision = found
        return ok({"key": key, "value": value, "revision": revision})

    def list(self, prefix: str | None, limit: str | None, after: str | None, stale: str | None,
             query_string: str = "", forwarded: int = 0) -> Reply:
        count = validate.limit(limit)
        if not validate.boolean(stale, "stale"):
            forward = self._read_barrier("GET", "/kv?" + query_string, forwarded)
            if forward is not None:
                return forward
        items, nxt = self._local(lambda: self.store.scan(prefix or "", after or None, count))
        return ok({"items": [{"key": k, "value": v, "revision": r} for k, v, r in items], "next": nxt})

    def _local(self, read: Callable[[], Any]) -> Any:
        try:
            return read()
        except StoreError as exc:   # e.g. a snapshot is being installed
            raise Unavailable(f"local store unavailable: {exc}", leader=self.node.leader_id) from None

    def _write(self, cmd: Put | Delete, method: str, path: str, body: bytes | None,
               headers: dict[str, str], forwarded: int) -> Reply:
        try:
            [result] = self.node.propose([cmd], self.config.request_timeout)
        except NotLeaderError as exc:
            return self._forward(exc, method, path, body, headers, forwarded)
        except RaftError as exc:
            raise Unavailable(str(exc), leader=self.node.leader_id) from None
        return _result_reply(result)

    def _read_barrier(self, method: str, path: str, forwarded: int) -> Reply | None:
        """Make a local read linearizable, or forward it to the leader (returns its reply)."""
        try:
            self.node.read_barrier(self.config.request_timeout)
        except NotLeaderError as exc:
            return self._forward(exc, method, path, None, {}, forwarded)
        except RaftError as exc:
            raise Unavailable(str(exc), leader=self.node.leader_id) from None
        return None

    def _forward(self, exc: NotLeaderError, method: str, path: str, body: bytes | None,
                 headers: dict[str, str], forwarded: int) -> Reply:
        if exc.leader_http is None or forwarded >= 1:
            raise Unavailable("no leader available; retry later", leader=exc.leader)
        headers = dict(headers, **{FORWARD_HEADER: str(forwarded + 1),
                                   ORIGIN_HEADER: self.config.node_id})
        try:
            resp = self.pool.request(method, exc.leader_http, path, body, headers,
                                     timeout=self.config.request_timeout + 1)
        except ClientError as err:
            raise Unavailable(f"leader {exc.leader} unreachable: {err}", leader=exc.leader) from None
        try:
            data = resp.json()
        except ClientError:
            raise Unavailable(f"leader {exc.leader} sent an invalid answer", leader=exc.leader) from None
        keep = {k: v for k, v in resp.headers.items() if k in ("retry-after",)}
        return Reply(resp.status, data, keep)

    def check_forwarder(self, origin: str | None) -> None:
        """Refuse requests forwarded by a removed node: it may never learn of its removal itself."""
        config = self.node.config
        if origin and config.voters and not config.is_member(origin):
            raise Unavailable(f"node {origin} is not a member of the cluster", leader=self.node.leader_id)

    # ------------------------------------------------------------------ cluster
    def status(self) -> Reply:
        st = self.node.status()
        st["http"] = self.config.http
        st["raft"] = self.config.raft
        st["gossip"] = self.config.gossip
        st["leader_http"] = self.node.leader_http()
        online = self._online()
        members = st.pop("members")
        st["nodes"] = [{"node_id": nid, "raft": m["raft"], "http": m["http"],
                        "voter": nid in st["voters"], "online": online.get(nid)}
                       for nid, m in sorted(members.items())]
        return ok(st)

    def overview(self) -> Reply:
        """The whole cluster as this node sees it, each member's status asked concurrently."""
        gossip = self.members_view() if self.members_view is not None else None
        return ok(collect_overview(self.status_fetcher, self.status().body, gossip))

    def _online(self) -> dict[str, bool | None]:
        if self.members_view is None:
            return {}
        return {m["node_id"]: m["status"] == "alive" for m in self.members_view()}

    def members(self) -> Reply:
        if self.members_view is not None:
            return ok(self.members_view())
        config = self.node.config
        return ok([{"node_id": nid, "status": "unknown", "http": m.http, "raft": m.raft, "gossip": ""}
                   for nid, m in sorted(config.members().items())])

    def health(self) -> Reply:
        return ok({"status": "ok", "node_id": self.config.node_id})

    def ready(self) -> Reply:
        st = self.node.status()
        if st["leader"] is None:
            raise Unavailable("no leader known", leader=None)
        if self.node.applied_index + 100 < st["commit_index"]:
            raise Unavailable("catching up", leader=st["leader"])
        return ok({"status": "ready", "leader": st["leader"]})

    def join(self, body: bytes, forwarded: int = 0) -> Reply:
        node_id, raft, http, _gossip = validate.member(validate.json_object(body, 64 * 1024))
        config = self.node.config
        if not self.node.is_leader:
            leader_http = self.node.leader_http()
            if leader_http is None:
                raise Unavailable("no leader available; retry the join later", leader=None)
            return Reply(307, {"error": "not the leader", "leader": self.node.leader_id},
                         {"Location": f"http://{leader_http}/cluster/join"})
        existing = config.members().get(node_id)
        if existing is not None and existing != Member(raft, http):
            raise Conflict(f"node {node_id} is already a member with other addresses "
                            f"(raft {existing.raft}, http {existing.http}); remove it first")
        if node_id in config.voters:
            return ok(self._join_answer("voter"))
        if node_id not in config.learners:
            try:
                self.node.change_membership(ConfChange("add_learner", node_id, Member(raft, http)),
                                            self.config.request_timeout)
            except RaftError as exc:
                raise Unavailable(str(exc), leader=self.node.leader_id) from None
            log.info("member %s added as learner (raft %s, http %s)", node_id, raft, http)
        return ok(self._join_answer("learner"), status=202)

    def _join_answer(self, role: str) -> dict:
        gossip = {m["node_id"]: m["gossip"] for m in self.members_view()} if self.members_view else {}
        members = {nid: {"raft": m.raft, "http": m.http, "gossip": gossip.get(nid, "")}
                   for nid, m in self.node.config.members().items()}
        return {"status": role, "leader": self.node.leader_id, "members": members}

    def remove(self, node_id: str, forwarded: int = 0) -> Reply:
        if not self.node.config.is_member(node_id):
            raise NotFound(f"node {node_id!r} is not a member", node_id=node_id)
        try:
            self.node.change_membership(ConfChange("remove", node_id), self.config.request_timeout)
        except NotLeaderError as exc:
            return self._forward(exc, "DELETE", "/cluster/nodes/" + node_id, None, {}, forwarded)
        except RaftError as exc:
            raise Unavailable(str(exc), leader=self.node.leader_id) from None
        log.info("member %s removed", node_id)
        return ok({"removed": node_id})

    def leave(self, forwarded: int = 0) -> Reply:
        return self.remove(self.config.node_id, forwarded)


def _cond_headers(if_match: str | None, if_none_match: str | None) -> dict[str, str]:
    headers = {}
    if if_match is not None:
        headers["If-Match"] = if_match
    if if_none_match is not None:
        headers["If-None-Match"] = if_none_match
    return headers


def _result_reply(result: Result) -> Reply:
    if result.ok:
        return ok({"key": result.key, "value": result.value, "revision": result.revision})
    if result.error == "conflict":
        raise PreconditionFailed("revision mismatch", key=result.key, revision=result.revision)
    if result.error == "not_found":
        raise NotFound(f"key {result.key!r} not found", key=result.key)
    raise BadRequest(f"command rejected: {result.error}")

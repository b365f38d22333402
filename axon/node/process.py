"""Assemble one node process: data dir, store, Raft, HTTP, joining; run until SIGTERM."""
from __future__ import annotations

import json
import logging
import os
import signal
import socket
import time

import gevent
from gevent.event import Event

from axon.kv import commands
from axon.client.http import HttpPool
from axon.config import NodeConfig, parse_addr
from axon.config import ConfigError
from axon.raft.errors import RaftError
from axon.web.app import bind, build_app, request_body_limit, serve
from axon.gossip.agent import GossipAgent
from axon.gossip.config import GossipConfig
from axon.node.joiner import join_until_voter
from axon.node.reaper import pick_reap
from axon.raft.core import ConfChange, RaftOptions
from axon.raft.node import RaftNode
from axon.raft.transport import TcpTransport
from axon.raft.types import Member
from axon.api.service import KVService
from axon.kv.machine import KVStateMachine
from axon.kv.store import Store, StoreError

log = logging.getLogger("axon.node.process")

NODE_FILE = "node.json"


def claim_data_dir(data_dir: str, node_id: str) -> None:
    """Create the data dir or check that it belongs to this node id."""
    if os.path.exists(data_dir) and not os.path.isdir(data_dir):
        # makedirs would only say "File exists", which hides the actual mistake.
        raise ConfigError(f"data dir {data_dir} is not a directory")
    try:
        os.makedirs(data_dir, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create data dir {data_dir}: {exc.strerror}") from None
    if not os.path.isdir(data_dir):
        raise ConfigError(f"data dir {data_dir} is not a directory")
    path = os.path.join(data_dir, NODE_FILE)
    if os.path.exists(path):
        try:
            with open(path) as f:
                stored = json.load(f).get("node_id")
        except (OSError, ValueError, AttributeError):
            raise ConfigError(f"{path} is unreadable or corrupt; is {data_dir} an Axon data dir?") from None
        if stored != node_id:
            raise ConfigError(f"data dir {data_dir} belongs to node {stored!r}, not {node_id!r}")
        return
    if any(name not in (NODE_FILE,) for name in os.listdir(data_dir)):
        raise ConfigError(f"data dir {data_dir} is not empty and has no {NODE_FILE}; refusing to use it")
    tmp = path + ".tmp"
    try:
        with open(tmp, "w") as f:
            json.dump({"node_id": node_id, "format": 1}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None


def _check_port_free(listen: str, what: str) -> None:
    host, port = parse_addr(listen)
    probe = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
    except OSError as exc:
        raise ConfigError(f"cannot use {what} address {listen}: {exc.strerror}") from None
    finally:
        probe.close()


class NodeProcess:
    """Everything one node runs, wired together."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        claim_data_dir(config.data_dir, config.node_id)
        # Take the ports before touching cluster state: a taken port must not leave a
        # half-started node (e.g. a bootstrapped log) behind.
        try:
            self._http_listener = bind(config.http)
        except OSError as exc:
            raise ConfigError(f"cannot use http address {config.http}: {exc.strerror}") from None
        _check_port_free(config.raft, "raft")
        _check_port_free(config.gossip, "gossip")
        try:
            self.store = Store.open(os.path.join(config.data_dir, "store"))
            self.machine = KVStateMachine(self.store)
        except StoreError as exc:
            raise ConfigError(str(exc)) from None
        self.feed = self.machine.feed
        self.pool = HttpPool(timeout=config.request_timeout + 2)
        options = RaftOptions(election_ticks=config.election_ticks, heartbeat_ticks=config.heartbeat_ticks)
        member = Member(config.raft, config.http)

        def make_transport(on_message):
            return TcpTransport(config.node_id, config.raft, on_message, cluster_key=config.cluster_key)

        self.node = RaftNode(config.node_id, member, os.path.join(config.data_dir, "raft"), self.machine,
                             make_transport, encode_batch=commands.encode_commands,
                             item_size=commands.command_size,
                             bootstrap=config.bootstrap, options=options,
                             tick_interval=config.tick_interval,
                             snapshot_entries=config.snapshot_entries,
                             snapshot_rate=config.snapshot_rate_mb * 1e6)
        self.node.fatal = self._fatal
        self.gossip = GossipAgent(GossipConfig(), config.node_id, config.gossip, self._meta(),
                                  key=config.gossip_key)
        self.service = KVService(config, self.node, self.store, self.pool, self.members_view)
        self.http = None
        self._dead_since: dict[str, float] = {}
        self._gossip_joined = bool(config.seed)
        self.stopped = Event()
        self._greenlets: list[gevent.Greenlet] = []

    def start(self) -> None:
        self.node.start()
        self.gossip.start()
        if self.config.seed:
            self.gossip.join_in_background(list(self.config.seed))
        self.http = serve(build_app(self.config, self.service, self.pool), self._http_listener,
                          max_body=request_body_limit(self.config.max_value_bytes))
        log.info("node %s serving http on %s, raft on %s, gossip on %s (data in %s)",
                 self.config.node_id, self.config.http, self.config.raft, self.config.gossip,
                 self.config.data_dir)
        self._greenlets.append(gevent.spawn(self._publish_role))
        if self.config.reap_dead_after is not None:
            self._greenlets.append(gevent.spawn(self._reap_dead))
        wants_join = self.config.join or self.config.seed
        if wants_join and self.config.node_id not in self.node.config.voters:
            self._greenlets.append(gevent.spawn(
                join_until_voter, self.node, self._join_targets, self.pool,
                raft=self.config.raft, http=self.config.http, gossip=self.config.gossip,
                on_members=self._gossip_with))
        elif not self.node.config.voters:
            log.info("no cluster state and no --bootstrap: waiting to be added to a cluster")

    # ------------------------------------------------------------------ gossip glue
    def _meta(self) -> dict:
        return {"http": self.config.http, "raft": self.config.raft,
                "role": self.node.status()["state"] if hasattr(self, "node") else "follower"}

    def members_view(self) -> list[dict]:
        """The gossip view in the API's shape."""
        out = []
        for m in self.gossip.members():
            meta = m.get("meta") or {}
            out.append({"node_id": m["node_id"], "status": m["status"], "gossip": m["gossip"],
                        "http": meta.get("http", ""), "raft": meta.get("raft", ""),
                        "role": meta.get("role", "")})
        return sorted(out, key=lambda m: m["node_id"])

    def _join_targets(self) -> list[str]:
        """--join addresses, then what gossip says: the leader first, then any other member."""
        targets = list(self.config.join)
        others = [m for m in self.members_view()
                  if m["node_id"] != self.config.node_id and m["status"] == "alive" and m["http"]]
        others.sort(key=lambda m: m["role"] != "leader")
        targets += [m["http"] for m in others if m["http"] not in targets]
        return targets

    def _gossip_with(self, members: dict) -> None:
        """Join gossip through members a join answer named (nodes joined with --join, not --seed)."""
        if self._gossip_joined:
            return
        seeds = [m.get("gossip") for nid, m in members.items()
                 if nid != self.config.node_id and isinstance(m, dict) and m.get("gossip")]
        if seeds:
            self._gossip_joined = True
            self.gossip.join_in_background([s for s in seeds if isinstance(s, str)])

    def _publish_role(self) -> None:
        """Keep our gossip metadata's role current (the dashboard and joiners read it)."""
        published = None
        while True:
            meta = self._meta()
            if meta != published:
                self.gossip.update_meta(meta)
                published = meta
            gevent.sleep(0.25)

    def _reap_dead(self) -> None:
        after = self.config.reap_dead_after
        while True:
            gevent.sleep(min(1.0, after / 4))
            now = time.monotonic()
            status = {m["node_id"]: m["status"] for m in self.members_view()}
            for nid in list(self._dead_since):
                if status.get(nid) != "dead":
                    del self._dead_since[nid]
            for nid, st in status.items():
                if st == "dead":
                    self._dead_since.setdefault(nid, now)
            if not self.node.core.is_leader:
                continue
            victim = pick_reap(sorted(self.node.config.voters), self._dead_since, now, after,
                               self.config.node_id)
            if victim is not None:
                log.warning("removing %s: gossip has reported it dead for over %gs", victim, after)
                try:
                    self.node.change_membership(ConfChange("remove", victim), self.config.request_timeout)
                except RaftError as exc:
                    log.warning("could not remove %s: %s", victim, exc)

    def stop(self) -> None:
        """Graceful stop: drain HTTP requests, stop Raft, close the log and the store."""
        if self.stopped.is_set():
            return
        log.info("shutting down")
        gevent.killall(self._greenlets, timeout=1)
        try:
            self.gossip.leave(timeout=1.0)
        finally:
            self.gossip.stop()
        if self.http is not None:
            self.http.stop(timeout=self.config.request_timeout)
        self.node.stop()
        self.store.close()
        self.pool.close()
        self.stopped.set()

    def _fatal(self, exc: BaseException) -> None:
        log.critical("stopping after a fatal error: %s", exc)
        os._exit(70)

    def run_forever(self) -> None:
        self.start()
        for sig in (signal.SIGTERM, signal.SIGINT):
            gevent.signal_handler(sig, lambda: gevent.spawn(self.stop))
        self.stopped.wait()

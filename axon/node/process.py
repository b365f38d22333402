"""Assemble one node process: data dir, store, Raft, gossip, HTTP, joining; run until SIGTERM."""
from __future__ import annotations

import functools
import gc
import logging
import os
import signal
import socket
import ssl

import gevent
from gevent.event import Event

from axon.audit import AuditLog
from axon.kv import commands
from axon.client.http import HttpPool
from axon.config import NodeConfig, parse_addr
from axon.config import ConfigError
from axon.web.app import bind, build_app, request_body_limit, serve
from axon.gossip.agent import GossipAgent
from axon.gossip.config import GossipConfig
from axon.node.joiner import join_until_voter
from axon.node.looplag import LoopLag
from axon.node.cluster_id import ClusterId
from axon.node.datadir import claim_data_dir
from axon.node import disk
from axon.node.duties import DeadVoterReaper, LeaseExpirer
from axon.node.rootauth import enable_when_leader
from axon.node.membership import Membership
from axon.raft.core import RaftOptions
from axon.raft.node import RaftNode
from axon.raft.transport import TcpTransport
from axon.raft.types import Member
from axon.api.service import KVService
from axon.api.overview import StatusFetcher
from axon.api.stats import StatsService
from axon.metrics import NodeMetrics
from axon.node.stats import NodeFacts, StatsSampler, register_collectors, wal_dir
from axon.api.watch import WatchService
from axon.kv.feed import ChangeFeed, FeedLimits
from axon.kv.machine import KVStateMachine
from axon.kv.store import Store, StoreError

log = logging.getLogger("axon.node.process")


def feed_limits(config: NodeConfig) -> FeedLimits:
    """The change feed's bounds from the watch flags; a watcher may lag twice the history."""
    return FeedLimits(history_changes=config.watch_history, history_bytes=config.watch_history_bytes,
                      buffer_changes=2 * config.watch_history, buffer_bytes=2 * config.watch_history_bytes)

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


def tls_contexts(config: NodeConfig) -> tuple[ssl.SSLContext | None, ssl.SSLContext | None]:
    """(server, client) SSL contexts of an https node, or (None, None).

    The client context is for this node's own calls (forwarding to the leader, joining, the
    overview's fetches): a cluster is all-https, so it trusts --tls-ca-file (by default the
    client CA) and presents the node's certificate, which peers requiring one accept.
    """
    if not config.tls_cert_file or not config.tls_key_file:
        return None, None
    # imported here: cryptography takes ~80 ms to load, and only an https node needs it
    from axon.security.tls import TlsError, client_context, server_context
    try:
        server = server_context(config.tls_cert_file, config.tls_key_file, config.tls_client_ca_file)
        client = client_context(config.tls_ca_file or config.tls_client_ca_file,
                                config.tls_cert_file, config.tls_key_file)
    except TlsError as exc:
        raise ConfigError(str(exc)) from None
    if not (config.tls_ca_file or config.tls_client_ca_file):
        log.warning("no --tls-ca-file: this node trusts only the system's CAs when it forwards to "
                    "the leader or joins; a cluster CA of its own must be given")
    return server, client


def open_audit_log(path: str | None) -> AuditLog | None:
    if not path:
        return None
    try:
        return AuditLog(path)
    except OSError as exc:
        raise ConfigError(f"cannot open the audit log {path}: {exc.strerror or exc}") from None


def peer_security_warning(config: NodeConfig) -> str | None:
    """What to warn about a node without a cluster key (config validation refused the worst cases)."""
    if config.cluster_key is not None:
        return None
    exposed = config.exposed_addresses()
    if exposed:   # allowed by --insecure only
        return (f"--insecure: no cluster key, and {', '.join(exposed)} is reachable beyond loopback: "
                f"peer traffic is neither authenticated nor encrypted, and anyone who reaches it may join")
    return "no cluster key: peer traffic is neither authenticated nor encrypted; fine on loopback only"


def server_limits(config: NodeConfig) -> dict:
    """The HTTP server's limits as the node's flags set them."""
    return {"max_connections": config.max_connections, "idle_timeout": config.idle_timeout,
            "header_timeout": config.header_timeout, "body_timeout": config.body_timeout,
            "max_inflight_bytes": config.max_inflight_bytes}


class NodeProcess:
    """Everything one node runs, wired together."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        # Every file the node makes (WAL, snapshots, LevelDB's, keys) holds data or secrets
        # in clear: owner-only whatever the caller's umask.
        os.umask(0o077)
        claim_data_dir(config.data_dir, config.node_id)
        # Read by the API, the joiner and the Raft transport's handshake: cluster_id() -> str | None.
        self.cluster_id = ClusterId(config.data_dir)
        # Take the ports before touching cluster state: a taken port must not leave a
        # half-started node (e.g. a bootstrapped log) behind.
        try:
            self._http_listener = bind(config.http)
        except OSError as exc:
            raise ConfigError(f"cannot use http address {config.http}: {exc.strerror}") from None
        _check_port_free(config.raft, "raft")
        _check_port_free(config.gossip, "gossip")
        self.disk_alarm = disk.DiskAlarm(disk.DiskLimits(config.min_free_bytes, config.quota_bytes))
        try:
            self.store = self._open_store(os.path.join(config.data_dir, "store"))
            self.machine = KVStateMachine(self.store, ChangeFeed(self.store.applied_index, feed_limits(config)))
        except StoreError as exc:
            raise ConfigError(str(exc)) from None
        self.feed = self.machine.feed
        self.server_tls, client_tls = tls_contexts(config)
        self.audit_log = open_audit_log(config.audit_log)
        self.pool = HttpPool(timeout=config.request_timeout + 2, ssl_context=client_tls)
        options = RaftOptions(election_ticks=config.election_ticks, heartbeat_ticks=config.heartbeat_ticks)
        member = Member(config.raft, config.http)

        def make_transport(on_message):
            from axon.raft.transport import TransportError, load_peer_tls
            try:
                peer_tls = load_peer_tls(config.peer_cert_file, config.peer_key_file, config.peer_ca_file)
            except TransportError as exc:
                raise ConfigError(str(exc)) from None
            return TcpTransport(config.node_id, config.raft, on_message, cluster_key=config.cluster_key,
                                cluster_id=self.cluster_id, peer_tls=peer_tls)

        self.node = RaftNode(config.node_id, member, os.path.join(config.data_dir, "raft"), self.machine,
                             make_transport, encode_batch=commands.encode_commands,
                             item_size=commands.command_size,
                             bootstrap=config.bootstrap, options=options,
                             tick_interval=config.tick_interval,
                             snapshot_entries=config.snapshot_entries,
                             snapshot_bytes=config.snapshot_bytes,
                             snapshot_rate=config.snapshot_rate_mb * 1e6)
        self.node.fatal = self._fatal
        self.node.storage_full = self._storage_full
        if self.node.bootstrapped:   # a new cluster: a new id (made after the log, so a failed start leaves none)
            self.cluster_id.mint()
        self.gossip = GossipAgent(GossipConfig(), config.node_id, config.gossip,
                                  {"http": config.http, "raft": config.raft, "role": self._role()},
                                  key=GossipAgent.key_for(config.cluster_key, config.gossip_key),
                                  cluster_id=self.cluster_id)
        self.membership = Membership(config, self.gossip, self._role, self.disk_alarm.alarms)
        self.loop_lag = LoopLag()
        self.service = KVService(config, self.node, self.store, self.pool, self.membership.members_view,
                                 cluster_id=self.cluster_id, loop_lag=self.loop_lag.snapshot,
                                 alarms=self.disk_alarm.alarms,
                                 cluster_alarms=self.membership.cluster_alarms)
        self.http = None
        self.facts = NodeFacts(lambda: self.disk_alarm.usage)
        self.service.about = self.facts
        self.metrics = NodeMetrics()
        register_collectors(self.metrics, self, self.facts)
        self.sampler = StatsSampler(self.metrics)
        self.stats = StatsService(config.node_id, self.sampler.ring, StatusFetcher(self.pool),
                                  self.service.member_addresses)
        self.stopped = Event()
        self._greenlets: list[gevent.Greenlet] = []

    def start(self) -> None:
        self._greenlets.append(gevent.spawn(self.loop_lag.run))
        self._greenlets.append(gevent.spawn(self.sampler.run))
        probe = functools.partial(disk.read_usage, wal_dir=wal_dir(self.config.data_dir))
        self.disk_alarm.observe(probe(self.config.data_dir))   # the status has sizes from the start
        self._greenlets.append(gevent.spawn(disk.monitor, self.disk_alarm, self.config.data_dir, probe))
        self.node.start()
        self._greenlets.append(gevent.spawn(
            LeaseExpirer(self.node, self.service.leases, self.config.request_timeout).run))
        self.gossip.start()
        if self.config.seed:
            self.gossip.join_in_background(list(self.config.seed))
        watches = WatchService(self.feed, self.node, self.config.request_timeout,
                               self.config.watch_progress_interval)
        self.http = serve(build_app(self.config, self.service, self.pool, audit_log=self.audit_log,
                                    watches=watches, metrics=self.metrics, stats=self.stats),
                          self._http_listener, max_body=request_body_limit(self.config.max_value_bytes),
                          ssl_context=self.server_tls, **server_limits(self.config))
        log.info("node %s serving %s on %s, raft on %s, gossip on %s (data in %s)",
                 self.config.node_id, "https" if self.server_tls else "http", self.config.http,
                 self.config.raft, self.config.gossip,
                 self.config.data_dir)
        self._greenlets.append(gevent.spawn(self.membership.publish_role))
        if self.config.auth and not self.store.auth.enabled:
            self._greenlets.append(gevent.spawn(enable_when_leader, self.node, lambda: self.store.auth,
                                                self.config.data_dir, self.config.request_timeout))
        warning = peer_security_warning(self.config)
        if warning:
            log.warning("%s", warning)
        if self.config.reap_dead_after is not None:
            reaper = DeadVoterReaper(self.node, self.membership.members_view, self.config.reap_dead_after,
                                     self.config.request_timeout)
            self._greenlets.append(gevent.spawn(reaper.run))
        wants_join = self.config.join or self.config.seed
        alone = self._alone_and_told_to_join()
        if wants_join and (self.config.node_id not in self.node.config.voters or alone):
            self._greenlets.append(gevent.spawn(
                join_until_voter, self.node, self.membership.join_targets, self.pool, self.cluster_id,
                raft=self.config.raft, http=self.config.http, gossip=self.config.gossip,
                cluster_key=self.config.cluster_key, on_members=self.membership.gossip_with,
                ask_as_voter=alone))
        elif not self.node.config.voters:
            log.info("no cluster state and no --bootstrap: waiting to be added to a cluster")

    def _alone_and_told_to_join(self) -> bool:
        """The only voter of a cluster it did not just create, with an id, and given --join.

        Most likely a node bootstrapped apart and now pointed at another cluster: it asks, naming
        its cluster, so that the other cluster's leader refuses it with a reason both sides log.
        Without an id it does not ask: a leader could not tell it belongs elsewhere.
        """
        return (bool(self.config.join) and set(self.node.config.voters) == {self.config.node_id}
                and not self.node.bootstrapped and self.cluster_id() is not None)

    def _open_store(self, path: str) -> Store:
        """Store.open, waiting while the disk is too full for LevelDB to start (no crash loop)."""
        while True:
            try:
                return Store.open(path)
            except StoreError as exc:
                if not disk.is_nospace(exc):
                    raise
                self.disk_alarm.on_enospc()
                log.error("cannot open the store: %s; waiting for space", exc)
            gevent.sleep(disk.CHECK_INTERVAL)

    def _storage_full(self, exc: BaseException) -> bool:
        """The Raft driver's question: will this failed write succeed once space is back?"""
        if not disk.is_nospace(exc):
            return False
        self.disk_alarm.on_enospc()
        return True

    def _role(self) -> str:
        return self.node.status()["state"]

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
        self.machine.close()
        self.pool.close()
        if self.audit_log is not None:
            self.audit_log.close()
        self.stopped.set()

    def _fatal(self, exc: BaseException) -> None:
        log.critical("stopping after a fatal error: %s", exc)
        os._exit(70)

    def run_forever(self) -> None:
        self.start()
        # What start-up built (modules, config, the log read back) lives as long as the
        # process: kept out of the cyclic collector, a full collection under load walks
        # only what requests made since (two such walks of ~21 ms each showed in the first
        # 3 s of bench/abuse.py's all-at-once case on the leader).
        gc.freeze()
        for sig in (signal.SIGTERM, signal.SIGINT):
            gevent.signal_handler(sig, lambda: gevent.spawn(self.stop))
        self.stopped.wait()

"""`axon launch`: run a local cluster as child processes, supervise them, serve the dashboard and
a supervisor API (axon/launcher/api.py).

The layout (node ids and ports) lives in ``<dir>/layout.json``; node data in
``<dir>/data/<node-id>``, node logs in ``<dir>/logs/<node-id>.log``.  Only the very first start
of the first node passes ``--bootstrap``; every other start joins through the other nodes, so a
relaunch brings the same cluster back and never forms a second one.  Nothing is restarted
automatically: an exit is recorded and shown.  Requires gevent's monkey patching (the CLI does it).
"""
from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Callable

import gevent
from gevent.event import Event
from gevent.lock import RLock

from axon.address import format_addr
from axon.client import Client
from axon.client.http import ClientError, HttpPool
from axon.launcher.layout import Layout, LayoutError, NodeSpec, layout_path, load_layout, save_layout
from axon.api.errors import ApiError, Conflict, NotFound, Unavailable
from axon.audit import AuditLog
from axon.launcher.api import MAX_PROXY_BODY, build_api
from axon.launcher.tls import TlsFiles
from axon.keys import KeyFileError, load_key, new_key, write_key_file
from axon.web.app import serve

log = logging.getLogger("axon.launcher.supervisor")

LOCK_FILE = "launcher.lock"
TOKEN_FILE = "root.token"  # with --auth: the cluster's root (admin) token, 0600, in <dir> and the bootstrap node's data dir
KEY_FILE = "cluster.key"  # the cluster key every node gets (--cluster-key-file), made at the first launch
PR_SET_PDEATHSIG = 1
STATUS_TIMEOUT = 1.5
MAX_NODES = 16            # POST /api/nodes starts a process each time: a cap on what one call may add
TLS_DIR = "tls"           # `axon launch --tls`: the cluster CA and each node's certificate
PROXY_TIMEOUT = 12.0      # above a node's request timeout: a write may wait for a commit
# Variables that would change what a child node does behind the launcher's back.
_KEEP_ENV = {"AXON_CACHE_DIR", "AXON_PYZ"}


class LaunchError(Exception):
    """The launcher cannot start (bad dir, layout, port); printed on one line."""


@dataclass
class Child:
    """A node process as the launcher knows it."""
    spec: NodeSpec
    proc: subprocess.Popen | None = None
    state: str = "stopped"          # running | stopped (by us) | exited (on its own)
    exit_code: int | None = None
    started_at: float | None = None
    stopping: bool = False


# ---------------------------------------------------------------------- processes
def node_command() -> list[str]:
    """How to run `axon` in a child: through the same .pyz when we run from one."""
    pyz = os.environ.get("AXON_PYZ")
    if pyz:
        flags = (["-I"] if sys.flags.isolated else []) + (["-S"] if sys.flags.no_site else [])
        return [sys.executable, *flags, pyz]
    return [sys.executable, "-m", "axon"]


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AXON_") or k in _KEEP_ENV}
    if not env.get("AXON_PYZ"):
        # `-m axon` must find this very package, wherever the launcher was started from
        package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    return env


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    """A preexec_fn: the child gets SIGTERM when the launcher dies, however it dies."""
    libc = ctypes.CDLL(None, use_errno=True)   # loaded before fork, not in the child

    def setup() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent_pid:   # the launcher died before prctl took effect
            os._exit(1)
    return setup


def ports_free(host: str, ports: list[int]) -> bool:
    """True if every port can be bound on host for TCP and UDP (gossip uses both)."""
    for port in ports:
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            with socket.socket(socket.AF_INET, kind) as sock:
                try:
                    sock.bind((host, port))
                except OSError:
                    return False
    return True


def node_args(spec: NodeSpec, data_dir: str, others: list[NodeSpec], bootstrap: bool,
              log_level: str, key_file: str | None = None, auth: bool = False) -> list[str]:
    """The `axon serve` arguments of one node (``key_file``: the cluster key file; ``auth``: the
    bootstrap node turns auth on, the others learn it through the log)."""
    args = ["serve", "--node-id", spec.node_id, "--data-dir", data_dir, "--http", spec.http,
            "--raft", spec.raft, "--gossip", spec.gossip, "--log-level", log_level]
    if key_file is not None:
        args += ["--cluster-key-file", key_file]
    if bootstrap:
        args.append("--bootstrap")
        if auth:
            args.append("--auth")
    args += discovery_args(others)
    return args


def ensure_cluster_key(directory: str) -> str:
    """<directory>/cluster.key, made (32 random bytes, mode 0600) if missing; LaunchError if unusable."""
    path = os.path.join(directory, KEY_FILE)
    try:
        if not os.path.exists(path):
            write_key_file(path, new_key())
        load_key(path, "cluster key")   # refuses a file others can read: the nodes would refuse it too
    except KeyFileError as exc:
        raise LaunchError(str(exc)) from None
    return path


def discovery_args(others: list[NodeSpec]) -> list[str]:
    """How a node finds the cluster: gossip seeds, and the HTTP join path as a fallback."""
    args: list[str] = []
    for other in others:
        args += ["--seed", other.gossip, "--join", other.http]
    return args


# ---------------------------------------------------------------------- supervisor
class _AuthAlreadyOn(Exception):
    """POST /auth/enable answered 409: someone turned auth on and holds the root token."""


class Supervisor:
    """Owns the layout and the node processes; every public method is safe to call concurrently."""

    def __init__(self, directory: str, host: str = "127.0.0.1", base_port: int = 7000,
                 nodes: int = 3, stop_timeout: float = 15.0, log_level: str = "info",
                 say: Callable[[str], None] = print, *, tls: bool = False, max_nodes: int = MAX_NODES,
                 audit: bool = False, auth: bool = False) -> None:
        """``tls``: nodes serve https with certificates of a CA made in <dir>/tls; ``audit``:
        each node writes its own audit log, logs/<node-id>.audit.jsonl (one writer per file);
        ``auth``: the cluster has auth on and the launcher keeps its root token in <dir>/root.token."""
        self.directory = os.path.abspath(directory)
        self.stop_timeout = stop_timeout
        self.log_level = log_level
        self.say = say
        self.max_nodes = max_nodes
        self.audit = audit
        self.lock = RLock()
        self.tls = TlsFiles(os.path.join(self.directory, TLS_DIR)) if tls else None
        self.scheme = "https" if tls else "http"
        self.pool = HttpPool(timeout=STATUS_TIMEOUT,
                             ssl_context=self.tls.client_context() if self.tls else None)
        self.children: dict[str, Child] = {}
        self._lock_fd: int | None = None
        self._proxy_target: str | None = None   # the node that answered the last proxied request
        self._open_dir()
        self.token_file = os.path.join(self.directory, TOKEN_FILE)
        # a cluster once launched with --auth keeps auth on (it is replicated): so does its launcher
        self.auth = auth or os.path.exists(self.token_file)
        self._token: str | None = None
        self.key_file = ensure_cluster_key(self.directory)   # under the directory's lock: one key per cluster
        layout = load_layout(self.directory)
        if layout is None:
            layout = Layout(host, base_port)
            for _ in range(nodes):
                layout.add_node(lambda ports: ports_free(host, ports))
            save_layout(self.directory, layout)
            self.created = True
        else:
            self.created = False
        self.layout = layout
        for spec in layout.nodes:
            self.children[spec.node_id] = Child(spec)

    def _open_dir(self) -> None:
        try:
            os.makedirs(os.path.join(self.directory, "data"), exist_ok=True)
            os.makedirs(os.path.join(self.directory, "logs"), exist_ok=True)
            fd = os.open(os.path.join(self.directory, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise LaunchError(f"cannot use {self.directory}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise LaunchError(f"another launcher is running on {self.directory}") from None
            raise LaunchError(f"cannot lock {self.directory}: {exc.strerror}") from None
        self._lock_fd = fd

    # paths ------------------------------------------------------------
    def data_dir(self, node_id: str) -> str:
        return os.path.join(self.directory, "data", node_id)

    def log_file(self, node_id: str) -> str:
        return os.path.join(self.directory, "logs", node_id + ".log")

    def _child(self, node_id: str) -> Child:
        child = self.children.get(node_id)
        if child is None:
            raise NotFound(f"no node {node_id!r}")
        return child

    # lifecycle --------------------------------------------------------
    def start_all(self) -> None:
        """Start every node of the layout; one that cannot start is reported, not fatal."""
        for spec in list(self.layout.nodes):
            try:
                self.start(spec.node_id)
            except ApiError as exc:
                self.say(f"  {exc.message}")

    def start(self, node_id: str) -> dict:
        with self.lock:
            child = self._child(node_id)
            if child.state == "running":
                raise Conflict(f"node {node_id} is already running")
            bootstrap = not self.layout.bootstrapped and self.layout.nodes[0].node_id == node_id
            others = [n for n in self.layout.nodes if n.node_id != node_id]
            args = node_args(child.spec, self.data_dir(node_id), others, bootstrap, self.log_level,
                             self.key_file, self.auth)
            self._spawn(child, args + self._own_args(child.spec))
            if bootstrap:
                self.layout.bootstrapped = True
                try:
                    save_layout(self.directory, self.layout)
                except LayoutError as exc:
                    raise Conflict(f"{node_id} started, but {exc}") from None
            return self.describe(child)

    def _own_args(self, spec: NodeSpec) -> list[str]:
        """The flags this launcher adds to every node: TLS material, the node's audit log."""
        args: list[str] = []
        if self.tls is not None:
            args += self.tls.node_args(spec)
        if self.audit:
            args += ["--audit-log", os.path.join(self.directory, "logs", spec.node_id + ".audit.jsonl")]
        return args

    def _spawn(self, child: Child, args: list[str]) -> None:
        node_id = child.spec.node_id
        try:
            with open(self.log_file(node_id), "ab") as out:
                out.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} launcher starts {node_id}\n".encode())
                out.flush()
                proc = subprocess.Popen(node_command() + args, stdin=subprocess.DEVNULL, stdout=out,
                                        stderr=subprocess.STDOUT, env=child_env(),
                                        start_new_session=True,
                                        preexec_fn=_die_with_parent(os.getpid()))
        except OSError as exc:
            raise Conflict(f"cannot start {node_id}: {exc.strerror or exc}") from None
        child.proc, child.state, child.exit_code = proc, "running", None
        child.started_at, child.stopping = time.time(), False
        gevent.spawn(self._watch, child, proc)

    def _watch(self, child: Child, proc: subprocess.Popen) -> None:
        """Record the exit of one process; no automatic restart."""
        code = proc.wait()
        if child.proc is not proc:
            return
        child.exit_code = code
        if child.stopping:
            child.state = "stopped"
        else:
            child.state = "exited"
            self.say(f"{child.spec.node_id} exited with code {code} "
                     f"(see {self.log_file(child.spec.node_id)}); not restarting it")

    def stop(self, node_id: str) -> dict:
        with self.lock:
            child = self._child(node_id)
            self._terminate([child])
            return self.describe(child)

    def restart(self, node_id: str) -> dict:
        with self.lock:
            self._terminate([self._child(node_id)])
            return self.start(node_id)

    def _terminate(self, children: list[Child]) -> None:
        """SIGTERM, wait up to stop_timeout, then SIGKILL; always reaps."""
        procs = []
        for child in children:
            if child.proc is not None and child.proc.poll() is None:
                child.stopping = True
                _signal(child.proc, signal.SIGTERM)
                procs.append(child.proc)
            elif child.state == "running":
                child.state = "exited"
        deadline = time.monotonic() + self.stop_timeout
        for proc in procs:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("pid %d ignored SIGTERM for %.0f s; killing it", proc.pid, self.stop_timeout)
                _signal(proc, signal.SIGKILL)
                proc.wait()
        for child in children:
            if child.stopping:
                child.state = "stopped"
                child.exit_code = child.proc.returncode if child.proc else None

    def add(self) -> dict:
        with self.lock:
            if len(self.children) >= self.max_nodes:
                raise Conflict(f"the cluster has {len(self.children)} nodes, the most this launcher "
                               f"starts ({self.max_nodes}); decommission one first")
            try:
                spec = self.layout.add_node(lambda ports: ports_free(self.layout.host, ports))
                save_layout(self.directory, self.layout)
            except LayoutError as exc:
                raise Conflict(str(exc)) from None
            self.children[spec.node_id] = Child(spec)
            return self.start(spec.node_id)

    def decommission(self, node_id: str) -> dict:
        """Remove the node from Raft through another node, stop it, delete its data."""
        with self.lock:
            child = self._child(node_id)
            others = [c for c in self.children.values() if c is not child]
            if not others:
                raise Conflict(f"{node_id} is the last node; stop it instead")
            self._remove_from_raft(node_id, others)
            self._terminate([child])
            self.layout.remove_node(node_id)
            try:
                save_layout(self.directory, self.layout)
            except LayoutError as exc:
                raise Conflict(str(exc)) from None
            del self.children[node_id]
            shutil.rmtree(self.data_dir(node_id), ignore_errors=True)
            return {"removed": node_id}

    def _remove_from_raft(self, node_id: str, others: list[Child]) -> None:
        running = [c for c in others if c.state == "running"]
        if not running:
            raise Conflict(f"no other node is running to remove {node_id} through")
        last = "no answer"
        for other in running:
            try:
                self._client(other, 10).remove(node_id)
                return
            except ClientError as exc:
                if exc.status == 404:   # not a member (it never joined): nothing to remove
                    return
                last = f"{other.spec.node_id}: {exc}"
        raise Unavailable(f"cannot remove {node_id} from the cluster ({last}); retry later")

    def shutdown(self) -> None:
        """Stop every node (in parallel) and release the directory."""
        with self.lock:
            self._terminate(list(self.children.values()))
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None
        self.pool.close()

    # views ------------------------------------------------------------
    def describe(self, child: Child, status: dict | None = None) -> dict:
        spec = child.spec
        running = child.state == "running" and child.proc is not None
        return {"node_id": spec.node_id, "pid": child.proc.pid if running else None,
                "state": child.state, "exit_code": child.exit_code,
                "http": spec.http, "raft": spec.raft, "gossip": spec.gossip,
                "role": role_of(spec.node_id, status) if running else None,
                "leader": (status or {}).get("leader") if running else None}
        # no filesystem paths: they are the launcher's business (printed at start), not the API's

    def nodes(self) -> list[dict]:
        """Every node with its process state and its Raft role (asked in parallel)."""
        children = list(self.children.values())
        jobs = [gevent.spawn(self._status, c) for c in children]
        gevent.joinall(jobs, timeout=STATUS_TIMEOUT + 0.5)
        return [self.describe(c, job.value if job.successful() else None)
                for c, job in zip(children, jobs)]

    def node(self, node_id: str) -> dict:
        child = self._child(node_id)
        return self.describe(child, self._status(child))

    def proxy(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> tuple[int, bytes, dict]:
        """Forward a dashboard request (/cluster/*, /kv*) to a running node: (status, body, headers).

        Unavailable when no running node answers.
        """
        running = [c for c in self.children.values() if c.state == "running"]
        running.sort(key=lambda c: c.spec.node_id != self._proxy_target)
        last = "no node is running"
        for child in running:
            try:
                resp = self.pool.request(method, child.spec.http, path, body, headers, timeout=PROXY_TIMEOUT)
            except ClientError as exc:
                last = f"{child.spec.node_id}: {exc}"
                # a write that may have reached the node must not be sent twice to another one
                if method not in ("GET", "HEAD") and not str(exc).endswith("connection refused"):
                    break
                continue
            self._proxy_target = child.spec.node_id
            keep = {k: v for k, v in resp.headers.items() if k == "retry-after"}
            return resp.status, resp.body, keep
        raise Unavailable(f"no running node answered ({last})")

    # auth ---------------------------------------------------------------
    def token(self) -> str | None:
        """The root token the launcher's own calls send (None with auth off or not yet made)."""
        if not self.auth:
            return None
        if self._token is None:
            try:
                with open(self.token_file, encoding="utf-8") as f:
                    self._token = f.read().strip() or None
            except OSError:
                return None
        return self._token

    def wait_root_token(self, timeout: float = 30.0) -> str | None:
        """Copy the bootstrap node's root.token to <dir>/root.token (0600) once it is written;
        the path, or None when it did not come before ``timeout``."""
        if not self.auth or os.path.exists(self.token_file):
            return self.token_file if self.auth else None
        source = os.path.join(self.data_dir(self.layout.nodes[0].node_id), TOKEN_FILE)
        deadline = time.monotonic() + timeout
        token = None
        while token is None:
            if time.monotonic() > deadline:
                return None
            token = self._read(source) if os.path.exists(source) else None
            if token is None and not self.created:
                try:
                    token = self._enable_auth()   # a cluster made without --auth: turn it on now
                except _AuthAlreadyOn:
                    self.say("  auth was already on, with a root token this launcher does not have")
                    return None
            if token is None:
                gevent.sleep(0.2)
        fd = os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(token + "\n")
        return self.token_file

    @staticmethod
    def _read(path: str) -> str | None:
        with open(path, encoding="utf-8") as f:
            return f.read().strip() or None

    def _enable_auth(self) -> str | None:
        """POST /auth/enable through a running node: the root token, or None (no node yet, or
        auth already on with a token this launcher never saw)."""
        for child in [c for c in self.children.values() if c.state == "running"]:
            try:
                return self._client(child, 10).auth_enable()["token"]
            except ClientError as exc:
                if exc.status == 409:
                    raise _AuthAlreadyOn() from None
        return None

    def whoami(self, authorization: str) -> tuple[int, dict | None]:
        """(status, answer) of GET /auth/whoami with a client's Authorization, asked of a running node."""
        status, body, _ = self.proxy("GET", "/auth/whoami", None, {"Authorization": authorization})
        try:
            return status, json.loads(body)
        except ValueError:
            return status, None

    def _client(self, child: Child, timeout: float) -> Client:
        return Client(child.spec.http, token=self.token(), timeout=timeout, retry_for=0, pool=self.pool)

    def _status(self, child: Child) -> dict | None:
        if child.state != "running":
            return None
        try:
            return self._client(child, STATUS_TIMEOUT).status()
        except ClientError:
            return None


def role_of(node_id: str, status: dict | None) -> str:
    """leader / follower / candidate / learner / none (not in the cluster) / unknown (no answer)."""
    if not status:
        return "unknown"
    if node_id in (status.get("learners") or []):
        return "learner"
    if node_id not in (status.get("voters") or []):
        return "none"
    return str(status.get("state") or "unknown")


def _signal(proc: subprocess.Popen, sig: int) -> None:
    try:
        proc.send_signal(sig)
    except ProcessLookupError:
        pass


# ---------------------------------------------------------------------- running it
def _print_table(sup: Supervisor, say: Callable[[str], None]) -> None:
    rows = [sup.describe(c) for c in sup.children.values()]
    width = max(len(r["http"]) for r in rows) + 7 if rows else 0
    for r in rows:
        say(f"  {r['node_id']:<8} {sup.scheme + '://' + r['http']:<{width}}  raft {r['raft']}  gossip {r['gossip']}  "
            f"pid {r['pid'] or '-'} ({r['state']})")


def _announce_ready(sup: Supervisor, say: Callable[[str], None], deadline: float) -> None:
    """Say once the cluster has a leader and every node is a voter (or give up quietly)."""
    while time.monotonic() < deadline:
        nodes = sup.nodes()
        leaders = [n["node_id"] for n in nodes if n["role"] == "leader"]
        running = [n for n in nodes if n["state"] == "running"]
        if leaders and running and all(n["role"] in ("leader", "follower") for n in running):
            say(f"cluster ready: leader {leaders[0]}, {len(running)} voters running")
            return
        gevent.sleep(0.5)
    say("cluster not ready yet; see the node logs and GET /api/nodes")


def _announce_token(sup: Supervisor, say: Callable[[str], None]) -> None:
    """Say where the root token is: its path only, the secret never reaches a log."""
    path = sup.wait_root_token()
    if path is None:
        say("  auth is on, but the root token did not appear yet; see the first node's log")
        return
    say(f"  auth on: the root (admin) token is in {path} (0600); sign in to the dashboard with it, "
        f"or use AXON_TOKEN=$(cat {path})")


def run(directory: str, nodes: int, port: int, host: str, base_port: int, stop_timeout: float,
        log_level: str, say: Callable[[str], None] = print, *, tls: bool = False,
        audit_log: str | None = None, max_nodes: int = MAX_NODES, auth: bool = False) -> None:
    """Start (or bring back) the cluster, serve the API, and wait for SIGINT/SIGTERM.

    ``audit_log``: the launcher's actions go there, each node's to logs/<node-id>.audit.jsonl.
    """
    try:
        sup = Supervisor(directory, host, base_port, nodes, stop_timeout, log_level, say, tls=tls,
                         max_nodes=max_nodes, audit=audit_log is not None, auth=auth)
        audit = AuditLog(audit_log) if audit_log else None
    except LayoutError as exc:
        raise LaunchError(str(exc)) from None
    except OSError as exc:
        raise LaunchError(f"cannot open the audit log {audit_log}: {exc.strerror or exc}") from None
    stopping = Event()
    scheme = "https" if tls else "http"
    listen = format_addr(host, port)
    try:
        try:
            server = serve(build_api(sup, listen, https=tls, audit_log=audit), listen,
                           max_body=MAX_PROXY_BODY,
                           ssl_context=sup.tls.server_context(host) if sup.tls else None)
        except OSError as exc:
            raise LaunchError(f"cannot serve the dashboard on {host}:{port}: {exc.strerror or exc}") from None
        for sig in (signal.SIGINT, signal.SIGTERM):
            gevent.signal_handler(sig, stopping.set)
        if sup.created:
            say(f"axon launch: new cluster of {len(sup.layout.nodes)} nodes in {sup.directory}")
        else:
            say(f"axon launch: bringing back {len(sup.layout.nodes)} nodes from {layout_path(sup.directory)}")
            if nodes != len(sup.layout.nodes):
                say(f"  (the saved layout wins over --nodes {nodes}; add or remove nodes through the API)")
        sup.start_all()
        _print_table(sup, say)
        say(f"  data in {os.path.join(sup.directory, 'data')}, logs in {os.path.join(sup.directory, 'logs')}")
        say(f"  cluster key in {sup.key_file} (a node joining from elsewhere needs it: --cluster-key-file)")
        say(f"dashboard and supervisor API: {scheme}://{listen}/  (GET /api/nodes; Ctrl-C stops every node)")
        if sup.tls is not None:
            say(f"  https with the cluster CA {sup.tls.ca_file} (give it to clients: --cacert)")
        if sup.auth:
            _announce_token(sup, say)
        sys.stdout.flush()
        gevent.spawn(_announce_ready, sup, say, time.monotonic() + 60)
        stopping.wait()
        say("stopping every node ...")
        server.stop(timeout=1)
    finally:
        sup.shutdown()
        if audit is not None:
            audit.close()
    say("all nodes stopped")

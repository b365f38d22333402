"""Real-process Axon clusters for tests: free ports, node processes, polling with deadlines.

Every node is ``python -m axon serve ...`` in its own process, listening on
127.0.0.1 only, with its data dir and log file under one base directory.  A
``Cluster`` owns its nodes; ``close()`` kills every process it started, so use
it in a ``try/finally`` (or a pytest fixture) and a failing test leaves nothing
running.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Iterable, Sequence

import axon
from axon.address import is_loopback
from axon.client import Client
from axon.client.http import ClientError, HttpPool
from axon.keys import new_key, write_key_file

HOST = "127.0.0.1"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(axon.__file__)))
LOG_TAIL_LINES = 30

_ports_lock = threading.Lock()
_ports_given: set[int] = set()


class ClusterError(Exception):
    """The harness could not start, find or stop something (the message says what and why)."""


class NodeExited(ClusterError):
    """A node process exited while the harness expected it to run."""


class WaitTimeout(ClusterError, AssertionError):
    """``wait_for`` ran out of time; an AssertionError too, so pytest reports it as a failure."""


def free_ports(count: int) -> list[int]:
    """Ports on 127.0.0.1 that were free a moment ago and not handed out before by this process."""
    ports: list[int] = []
    sockets = []
    try:
        while len(ports) < count:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind((HOST, 0))
            port = sock.getsockname()[1]
            with _ports_lock:
                if port in _ports_given:
                    continue
                _ports_given.add(port)
            ports.append(port)
    finally:
        for sock in sockets:
            sock.close()
    return ports


def cluster_key_args(directory: str) -> list[str]:
    """Make a fresh cluster key file (0600) in ``directory``; the serve flags that use it."""
    path = os.path.join(str(directory), "cluster.key")
    write_key_file(path, new_key())
    return ["--cluster-key-file", path]


def interrupt_process(proc: subprocess.Popen, timeout: float = 40.0) -> None:
    """SIGINT a process (a launcher stops its nodes on the way out) and wait; kill it past timeout."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.05,
             message: str = "condition", nodes: Iterable["NodeHandle"] = ()) -> Any:
    """Poll ``predicate`` until it returns something truthy (returned); exceptions count as false.

    On timeout raise WaitTimeout with ``message``, the last exception seen and the
    tail of each node's log.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except ClusterError:
            raise
        except Exception as exc:   # a node being down is an ordinary "not yet"
            last_error = exc
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    details = [f"timed out after {timeout:g}s waiting for {message}"]
    if last_error is not None:
        details.append(f"last error: {last_error.__class__.__name__}: {last_error}")
    for node in nodes:
        details.append(f"--- {node.node_id} ({node.state_text()}) log tail:\n{node.log_tail()}")
    raise WaitTimeout("\n".join(details))


class NodeHandle:
    """One ``axon serve`` process, restartable with the same ports and data dir."""

    def __init__(self, base_dir: str, node_id: str, *, extra_args: Sequence[str] = (),
                 request_timeout: float = 2.0, client_timeout: float = 10.0,
                 env: dict[str, str] | None = None, host: str = HOST,
                 ports: Sequence[int] | None = None, command_prefix: Sequence[str] = (),
                 ssl_context: Any = None, token: str | None = None) -> None:
        """``host``/``ports``/``command_prefix`` let a node run elsewhere, e.g. in a network namespace;
        ``ssl_context`` (an ssl.SSLContext) makes the harness speak https to a node serving TLS;
        ``token``: sent with the harness's own calls when auth is on."""
        self.node_id = node_id
        self.host = host
        self.base_dir = str(base_dir)
        self.data_dir = os.path.join(self.base_dir, node_id)
        self.log_path = os.path.join(self.base_dir, f"{node_id}.log")
        http_port, raft_port, gossip_port = ports if ports is not None else free_ports(3)
        self.http = f"{host}:{http_port}"
        self.raft = f"{host}:{raft_port}"
        self.gossip = f"{host}:{gossip_port}"
        self.command_prefix = list(command_prefix)
        self.extra_args = list(extra_args)
        self.request_timeout = request_timeout
        self.env = dict(env or {})
        self.proc: subprocess.Popen | None = None
        self.pool = HttpPool(timeout=client_timeout, ssl_context=ssl_context)
        self.client = Client(self.http, timeout=client_timeout, pool=self.pool, retry_for=0)
        self.paused = False
        self.token = token

    def harness_token(self) -> str | None:
        """The token the harness polls with: the one it was given, else this node's root token."""
        if self.token:
            return self.token
        try:   # a node bootstrapped with --auth writes its root token here
            with open(os.path.join(self.data_dir, "root.token"), encoding="utf-8") as f:
                return f.read().strip() or None
        except OSError:
            return None

    # ------------------------------------------------------------------ processes
    def command(self, bootstrap: bool = False, join: Sequence[str] = (),
                extra_args: Sequence[str] = ()) -> list[str]:
        args = self.command_prefix + [sys.executable, "-m", "axon", "serve", "--node-id", self.node_id,
                "--data-dir", self.data_dir, "--http", self.http, "--raft", self.raft,
                "--gossip", self.gossip, "--request-timeout", f"{self.request_timeout:g}"]
        if bootstrap:
            args.append("--bootstrap")
        for addr in join:
            args += ["--join", addr]
        extra = self.extra_args + list(extra_args)
        if not is_loopback(self.host) and "--cluster-key-file" not in extra and "--insecure" not in extra:
            # a private test network (e.g. network namespaces); a node refuses it without a key otherwise
            extra.append("--insecure")
        return args + extra

    def start(self, bootstrap: bool = False, join: Sequence[str] = (),
              extra_args: Sequence[str] = ()) -> "NodeHandle":
        """Start the process (not waiting for it to serve; see ``wait_serving``)."""
        if self.running:
            raise ClusterError(f"node {self.node_id} is already running (pid {self.proc.pid})")
        env = dict(os.environ)
        env["PYTHONPATH"] = REPO_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env.update(self.env)
        with open(self.log_path, "ab") as log:
            shown = self.command(bootstrap, join, extra_args)[len(self.command_prefix) + 2:]
            log.write(f"==== start {' '.join(shown)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(self.command(bootstrap, join, extra_args), cwd=REPO_ROOT,
                                         env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        self.paused = False
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_serving(self, timeout: float = 15.0) -> None:
        """Wait until /health answers (fails fast if the process exited)."""
        def serving() -> bool:
            self.check_running()
            return self.client.call("GET", "/health")["status"] == "ok"
        wait_for(serving, timeout, message=f"{self.node_id} to serve HTTP", nodes=[self])

    def check_running(self) -> None:
        """Raise NodeExited if the process is gone (a crash should fail a wait at once)."""
        if self.proc is not None and self.proc.poll() is not None:
            raise NodeExited(f"node {self.node_id} exited with {self.proc.poll()}:\n{self.log_tail()}")

    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait; returns the exit code (kills and raises if it does not exit in time)."""
        if self.proc is None:
            raise ClusterError(f"node {self.node_id} was never started")
        if self.paused:
            self.resume()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise ClusterError(f"node {self.node_id} did not exit within {timeout:g}s of SIGTERM") from None
        self.pool.close()
        return code

    def kill(self) -> None:
        """SIGKILL (kill -9) and reap; no-op when not running."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.paused = False
        self.pool.close()

    def pause(self) -> None:
        """SIGSTOP: the process freezes with its sockets open (like a hung machine)."""
        if not self.running:
            raise ClusterError(f"node {self.node_id} is not running")
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        """SIGCONT after ``pause``."""
        if self.running:
            self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def restart(self, bootstrap: bool = False, join: Sequence[str] = (), extra_args: Sequence[str] = (),
                kill: bool = False) -> "NodeHandle":
        """Stop (SIGTERM, or SIGKILL with ``kill``) and start again on the same ports and data dir."""
        if self.running:
            self.kill() if kill else self.stop()
        return self.start(bootstrap, join, extra_args)

    # ------------------------------------------------------------------ observation
    def status(self, timeout: float = 2.0) -> dict:
        """GET /cluster/status with a short timeout (raises ClientError when down)."""
        return Client(self.http, timeout=timeout, pool=self.pool, token=self.harness_token(), retry_for=0).status()

    def try_status(self) -> dict | None:
        try:
            return self.status()
        except ClientError:
            return None

    def log_text(self) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def state_text(self) -> str:
        if self.proc is None:
            return "never started"
        if self.paused:
            return "paused"
        code = self.proc.poll()
        return "running" if code is None else f"exited {code}"

    def __repr__(self) -> str:
        return f"NodeHandle({self.node_id}, http={self.http}, {self.state_text()})"


class Cluster:
    """n nodes: node 1 bootstraps, the others join through it with --join."""

    def __init__(self, base_dir: Any, n: int = 3, extra_args: Sequence[str] = (),
                 request_timeout: float = 2.0, start: bool = True, prefix: str = "n",
                 node_options: Callable[[str], dict] | None = None, token: str | None = None) -> None:
        """``node_options(node_id)`` gives extra NodeHandle keyword arguments (host, ports, command_prefix);
        ``token``: the harness's own status polls send it (a cluster with auth on answers 401 without)."""
        self.base_dir = str(base_dir)
        self.token = token
        self.node_options = node_options
        self.extra_args = list(extra_args)
        self.request_timeout = request_timeout
        self.prefix = prefix
        self.nodes: list[NodeHandle] = []
        if start and n > 0:
            try:
                self.start(n)
            except BaseException:
                self.close()
                raise

    def new_node(self, node_id: str | None = None, extra_args: Sequence[str] | None = None) -> NodeHandle:
        """A handle (not started) owned by this cluster, so ``close()`` will stop it."""
        node_id = node_id or f"{self.prefix}{len(self.nodes) + 1}"
        args = self.extra_args if extra_args is None else extra_args
        options = self.node_options(node_id) if self.node_options is not None else {}
        options.setdefault("token", self.token)
        node = NodeHandle(self.base_dir, node_id, extra_args=args, request_timeout=self.request_timeout,
                          **options)
        self.nodes.append(node)
        return node

    def use_token(self, token: str) -> None:
        """From now on the harness polls every node (and nodes added later) with ``token``."""
        self.token = token
        for node in self.nodes:
            node.token = token

    def start(self, n: int, timeout: float = 30.0) -> None:
        """Bootstrap node 1, start the others with --join once it serves, wait until all are voters."""
        first = self.new_node()
        first.start(bootstrap=True)
        # Joiners start while node 1 is still electing itself: their start-up overlaps the election.
        first.wait_serving(timeout)
        for _ in range(n - 1):
            self.new_node().start(join=[first.http])
        self.wait_voters([node.node_id for node in self.nodes], timeout)
        self.leader(timeout)

    def add_node(self, join: Sequence[str], node_id: str | None = None, wait: bool = True,
                 timeout: float = 30.0) -> NodeHandle:
        """Start a new empty node that joins through ``join`` (HTTP addresses)."""
        node = self.new_node(node_id)
        node.start(join=join)
        if wait:
            self.wait_voters([n.node_id for n in self.nodes if n.running], timeout, among=[node])
        return node

    def node(self, node_id: str) -> NodeHandle:
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise ClusterError(f"no node {node_id!r} in this cluster")

    def running(self) -> list[NodeHandle]:
        return [node for node in self.nodes if node.running and not node.paused]

    # ------------------------------------------------------------------ waiting
    def wait_for(self, predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05,
                 message: str = "condition") -> Any:
        return wait_for(predicate, timeout, interval, message, nodes=self.nodes)

    def leader(self, timeout: float = 20.0, among: Sequence[NodeHandle] | None = None) -> NodeHandle:
        """The node that says it leads, once every running node in ``among`` agrees on it."""
        candidates = list(among) if among is not None else None

        def agreed() -> NodeHandle | None:
            nodes = candidates if candidates is not None else self.running()
            statuses = [node.status() for node in nodes]
            leaders = {st["leader"] for st in statuses}
            if len(leaders) != 1 or None in leaders:
                return None
            [leader_id] = leaders
            leader = self.node(leader_id)
            if not leader.running or leader.paused or leader.status()["state"] != "leader":
                return None
            return leader
        return self.wait_for(agreed, timeout, message="an agreed leader")

    def wait_voters(self, voters: Sequence[str], timeout: float = 30.0,
                    among: Sequence[NodeHandle] | None = None) -> None:
        """Wait until each node in ``among`` (default: all running) reports exactly these voters."""
        expected = sorted(voters)

        def settled() -> bool:
            nodes = among if among is not None else self.running()
            for node in nodes:
                node.check_running()
            return all(sorted(node.status()["voters"]) == expected for node in nodes)
        self.wait_for(settled, timeout, message=f"voters {expected}")

    def wait_converged(self, timeout: float = 20.0, among: Sequence[NodeHandle] | None = None) -> int:
        """Wait until the nodes applied the same index, at least the leader's commit; returns it."""
        def converged() -> int | None:
            nodes = list(among) if among is not None else self.running()
            statuses = [node.status() for node in nodes]
            applied = {st["applied_index"] for st in statuses}
            commit = max(st["commit_index"] for st in statuses)
            if len(applied) == 1 and applied.pop() >= commit:
                return statuses[0]["applied_index"] or None
            return None
        return self.wait_for(converged, timeout, message="nodes to apply the same index")

    # ------------------------------------------------------------------ teardown
    def close(self) -> None:
        """Kill every process this cluster started (never raises for one that is already gone)."""
        for node in self.nodes:
            try:
                if node.paused:
                    node.resume()
                node.kill()
            except OSError:
                pass

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

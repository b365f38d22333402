"""Axon and etcd side by side: the same wrk workloads against a 3-node cluster of each, on loopback.

    python bench/compare_etcd.py [--duration 10] [--rounds 1] [--keys 1000] [--value-size 100] [--json FILE]
    python bench/compare_etcd.py --secure [--duration 10] [--rounds 3] [--json FILE]

Needs `etcd` and `wrk` on PATH (installs nothing; on Debian: apt-get install etcd-server wrk).
Both clusters run with fsync on, data dirs in one temporary directory, ports on 127.0.0.1 only.
Every row runs Axon then etcd (the order flips each round) and the table gives the Axon/etcd
ratio.  Writes and linearizable reads go to each cluster's leader; stale reads (Axon
?stale=true, etcd serializable) go to the leader too, so both answer from the same process.
The last row is the time from kill -9 of the leader to the first successful write through a
surviving member (median of --failovers trials).

--secure compares client trust instead, three systems in one run at 64 connections: "axon-tls"
(a 3-node Axon serving HTTPS with certificates from axon.security.tls, bootstrapped with --auth,
every request carrying a write token limited to the bench- prefix; the cluster key that lets
nodes join an --auth cluster also seals Raft frames), "etcd-tls" (etcd with --cert-file/--key-file
on https client URLs; peers plain http on loopback) and "axon" (plain, as in the default mode).
Writes and linearizable reads; no failover.  A run with more than 1% non-2xx answers is refused.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from axon.client import Client
from axon.client.http import ClientError, HttpPool, kv_path, tls_client_context   # noqa: E402
from axon.security.tls import Issued, make_ca, make_node_cert, write_private   # noqa: E402
from axon.testing.cluster import Cluster, NodeHandle, cluster_key_args, free_ports, wait_for   # noqa: E402

HOST = "127.0.0.1"


class CompareError(Exception):
    """A tool is missing or a cluster did not come up; the message says what to do."""


# ---------------------------------------------------------------------- wrk
@dataclass
class WrkResult:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    requests: int = 0


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not m:
        raise CompareError(f"cannot read wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(output: str) -> WrkResult:
    """The figures we need out of `wrk --latency` text output."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.M)
    if not (rps and p50 and p99):
        raise CompareError(f"unexpected wrk output:\n{output}")
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    total = re.search(r"^\s*(\d+) requests in", output, re.M)
    return WrkResult(float(rps.group(1)), _ms(p50.group(1)), _ms(p99.group(1)),
                     int(non2xx.group(1)) if non2xx else 0,
                     sum(int(g) for g in sock.groups()) if sock else 0,
                     int(total.group(1)) if total else 0)


def run_wrk(url: str, script: str, connections: int, duration: float, env: dict[str, str]) -> WrkResult:
    threads = min(2, connections)
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration:g}s", "--latency", "--timeout", "5s",
           "-s", os.path.join(HERE, script), url]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, **env),
                          timeout=duration + 60)
    if proc.returncode != 0:
        raise CompareError(f"wrk failed ({proc.returncode}): {proc.stderr.strip()}")
    return parse_wrk(proc.stdout)


# ---------------------------------------------------------------------- TLS material (--secure)
class Pki:
    """One CA for the run and a certificate per node or member, valid for 127.0.0.1 and localhost."""

    def __init__(self, directory: str) -> None:
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self._ca: Issued = make_ca("compare_etcd CA")
        self.ca_file = os.path.join(directory, "ca.pem")
        write_private(self.ca_file, self._ca.cert_pem)

    def issue(self, name: str) -> tuple[str, str]:
        """(certificate file, key file) for ``name``."""
        issued = make_node_cert(self._ca, name, [HOST, "localhost"])
        cert, key = (os.path.join(self.dir, f"{name}.{ext}") for ext in ("pem", "key"))
        write_private(cert, issued.cert_pem)
        write_private(key, issued.key_pem)
        return cert, key

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts this CA (and checks the host name)."""
        return tls_client_context(self.ca_file)


# ---------------------------------------------------------------------- etcd
def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class EtcdCluster:
    """Three etcd members on 127.0.0.1 with their data under base_dir (fsync on: etcd's default).

    With ``pki`` the client URLs are https (--cert-file/--key-file); peer URLs stay http.
    """

    def __init__(self, base_dir: str, n: int = 3, pki: Pki | None = None) -> None:
        self.base_dir = base_dir
        self.scheme = "https" if pki else "http"
        ports = free_ports(2 * n)
        self.names = [f"e{i}" for i in range(1, n + 1)]
        self.client = {name: f"{HOST}:{ports[2 * i]}" for i, name in enumerate(self.names)}
        self.peer = {name: f"{HOST}:{ports[2 * i + 1]}" for i, name in enumerate(self.names)}
        self.procs: dict[str, subprocess.Popen] = {}
        self.certs = {name: pki.issue(f"etcd-{name}") for name in self.names} if pki else {}
        self.pool = HttpPool(timeout=5, ssl_context=pki.client_context() if pki else None)

    def tls_args(self, name: str) -> list[str]:
        """--cert-file/--key-file for a member's client URLs (none without TLS)."""
        if name not in self.certs:
            return []
        cert, key = self.certs[name]
        return ["--cert-file", cert, "--key-file", key]

    def command(self, name: str) -> list[str]:
        initial = ",".join(f"{n}=http://{self.peer[n]}" for n in self.names)
        client_url = f"{self.scheme}://{self.client[name]}"
        return ["etcd", "--name", name, "--data-dir", os.path.join(self.base_dir, name),
                "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
                *self.tls_args(name),
                "--listen-peer-urls", f"http://{self.peer[name]}",
                "--initial-advertise-peer-urls", f"http://{self.peer[name]}",
                "--initial-cluster", initial, "--initial-cluster-state", "new",
                "--initial-cluster-token", "axon-compare", "--logger", "zap", "--log-level", "warn"]

    def start(self, name: str) -> None:
        log = open(os.path.join(self.base_dir, f"{name}.log"), "ab")
        self.procs[name] = subprocess.Popen(self.command(name), stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=log)
        log.close()

    def start_all(self) -> None:
        for name in self.names:
            self.start(name)
        self.leader(timeout=30)

    def status(self, name: str, timeout: float = 1.0) -> dict:
        resp = self.pool.request("POST", self.client[name], "/v3/maintenance/status", b"{}", timeout=timeout)
        if resp.status != 200:
            raise ClientError(f"status HTTP {resp.status}", resp.status)
        return resp.json()

    def leader(self, timeout: float = 20.0, among: list[str] | None = None) -> str:
        """Name of the member every running member agrees leads."""
        def agreed() -> str | None:
            names = among or [n for n in self.names if self.running(n)]
            st = {n: self.status(n) for n in names}
            leaders = {s.get("leader") for s in st.values()}
            if len(leaders) != 1:
                return None
            [lid] = leaders
            return next((n for n, s in st.items() if s["header"]["member_id"] == lid), None)
        return wait_for(agreed, timeout, message="an etcd leader")

    def running(self, name: str) -> bool:
        proc = self.procs.get(name)
        return proc is not None and proc.poll() is None

    def kill(self, name: str) -> None:
        proc = self.procs.get(name)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def put(self, name: str, key: str, value: str, timeout: float) -> int:
        body = json.dumps({"key": _b64(key), "value": _b64(value)}).encode()
        return self.pool.request("POST", self.client[name], "/v3/kv/put", body, timeout=timeout).status

    def close(self) -> None:
        for name in self.names:
            self.kill(name)
        self.pool.close()


# ---------------------------------------------------------------------- the systems, uniformly
class AxonSystem:
    name = "axon"
    put_script, read_script = "axon_put.lua", "axon_get.lua"
    scheme = "http"
    headers: dict[str, str] = {}     # sent with every request (a token when auth is on)
    wrk_env: dict[str, str] = {}     # extra environment for the wrk scripts

    def __init__(self, base_dir: str) -> None:
        path = os.path.join(base_dir, "axon")
        os.makedirs(path)
        self.cluster = Cluster(path, 3)
        self.pool = HttpPool(timeout=5)

    def leader_url(self) -> str:
        return f"{self.scheme}://" + self.leader_member().http

    def put(self, node, key: str, value: str, timeout: float) -> int:
        body = json.dumps({"value": value}).encode()
        return self.pool.request("PUT", node.http, kv_path(key), body, self.headers, timeout).status

    def members(self) -> list:
        return list(self.cluster.nodes)

    def leader_member(self):
        return self.cluster.leader()

    def kill(self, node) -> None:
        node.kill()

    def survivors(self, dead) -> list:
        return [n for n in self.cluster.nodes if n is not dead]

    def revive(self, node) -> None:
        node.start()
        node.wait_serving(30)
        self.cluster.wait_converged(30)
        self.cluster.leader(20)

    def close(self) -> None:
        self.cluster.close()
        self.pool.close()


class EtcdSystem:
    name = "etcd"
    put_script = read_script = "etcd_kv.lua"   # BENCH_OP says which
    wrk_env: dict[str, str] = {}

    def __init__(self, base_dir: str, pki: Pki | None = None) -> None:
        """With ``pki``: "etcd-tls", https client URLs with certificates from it."""
        if pki is not None:
            self.name = "etcd-tls"
        path = os.path.join(base_dir, self.name)
        os.makedirs(path)
        self.cluster = EtcdCluster(path, pki=pki)
        self.cluster.start_all()

    def leader_url(self) -> str:
        return f"{self.cluster.scheme}://" + self.cluster.client[self.cluster.leader()]

    def put(self, name: str, key: str, value: str, timeout: float) -> int:
        return self.cluster.put(name, key, value, timeout)

    def members(self) -> list:
        return list(self.cluster.names)

    def leader_member(self) -> str:
        return self.cluster.leader()

    def kill(self, name: str) -> None:
        self.cluster.kill(name)

    def survivors(self, dead: str) -> list:
        return [n for n in self.cluster.names if n != dead]

    def revive(self, name: str) -> None:
        self.cluster.start(name)
        self.cluster.leader(timeout=30, among=self.cluster.names)

    def close(self) -> None:
        self.cluster.close()


class AxonTlsSystem(AxonSystem):
    """3-node Axon over HTTPS, bootstrapped with --auth; requests carry a bench- write token.

    Nodes join an --auth cluster only with a proof of the cluster key, so every node has one,
    and with it Raft frames are sealed too.
    """
    name = "axon-tls"
    scheme = "https"

    def __init__(self, base_dir: str, pki: Pki) -> None:
        path = os.path.join(base_dir, self.name)
        os.makedirs(path)
        self.pki = pki
        context = pki.client_context()
        self.pool = HttpPool(timeout=5, ssl_context=context)
        self.cluster = Cluster(path, 0, start=False, node_options=lambda _id: {"ssl_context": context})
        try:
            self._start(path)
        except BaseException:
            self.cluster.close()
            raise

    def _start(self, path: str, n: int = 3) -> None:
        """Bootstrap n1 with --auth, make the bench token, join n2..nN, wait for n voters."""
        key_args = cluster_key_args(path)
        first = self.cluster.new_node(extra_args=self.node_args("n1") + key_args + ["--auth"])
        first.start(bootstrap=True)
        first.wait_serving(30)
        root = self._root_token(first)
        self.token = self.cluster.wait_for(lambda: self._client(first, root).token_create(
            "bench", "write", "bench-")["token"], 30, message="the bench token")
        self.headers = {"Authorization": f"Bearer {self.token}"}
        self.wrk_env = {"BENCH_TOKEN": self.token}
        for i in range(2, n + 1):
            self.cluster.new_node(extra_args=self.node_args(f"n{i}") + key_args).start(join=[first.http])
        voters = sorted(node.node_id for node in self.cluster.nodes)
        self.cluster.wait_for(lambda: all(sorted(self._status(node)["voters"]) == voters
                                          for node in self.cluster.nodes), 60, message=f"voters {voters}")

    def node_args(self, node_id: str) -> list[str]:
        """The serve flags for HTTPS with a certificate for ``node_id``."""
        cert, key = self.pki.issue(f"axon-{node_id}")
        return ["--tls-cert-file", cert, "--tls-key-file", key, "--tls-ca-file", self.pki.ca_file]

    def _root_token(self, node: NodeHandle) -> str:
        """The root token --auth wrote into the bootstrap node's data dir."""
        path = os.path.join(node.data_dir, "root.token")
        self.cluster.wait_for(lambda: os.path.exists(path), 30, message="root.token")
        with open(path) as f:
            return f.read().strip()

    def _client(self, node: NodeHandle, token: str) -> Client:
        return Client(node.http, timeout=5, pool=node.pool, token=token, retry_for=0)

    def _status(self, node: NodeHandle) -> dict:
        return self._client(node, self.token).status()

    def leader_member(self) -> NodeHandle:
        """The node every running node names as leader (status asked with the bench token)."""
        def agreed() -> NodeHandle | None:
            statuses = [self._status(node) for node in self.cluster.running()]
            leaders = {st["leader"] for st in statuses}
            if len(leaders) != 1 or None in leaders:
                return None
            leader = self.cluster.node(leaders.pop())
            return leader if self._status(leader)["state"] == "leader" else None
        return self.cluster.wait_for(agreed, 20, message="an agreed leader")


# ---------------------------------------------------------------------- measurements
def prefill(system, keys: int, value_size: int) -> None:
    """Write every benchmark key once so that reads find a value."""
    leader = system.leader_member()
    value = "x" * value_size

    def put(i: int) -> None:
        status = system.put(leader, f"bench-{i:08d}", value, 5.0)
        if status != 200:
            raise CompareError(f"{system.name}: prefill write answered HTTP {status}")
    with ThreadPoolExecutor(16) as ex:
        list(ex.map(put, range(keys)))


def failover_once(system, timeout: float = 30.0) -> float:
    """Seconds from kill -9 of the leader to the first write a survivor acknowledges."""
    leader = system.leader_member()
    survivors = system.survivors(leader)
    system.kill(leader)
    killed_at = time.monotonic()
    attempt = 0
    while time.monotonic() - killed_at < timeout:
        target = survivors[attempt % len(survivors)]
        attempt += 1
        try:
            if system.put(target, "failover-probe", str(attempt), 0.5) == 200:
                elapsed = time.monotonic() - killed_at
                break
        except ClientError:
            pass
        time.sleep(0.005)
    else:
        raise CompareError(f"{system.name}: no write succeeded within {timeout:g}s of killing the leader")
    system.revive(leader)
    return elapsed


@dataclass
class Row:
    label: str
    unit: str
    higher_is_better: bool
    target: float | None            # required Axon/etcd ratio (>= when higher is better, else <=)
    values: dict[str, list[float]] = field(default_factory=dict)

    def median(self, system: str) -> float:
        return statistics.median(self.values[system])

    def ratio(self, system: str = "axon", base: str = "etcd") -> float:
        """Median of ``system`` over median of ``base``."""
        below = self.median(base)
        return self.median(system) / below if below else float("inf")

    def met(self, system: str = "axon", base: str = "etcd") -> bool | None:
        if self.target is None:
            return None
        ratio = self.ratio(system, base)
        return ratio >= self.target if self.higher_is_better else ratio <= self.target


def measure(systems: dict, args: argparse.Namespace) -> list[Row]:
    env = {"BENCH_KEYS": str(args.keys), "BENCH_VALUE_SIZE": str(args.value_size)}
    plan = [  # label, unit, higher better, target, script kind, connections, stale, field
        ("writes/s @1", "ops/s", True, None, "put", 1, False, "rps"),
        ("write p50 @1", "ms", False, 1.5, "put", 1, False, "p50"),
        ("writes/s @16", "ops/s", True, None, "put", 16, False, "rps"),
        ("writes/s @64", "ops/s", True, 1.0, "put", 64, False, "rps"),
        ("write p99 @64", "ms", False, None, "put", 64, False, "p99"),
        ("lin. reads/s @64", "ops/s", True, 1.0, "read", 64, False, "rps"),
        ("stale reads/s @64", "ops/s", True, 1.5, "read", 64, True, "rps"),
    ]
    rows: dict[str, Row] = {}
    runs: dict[tuple, dict[str, WrkResult]] = {}
    for rnd in range(args.rounds):
        order = ["axon", "etcd"] if rnd % 2 == 0 else ["etcd", "axon"]
        for label, unit, better, target, kind, conns, stale, _ in plan:
            key = (kind, conns, stale)
            if key in runs:
                continue   # one wrk run serves several rows (e.g. writes/s and p50 @1)
            runs[key] = {}
            for name in order:
                system = systems[name]
                script = system.put_script if kind == "put" else system.read_script
                res = run_wrk(system.leader_url(), script, conns, args.duration,
                              dict(env, BENCH_STALE="1" if stale else "0",
                                   BENCH_OP="put" if kind == "put" else "range"))
                runs[key][name] = res
                print(f"  round {rnd + 1} {name:4s} {kind:4s} c={conns:<3d} stale={int(stale)}: "
                      f"{res.requests_per_s:9.1f} req/s p50 {res.p50_ms:7.2f} ms p99 {res.p99_ms:7.2f} ms"
                      f"  non-2xx {res.non_2xx} sockerr {res.socket_errors}", flush=True)
        for label, unit, better, target, kind, conns, stale, fld in plan:
            row = rows.setdefault(label, Row(label, unit, better, target))
            for name, res in runs[(kind, conns, stale)].items():
                value = {"rps": res.requests_per_s, "p50": res.p50_ms, "p99": res.p99_ms}[fld]
                row.values.setdefault(name, []).append(value)
        runs.clear()
    fail = Row("failover", "ms", False, 1.0)
    for trial in range(args.failovers):
        for name in (["axon", "etcd"] if trial % 2 == 0 else ["etcd", "axon"]):
            ms = failover_once(systems[name]) * 1000
            fail.values.setdefault(name, []).append(ms)
            print(f"  failover {trial + 1} {name}: {ms:.0f} ms", flush=True)
    return list(rows.values()) + [fail]


SECURE = ("axon-tls", "etcd-tls", "axon")
SECURE_PLAN = [  # label, unit, higher better, target (axon-tls/etcd-tls), script kind, field
    ("writes/s @64", "ops/s", True, 1.0, "put", "rps"),
    ("write p50 @64", "ms", False, None, "put", "p50"),
    ("write p99 @64", "ms", False, None, "put", "p99"),
    ("lin. reads/s @64", "ops/s", True, 1.0, "read", "rps"),
    ("read p50 @64", "ms", False, None, "read", "p50"),
    ("read p99 @64", "ms", False, None, "read", "p99"),
]


def check_answers(name: str, kind: str, res: WrkResult, limit: float = 0.01) -> None:
    """Refuse a run whose figures count refusals (a 401 is fast, and meaningless)."""
    if res.requests == 0 or res.non_2xx > limit * res.requests:
        raise CompareError(f"{name} {kind}: {res.non_2xx} of {res.requests} answers were not 2xx/3xx "
                           f"(more than {limit:.0%}); the figures would not mean anything")


def rotated(names: tuple[str, ...], by: int) -> list[str]:
    """``names`` starting at index ``by`` (so each system goes first in turn)."""
    by %= len(names)
    return list(names[by:] + names[:by])


def run_secure(system, kind: str, args: argparse.Namespace) -> WrkResult:
    """One wrk run of ``kind`` (put or read) at 64 connections, answers checked."""
    env = {"BENCH_KEYS": str(args.keys), "BENCH_VALUE_SIZE": str(args.value_size), "BENCH_STALE": "0",
           "BENCH_OP": "put" if kind == "put" else "range", **system.wrk_env}
    script = system.put_script if kind == "put" else system.read_script
    res = run_wrk(system.leader_url(), script, 64, args.duration, env)
    print(f"  {system.name:8s} {kind:4s} c=64: {res.requests_per_s:9.1f} req/s p50 {res.p50_ms:7.2f} ms "
          f"p99 {res.p99_ms:7.2f} ms  requests {res.requests} non-2xx {res.non_2xx} "
          f"sockerr {res.socket_errors}", flush=True)
    check_answers(system.name, kind, res)
    return res


def measure_secure(systems: dict, args: argparse.Namespace) -> list[Row]:
    """The SECURE_PLAN rows, every system run once per workload and round, in rotating order."""
    rows = [Row(label, unit, better, target) for label, unit, better, target, _, _ in SECURE_PLAN]
    for rnd in range(args.rounds):
        for kind in ("put", "read"):
            print(f"round {rnd + 1} {kind}", flush=True)
            for name in rotated(SECURE, rnd):
                res = run_secure(systems[name], kind, args)
                values = {"rps": res.requests_per_s, "p50": res.p50_ms, "p99": res.p99_ms}
                for row, plan in zip(rows, SECURE_PLAN):
                    if plan[4] == kind:
                        row.values.setdefault(name, []).append(values[plan[5]])
    return rows


def table_secure(rows: list[Row]) -> str:
    """Medians per system, axon-tls/etcd-tls (with its target) and axon-tls/axon."""
    lines = [f"{'metric':18s} {'axon-tls':>9s} {'etcd-tls':>9s} {'axon':>9s} {'tls/etcd-tls':>13s} "
             f"{'tls/axon':>9s}  target"]
    for r in rows:
        target = "" if r.target is None else f">= {r.target:g}x"
        met = {True: "  met", False: "  MISSED", None: ""}[r.met("axon-tls", "etcd-tls")]
        lines.append(f"{r.label:18s} {r.median('axon-tls'):9.1f} {r.median('etcd-tls'):9.1f} "
                     f"{r.median('axon'):9.1f} {r.ratio('axon-tls', 'etcd-tls'):13.2f} "
                     f"{r.ratio('axon-tls', 'axon'):9.2f}  {target}{met}")
    return "\n".join(lines)


def secure_json(rows: list[Row]) -> list[dict]:
    """The --secure figures as JSON-ready dicts."""
    return [{"metric": r.label, "unit": r.unit, "values": r.values,
             **{name: r.median(name) for name in SECURE},
             "ratio_tls_etcd_tls": r.ratio("axon-tls", "etcd-tls"), "ratio_tls_plain": r.ratio("axon-tls", "axon"),
             "target": r.target, "met": r.met("axon-tls", "etcd-tls")} for r in rows]


def table(rows: list[Row]) -> str:
    lines = [f"{'metric':20s} {'axon':>10s} {'etcd':>10s} {'axon/etcd':>10s}  target"]
    for r in rows:
        target = "" if r.target is None else f"{'>=' if r.higher_is_better else '<='} {r.target:g}x"
        met = {True: "  met", False: "  MISSED", None: ""}[r.met()]
        lines.append(f"{r.label:20s} {r.median('axon'):10.1f} {r.median('etcd'):10.1f} "
                     f"{r.ratio():10.2f}  {target}{met}")
    return "\n".join(lines)


def check_tools() -> None:
    missing = [tool for tool in ("etcd", "wrk") if shutil.which(tool) is None]
    if missing:
        raise CompareError(f"missing on PATH: {', '.join(missing)}. On Debian/Ubuntu: "
                           "sudo apt-get install etcd-server wrk (etcd also ships as a release "
                           "tarball at https://github.com/etcd-io/etcd/releases; wrk at "
                           "https://github.com/wg/wrk)")


def tools_ready() -> bool:
    """check_tools, its error printed on stderr; whether the benchmark can run."""
    try:
        check_tools()
    except CompareError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return False
    return True


def compare_default(base: str, systems: dict, args: argparse.Namespace) -> tuple[str, list[dict]]:
    """Axon vs etcd, plain HTTP: every row and failover; (table, JSON figures)."""
    print(f"starting 3-node Axon and 3-member etcd under {base}", flush=True)
    systems["axon"] = AxonSystem(base)
    systems["etcd"] = EtcdSystem(base)
    for system in systems.values():
        prefill(system, args.keys, args.value_size)
    rows = measure(systems, args)
    return table(rows), [{"metric": r.label, "unit": r.unit, "values": r.values,
                          "axon": r.median("axon"), "etcd": r.median("etcd"), "ratio": r.ratio(),
                          "target": r.target, "met": r.met()} for r in rows]


def compare_secure(base: str, systems: dict, args: argparse.Namespace) -> tuple[str, list[dict]]:
    """axon-tls vs etcd-tls vs plain axon at 64 connections; (table, JSON figures)."""
    print(f"starting axon-tls, etcd-tls and plain axon (3 nodes each) under {base}", flush=True)
    pki = Pki(os.path.join(base, "pki"))
    systems["axon-tls"] = AxonTlsSystem(base, pki)
    systems["etcd-tls"] = EtcdSystem(base, pki)
    systems["axon"] = AxonSystem(base)
    for system in systems.values():
        prefill(system, args.keys, args.value_size)
    rows = measure_secure(systems, args)
    return table_secure(rows), secure_json(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    ap.add_argument("--rounds", type=int, default=1, help="repeat the throughput rows; medians are shown")
    ap.add_argument("--failovers", type=int, default=3, help="kill -9 trials per system")
    ap.add_argument("--keys", type=int, default=1000)
    ap.add_argument("--value-size", type=int, default=100)
    ap.add_argument("--json", dest="json_path", help="also write the raw figures here")
    ap.add_argument("--secure", action="store_true",
                    help="HTTPS + token Axon vs etcd over TLS vs plain Axon, @64 only, no failover")
    args = ap.parse_args()
    if not tools_ready():
        return 2
    base = tempfile.mkdtemp(prefix="axon-vs-etcd-")
    systems: dict = {}
    try:
        compare = compare_secure if args.secure else compare_default
        text, figures = compare(base, systems, args)
        print()
        print(text)
        if args.json_path:
            with open(args.json_path, "w") as f:
                json.dump(figures, f, indent=2)
        return 0
    except CompareError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        for system in systems.values():
            system.close()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

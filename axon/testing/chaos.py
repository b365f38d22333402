"""Fault injection against a running cluster: client workload, nemeses, checkers and a runner.

``run_chaos(ChaosConfig(...))`` starts a cluster of real ``axon serve``
processes, drives concurrent clients over a few keys while a nemesis injects
and heals faults, heals everything, then checks the recorded history for
linearizability (per key, ``check_history``) and durability
(``check_durability``).  The history, the fault log and the node logs stay in
the output directory.

Nemeses (``NEMESES``): kill -9 of one random node / the leader / all nodes,
SIGSTOP of a node for longer than an election timeout, network partitions
(majority/minority, isolated leader, bridge) and membership changes while a
fault is active.  Partitions and membership changes run each node in its own
network namespace (``axon.testing.netns``) and need root; the others run on
127.0.0.1.

Long soaks: ``python -m axon.testing.chaos --nemesis all --duration 600 --nodes 5``.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

from axon.client import Client
from axon.client.http import ClientError, HttpPool
from axon.testing.cluster import Cluster, ClusterError, NodeHandle, cluster_key_args, wait_for
from axon.testing.watchcheck import WatchRecorder, check_watch
from axon.testing.history import NOT_FOUND, History, Op
from axon.testing.leasecheck import LeaseHolders
from axon.testing.linearizability import CheckResult, check_history
from axon.testing.lockcheck import LockWorkload
from axon.testing.netns import NetnsError, NetnsNetwork, cleanup_stale, unavailable_reason

REQUEST_TIMEOUT = 2.0                  # the nodes' --request-timeout
CLIENT_TIMEOUT = REQUEST_TIMEOUT + 3   # a client gives up a little after the node would
ELECTION_TIMEOUT_MAX = 1.0             # 10 ticks of 50 ms, randomised up to twice that
# 503 answers that say the operation was never proposed or certainly not applied (service / raft texts).
NOT_APPLIED = ("no leader available", "it was not applied", "is not a member of the cluster")
ERROR_BACKOFF = 0.2
STATUS_TIMEOUT = 1.0
RECOVERY_TIMEOUT = 60.0
TXN_KEYS = ("x0", "x1")                # the keys TxnWorkload's transactions span (outside the watched "k")


class ChaosError(Exception):
    """The run could not set up, inject, heal or recover (the message says what; logs are kept)."""


# ---------------------------------------------------------------------- workload

class Workload:
    """Threads doing reads / writes / CAS / deletes on a few keys through random nodes, recording a History.

    ``nodes`` is read on every operation, so a caller may append nodes while it
    runs.  Every written value is unique (``c<client>-<n>``).
    """

    def __init__(self, nodes: Sequence[NodeHandle], keys: Sequence[str], clients: int = 6, seed: int = 7,
                 timeout: float = CLIENT_TIMEOUT, history: History | None = None) -> None:
        self.nodes = nodes
        self.keys = list(keys)
        self.timeout = timeout
        self.history = history or History()
        self.problems: list[str] = []
        self.stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(c, random.Random(seed * 1000 + c)),
                                          daemon=True, name=f"chaos-client-{c}")
                         for c in range(clients)]

    def __enter__(self) -> "Workload":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the clients; each finishes (or times out) its current request first."""
        self.stop.set()
        for thread in self._threads:
            thread.join(self.timeout * 3 + 5)

    def _run(self, client: int, rng: random.Random) -> None:
        pool = HttpPool(timeout=self.timeout)
        seen: dict[str, int] = {}   # the last revision this client saw per key: its CAS guess
        n = 0
        while not self.stop.is_set():
            node = rng.choice(list(self.nodes))
            api = Client(node.http, timeout=self.timeout, pool=pool, retry_for=0)
            key = rng.choice(self.keys)
            roll = rng.random()
            n += 1
            value = f"c{client}-{n}"
            if roll < 0.4:
                self._read(api, client, key, seen)
            elif roll < 0.7:
                self._mutate(self.history.invoke(client, key, "write", value),
                             lambda: api.put(key, value), seen)
            elif roll < 0.9:
                expected = seen.get(key, 0)
                self._mutate(self.history.invoke(client, key, "cas", value, expected),
                             lambda: api.put(key, value, if_revision=expected), seen)
            else:
                self._mutate(self.history.invoke(client, key, "delete"), lambda: api.delete(key), seen)
        pool.close()

    def _read(self, api: Client, client: int, key: str, seen: dict[str, int]) -> None:
        op = self.history.invoke(client, key, "read")
        try:
            answer = api.get(key)
        except ClientError as exc:
            self._unexpected(op, exc)
            self.history.fail(op)   # a failed read has no effect
            self.stop.wait(ERROR_BACKOFF)
            return
        if answer is None:
            self.history.ok(op, None)
            seen[key] = 0
            return
        self.history.ok(op, (answer["value"], answer["revision"]))
        seen[key] = answer["revision"]

    def _mutate(self, op: Op, call: Callable[[], dict | None], seen: dict[str, int]) -> None:
        try:
            answer = call()
        except ClientError as exc:
            self._record_error(op, exc, seen)
            self.stop.wait(ERROR_BACKOFF)   # as a real client honouring Retry-After would, a little
            return
        if answer is None:   # a delete of a key that was not there
            self.history.ok(op, NOT_FOUND)
            return
        self.history.ok(op, answer["revision"])
        seen[op.key] = answer["revision"]

    def _record_error(self, op: Op, exc: ClientError, seen: dict[str, int]) -> None:
        if exc.status == 412 and op.kind == "cas":
            current = exc.body.get("revision") if isinstance(exc.body, dict) else None
            self.history.fail(op, (None, 0) if current == 0 else None)
            if isinstance(current, int):
                seen[op.key] = current
        elif exc.status == 0 and "connection refused" in str(exc):
            self.history.discard(op)   # never reached a node
        elif exc.status == 503 and any(text in str(exc) for text in NOT_APPLIED):
            self.history.discard(op)
        else:
            self._unexpected(op, exc)
            self.history.unknown(op)   # timed out, lost or 503: it may have been applied

    def _unexpected(self, op: Op, exc: ClientError) -> None:
        if exc.status not in (0, 503):
            self.problems.append(f"{op.kind} {op.key}: HTTP {exc.status} {exc.body}")


class TxnWorkload(Workload):
    """Threads running transactions over two keys, recorded as ``txn`` ops in their own History.

    Two-key compare-and-set (each compare the revision this client last saw, the failure branch
    reading both keys), snapshot reads of both keys, and plain writes of one key beside them; the
    checker then checks the two keys as one object (``check_history`` groups them).
    """

    def _run(self, client: int, rng: random.Random) -> None:
        pool = HttpPool(timeout=self.timeout)
        seen: dict[str, int] = {}
        n = 0
        while not self.stop.is_set():
            api = Client(rng.choice(list(self.nodes)).http, timeout=self.timeout, pool=pool, retry_for=0)
            roll = rng.random()
            n += 1
            gets = [("get", key, None) for key in self.keys]
            if roll < 0.5:
                compares = [(key, seen.get(key, 0)) for key in self.keys]
                puts = [("put", key, f"c{client}-{n}-{key}") for key in self.keys]
                self._txn(api, self.history.invoke_txn(client, compares, puts, gets), seen)
            elif roll < 0.8:
                self._txn(api, self.history.invoke_txn(client, [], gets), seen)
            else:
                key, value = rng.choice(self.keys), f"c{client}-{n}"
                self._mutate(self.history.invoke(client, key, "write", value),
                             lambda: api.put(key, value), seen)
        pool.close()

    def _txn(self, api: Client, op: Op, seen: dict[str, int]) -> None:
        compares, success, failure = op.parts
        body = {"compare": [{"key": key, "revision": revision} for key, revision in compares],
                "success": [_txn_op(part) for part in success],
                "failure": [_txn_op(part) for part in failure]}
        try:
            answer = api.call("POST", "/txn", body)
        except ClientError as exc:
            self._record_error(op, exc, seen)
            self.stop.wait(ERROR_BACKOFF)
            return
        reads = [(r["key"], r["value"], r["revision"] if r["value"] is not None else None)
                 for r in answer["results"] if r["op"] == "get"]
        self.history.ok(op, (answer["succeeded"], answer["revision"], reads))
        for key, _, revision in reads:
            seen[key] = revision or 0
        if answer["succeeded"] and any(part[0] == "put" for part in success):
            for part in success:
                seen[part[1]] = answer["revision"]


def _txn_op(part: tuple) -> dict:
    kind, key, value = part
    return {"op": "put", "key": key, "value": value} if kind == "put" else {"op": "get", "key": key}


# ---------------------------------------------------------------------- checkers

@dataclass(frozen=True)
class DurabilityResult:
    ok: bool
    problems: tuple[str, ...] = ()


def _could_overwrite(later: Op, acked: Op) -> bool:
    """Whether ``later`` may have taken effect after ``acked`` (it did not finish before ``acked`` began)."""
    if later is acked or later.status not in ("ok", "unknown", "pending"):
        return False
    if later.kind == "delete" and later.result == NOT_FOUND:
        return False
    if later.complete is not None and later.status == "ok" and later.complete < acked.invoke:
        return False
    if later.status == "ok" and isinstance(later.result, int) and isinstance(acked.result, int):
        return later.result >= acked.result   # revisions only grow (equal: the same batch)
    return True


def check_durability(history: History, final: dict[str, tuple[str | None, int | None]]) -> DurabilityResult:
    """Every acknowledged write is the key's final value or was overwritten by a later operation.

    ``final`` maps each key to its ``(value, revision)`` read after healing
    (value None: absent).  A final value must come from a write or CAS that may
    have happened after every acknowledged write it replaces; an absent key
    needs such a delete.
    """
    problems = []
    for key, ops in history.by_key().items():
        value, revision = final.get(key, (None, None))
        mutations = [op for op in ops if op.kind != "read"]
        if value is not None:
            writers = [op for op in mutations if op.kind in ("write", "cas") and op.value == value]
            if not writers or all(op.status == "fail" for op in writers):
                problems.append(f"{key}: final value {value!r} was never (successfully) written")
                continue
            final_ops = [op for op in writers if op.status != "fail"]
        else:
            final_ops = [op for op in mutations if op.kind == "delete"]
        for acked in mutations:
            if acked.status != "ok" or acked.kind not in ("write", "cas"):
                continue
            if value is not None and acked.value == value:
                continue
            if isinstance(acked.result, int) and isinstance(revision, int) and revision < acked.result:
                problems.append(f"{key}: final revision {revision} is older than acknowledged "
                                f"{acked.describe()}")
                continue
            if not any(_could_overwrite(op, acked) for op in final_ops):
                final_text = "absent" if value is None else repr(value)
                problems.append(f"{key}: acknowledged {acked.describe()} lost: final state {final_text} "
                                f"comes from no operation that could follow it")
    return DurabilityResult(not problems, tuple(problems))


def check_linearizable(history: History, timeout_per_key: float = 60.0) -> CheckResult:
    """Per-key linearizability (a thin name for ``check_history``)."""
    return check_history(history, timeout_per_key=timeout_per_key)


# ---------------------------------------------------------------------- fault log

@dataclass
class FaultEvent:
    nemesis: str
    detail: str
    injected: float                 # when injecting began
    active: float | None = None     # when the fault was fully in effect (unavailability counts from here)
    healed: float | None = None


class ChaosContext:
    """What a nemesis may touch: the cluster, the network (partitions), a seeded random source."""

    def __init__(self, cluster: Cluster, net: NetnsNetwork | None, rng: random.Random) -> None:
        self.cluster = cluster
        self.net = net
        self.rng = rng
        self.members: list[NodeHandle] = list(cluster.nodes)   # voters as far as the runner knows
        self.spares: list[NodeHandle] = []                      # out of the cluster, data wiped

    def alive(self) -> list[NodeHandle]:
        return [node for node in self.members if node.running and not node.paused]

    def wait_healthy(self, timeout: float = RECOVERY_TIMEOUT) -> None:
        """Wait until every member runs, answers and names the same leader (a fault starts from health)."""
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while True:
            leaders = set()
            for node in self.members:
                node.check_running()
                try:
                    leaders.add(node.status(timeout=STATUS_TIMEOUT)["leader"])
                except ClientError as exc:
                    leaders.add(None)
                    last = f"{node.node_id}: {exc}"
            if len(leaders) == 1 and None not in leaders:
                return
            if time.monotonic() >= deadline:
                raise ChaosError(f"cluster not healthy {timeout:g}s after healing (leaders seen {leaders}; {last})")
            time.sleep(0.1)

    def leader(self, timeout: float = 15.0, among: Sequence[NodeHandle] | None = None) -> NodeHandle:
        """The live member claiming leadership with the highest term (an isolated old leader loses)."""
        deadline = time.monotonic() + timeout
        while True:
            best: tuple[int, NodeHandle] | None = None
            for node in among if among is not None else self.alive():
                try:
                    st = node.status(timeout=STATUS_TIMEOUT)
                except ClientError:
                    continue
                if st["state"] == "leader" and (best is None or st["term"] > best[0]):
                    best = (st["term"], node)
            if best is not None:
                return best[1]
            if time.monotonic() >= deadline:
                raise ChaosError(f"no leader among {[n.node_id for n in self.alive()]} within {timeout:g}s")
            time.sleep(0.1)


# ---------------------------------------------------------------------- nemeses

class Nemesis:
    """One kind of fault: ``inject`` starts it (returns a description), ``heal`` ends it."""

    name = "none"
    needs_netns = False
    kills_every_node = False   # only then may state kept in memory alone (the watch history) be lost
    hold = (2.0, 4.0)   # seconds a fault stays active (uniform)

    def inject(self, ctx: ChaosContext) -> str:
        raise NotImplementedError

    def heal(self, ctx: ChaosContext) -> None:
        raise NotImplementedError


class KillNemesis(Nemesis):
    """kill -9 some nodes; heal restarts them on their data."""

    def __init__(self, name: str, pick: Callable[[ChaosContext], list[NodeHandle]],
                 every_node: bool = False) -> None:
        self.name = name
        self.kills_every_node = every_node
        self._pick = pick
        self._victims: list[NodeHandle] = []

    def inject(self, ctx: ChaosContext) -> str:
        self._victims = self._pick(ctx)
        for node in self._victims:
            node.kill()
        return "kill -9 " + ",".join(node.node_id for node in self._victims)

    def heal(self, ctx: ChaosContext) -> None:
        for node in self._victims:
            if not node.running:
                node.start()
        self._victims = []


class PauseNemesis(Nemesis):
    """SIGSTOP a node (the leader half of the time) for longer than an election timeout."""

    name = "pause"
    hold = (2.5 * ELECTION_TIMEOUT_MAX, 5.0)

    def __init__(self) -> None:
        self._victim: NodeHandle | None = None

    def inject(self, ctx: ChaosContext) -> str:
        self._victim = ctx.leader() if ctx.rng.random() < 0.5 else ctx.rng.choice(ctx.alive())
        self._victim.pause()
        return f"SIGSTOP {self._victim.node_id}"

    def heal(self, ctx: ChaosContext) -> None:
        if self._victim is not None:
            self._victim.resume()
        self._victim = None


class PartitionNemesis(Nemesis):
    """Cut the network into groups (nft DROP in every node's namespace); heal removes the rules."""

    needs_netns = True

    def __init__(self, name: str, groups: Callable[[ChaosContext], list[set[str]]]) -> None:
        self.name = name
        self._groups = groups

    def inject(self, ctx: ChaosContext) -> str:
        groups = self._groups(ctx)
        ctx.net.partition(groups)
        return "partition " + " | ".join(",".join(sorted(g)) for g in groups)

    def heal(self, ctx: ChaosContext) -> None:
        ctx.net.heal()


def _majority_minority(ctx: ChaosContext) -> list[set[str]]:
    ids = [node.node_id for node in ctx.members]
    ctx.rng.shuffle(ids)
    cut = len(ids) // 2
    return [set(ids[:cut]), set(ids[cut:])]


def _isolated_leader(ctx: ChaosContext) -> list[set[str]]:
    leader = ctx.leader().node_id
    return [{leader}, {node.node_id for node in ctx.members} - {leader}]


def _bridge(ctx: ChaosContext) -> list[set[str]]:
    """Two halves that cannot talk, joined by one node that talks to both (each side a majority with it)."""
    ids = [node.node_id for node in ctx.members]
    ctx.rng.shuffle(ids)
    half = len(ids) // 2
    return [set(ids[:half + 1]), set(ids[half:])]


class MembershipNemesis(Nemesis):
    """While one node is paused or isolated: add a node (a fresh one, or a removed one wiped), remove another."""

    name = "membership"
    needs_netns = True
    hold = (0.5, 1.5)   # on top of the membership changes made while the fault is active
    CHANGE_TIMEOUT = 30.0

    def __init__(self) -> None:
        self._faulty: NodeHandle | None = None
        self._paused = False

    def inject(self, ctx: ChaosContext) -> str:
        faulty = ctx.rng.choice(ctx.alive())
        self._faulty = faulty
        self._paused = ctx.rng.random() < 0.5
        if self._paused:
            faulty.pause()
        else:
            ctx.net.partition([{faulty.node_id}, {n.node_id for n in ctx.members} - {faulty.node_id}])
        healthy = [node for node in ctx.alive() if node is not faulty]
        added = self._add(ctx, healthy)
        removed = self._remove(ctx, faulty, added)
        how = "SIGSTOP" if self._paused else "isolate"
        return f"{how} {faulty.node_id}; add {added.node_id}; remove {removed.node_id}"

    def _new_node(self, ctx: ChaosContext) -> NodeHandle:
        if ctx.spares:
            return ctx.spares.pop(0)
        taken = {node.node_id for node in ctx.cluster.nodes}
        number = len(ctx.cluster.nodes) + 1
        while f"n{number}" in taken:
            number += 1
        return ctx.cluster.new_node(f"n{number}")

    def _add(self, ctx: ChaosContext, healthy: list[NodeHandle]) -> NodeHandle:
        node = self._new_node(ctx)
        node.start(join=[n.http for n in healthy])
        ctx.members.append(node)
        deadline = time.monotonic() + self.CHANGE_TIMEOUT
        while node.node_id not in self._voters(ctx, healthy):
            node.check_running()
            if time.monotonic() >= deadline:
                raise ChaosError(f"{node.node_id} did not become a voter within {self.CHANGE_TIMEOUT:g}s")
            time.sleep(0.1)
        return node

    def _voters(self, ctx: ChaosContext, among: list[NodeHandle]) -> list[str]:
        try:
            return ctx.leader(timeout=5.0, among=among).status(timeout=STATUS_TIMEOUT)["voters"]
        except (ChaosError, ClientError):
            return []

    def _remove(self, ctx: ChaosContext, faulty: NodeHandle, added: NodeHandle) -> NodeHandle:
        healthy = [node for node in ctx.alive() if node is not faulty]
        candidates = [node for node in healthy if node is not added]
        victim = ctx.rng.choice(candidates)
        deadline = time.monotonic() + self.CHANGE_TIMEOUT
        while True:
            through = ctx.rng.choice([node for node in healthy if node is not victim])
            try:
                Client(through.http, timeout=CLIENT_TIMEOUT, pool=through.pool, retry_for=0).remove(victim.node_id)
                break
            except ClientError as exc:
                if exc.status == 404:   # an earlier attempt committed but its answer was lost
                    break
                if time.monotonic() >= deadline:
                    raise ChaosError(f"could not remove {victim.node_id}: {exc}") from None
                time.sleep(0.2)
        rest = [node for node in healthy if node is not victim]
        while victim.node_id in self._voters(ctx, rest):
            if time.monotonic() >= deadline:
                raise ChaosError(f"{victim.node_id} still a voter {self.CHANGE_TIMEOUT:g}s after removal")
            time.sleep(0.1)
        victim.kill()
        ctx.members.remove(victim)
        shutil.rmtree(victim.data_dir, ignore_errors=True)   # it comes back later as a brand-new member
        ctx.spares.append(victim)
        return victim

    def heal(self, ctx: ChaosContext) -> None:
        if self._faulty is not None:
            if self._paused:
                self._faulty.resume()
            else:
                ctx.net.heal()
        self._faulty = None


def _random_alive(ctx: ChaosContext) -> list[NodeHandle]:
    return [ctx.rng.choice(ctx.alive())]


NEMESES: dict[str, Callable[[], Nemesis]] = {
    "kill-one": lambda: KillNemesis("kill-one", _random_alive),
    "kill-leader": lambda: KillNemesis("kill-leader", lambda ctx: [ctx.leader()]),
    "kill-all": lambda: KillNemesis("kill-all", lambda ctx: list(ctx.members), every_node=True),
    "pause": PauseNemesis,
    "partition-majority-minority": lambda: PartitionNemesis("partition-majority-minority", _majority_minority),
    "partition-isolated-leader": lambda: PartitionNemesis("partition-isolated-leader", _isolated_leader),
    "partition-bridge": lambda: PartitionNemesis("partition-bridge", _bridge),
    "membership": MembershipNemesis,
}


def make_nemesis(name: str) -> Nemesis:
    try:
        return NEMESES[name]()
    except KeyError:
        raise ChaosError(f"unknown nemesis {name!r}; choose from {', '.join(NEMESES)}") from None


def netns_skip_reason(nemesis: str) -> str | None:
    """Why ``nemesis`` cannot run on this machine (None when it can)."""
    return unavailable_reason() if make_nemesis(nemesis).needs_netns else None


# ---------------------------------------------------------------------- runner

@dataclass
class ChaosConfig:
    nemesis: str
    duration: float = 60.0
    nodes: int = 3
    seed: int = 1
    keys: int = 4
    clients: int = 8
    out_dir: str | None = None
    quiet: tuple[float, float] = (1.5, 3.0)   # seconds of calm between faults (uniform)
    check_timeout_per_key: float = 120.0
    cluster_key: bool = True      # peers seal every frame, as a production cluster does
    txn_clients: int = 0          # clients running two-key transactions beside (TxnWorkload)
    lock_clients: int = 0         # clients taking turns at a lock beside (axon/testing/lockcheck.py)
    lease_holders: int = 2        # threads keeping a lease alive beside (axon/testing/leasecheck.py)
    lease_ttl: int = 4


@dataclass
class ChaosReport:
    nemesis: str
    out_dir: str
    ok: bool
    faults: list[FaultEvent]
    op_counts: dict[str, int]
    linearizable: CheckResult | None
    durability: DurabilityResult | None
    problems: list[str] = field(default_factory=list)
    unavailability: dict[str, list[float]] = field(default_factory=dict)
    watch_events: int = 0   # changes a watcher beside the workload received and had checked
    txn_linearizable: CheckResult | None = None   # the transactions' history (txn_clients > 0)
    txn_counts: dict[str, int] = field(default_factory=dict)
    lock_counts: dict[str, int] = field(default_factory=dict)   # the lock check's (lock_clients > 0)
    lease_keepalives: int = 0   # keepalives the lease holders had acknowledged (their checks in problems)

    def summary(self) -> str:
        lines = [f"nemesis {self.nemesis}: {'OK' if self.ok else 'FAILED'} "
                 f"({len(self.faults)} faults, ops {self.op_counts}, {self.watch_events} watched changes, "
                 f"{self.lease_keepalives} lease keepalives)"]
        for what, times in self.unavailability.items():
            if times:
                lines.append(f"  {what}: median {statistics.median(times):.2f}s, max {max(times):.2f}s "
                             f"over {len(times)} faults")
        if self.linearizable is not None and not self.linearizable.ok:
            lines.append("  linearizability: " + self.linearizable.explanation)
        if self.txn_linearizable is not None:
            lines.append(f"  transactions {self.txn_counts}: " + self.txn_linearizable.explanation)
        if self.lock_counts:
            lines.append(f"  lock: {self.lock_counts}")
        if self.durability is not None and not self.durability.ok:
            lines.append("  durability: " + "; ".join(self.durability.problems[:10]))
        lines += ["  problem: " + p for p in self.problems[:10]]
        lines.append(f"  history, faults and node logs in {self.out_dir}")
        return "\n".join(lines)


def first_write_after(history: History, moment: float) -> float | None:
    """Seconds from ``moment`` to the completion of the first acknowledged write invoked after it."""
    done = [op.complete for op in history.ops()
            if op.kind != "read" and op.status == "ok" and op.invoke >= moment and op.complete is not None
            and op.result != NOT_FOUND]
    return min(done) - moment if done else None


def measure_unavailability(history: History, faults: Sequence[FaultEvent]) -> dict[str, list[float]]:
    """Per fault: time to the first acknowledged write invoked after the fault took effect, and after its heal."""
    after_fault, after_heal = [], []
    for fault in faults:
        gap = first_write_after(history, fault.active if fault.active is not None else fault.injected)
        if gap is not None:
            after_fault.append(gap)
        if fault.healed is not None:
            gap = first_write_after(history, fault.healed)
            if gap is not None:
                after_heal.append(gap)
    return {"fault to first write": after_fault, "heal to first write": after_heal}


class ChaosRun:
    """One run of one nemesis; ``run()`` always heals, stops every process and removes the namespaces."""

    def __init__(self, config: ChaosConfig, nemesis: Nemesis | None = None) -> None:
        self.config = config
        self.nemesis = nemesis or make_nemesis(config.nemesis)
        self.rng = random.Random(config.seed)
        self.out_dir = config.out_dir or tempfile.mkdtemp(prefix=f"axon-chaos-{config.nemesis}-")
        os.makedirs(self.out_dir, exist_ok=True)
        self.faults: list[FaultEvent] = []
        self.problems: list[str] = []
        self.watch_events = 0   # changes the watcher received (checked against the history)
        self.txns: TxnWorkload | None = None
        self.locks: LockWorkload | None = None
        self.leases: LeaseHolders | None = None

    def run(self) -> ChaosReport:
        net: NetnsNetwork | None = None
        cluster: Cluster | None = None
        workload: Workload | None = None
        final: dict[str, tuple[str | None, int | None]] | None = None
        try:
            if self.nemesis.needs_netns:
                reason = unavailable_reason()
                if reason:
                    raise ChaosError(f"nemesis {self.nemesis.name} needs network namespaces: {reason}")
                cleanup_stale()
                net = NetnsNetwork()
            os.makedirs(os.path.join(self.out_dir, "nodes"), exist_ok=True)
            extra_args = cluster_key_args(self.out_dir) if self.config.cluster_key else []
            cluster = Cluster(os.path.join(self.out_dir, "nodes"), n=self.config.nodes,
                              extra_args=extra_args, request_timeout=REQUEST_TIMEOUT,
                              node_options=net.node_options if net is not None else None)
            ctx = ChaosContext(cluster, net, self.rng)
            keys = [f"k{i}" for i in range(self.config.keys)]
            start = ctx.leader().status()["commit_index"] + 1
            watcher = WatchRecorder(lambda: [n.http for n in cluster.nodes], "k", start).start()
            workload = Workload(cluster.nodes, keys, clients=self.config.clients, seed=self.config.seed)
            if self.config.txn_clients:
                self.txns = TxnWorkload(cluster.nodes, TXN_KEYS, clients=self.config.txn_clients,
                                        seed=self.config.seed + 1).__enter__()
            if self.config.lock_clients:
                self.locks = LockWorkload(lambda: [n.http for n in cluster.nodes],
                                          clients=self.config.lock_clients).start()
            if self.config.lease_holders:
                self.leases = LeaseHolders(lambda: [n.http for n in cluster.nodes], self.config.lease_holders,
                                           self.config.lease_ttl, seed=self.config.seed).start()
            with workload:
                self._nemesis_loop(ctx)
                time.sleep(2.0)   # let the clients see the healed cluster
            self._close_side_workloads()
            final = self._recover_and_read(ctx, keys)
            self._check_watch(ctx, watcher, workload, start, final)
            if self.leases is not None:
                self.problems += self.leases.problems + self.leases.check_gone(
                    lambda prefix: [item["key"] for item in ctx.leader().client.list_page(prefix)["items"]],
                    ELECTION_TIMEOUT_MAX)
        except (ChaosError, ClusterError, NetnsError) as exc:
            self.problems.append(f"{exc.__class__.__name__}: {exc}")
        except BaseException:
            print(f"chaos run {self.nemesis.name} crashed; history and node logs in {self.out_dir}",
                  file=sys.stderr)
            raise
        finally:
            if workload is not None:
                workload.close()
            self._close_side_workloads()
            if cluster is not None:
                cluster.close()
            if net is not None:
                net.close()
            self._dump(workload)
        return self._report(workload, final)

    def _close_side_workloads(self) -> None:
        """Stop the transactions, the lock check and the lease holders (each close is idempotent)."""
        for side in (self.txns, self.locks, self.leases):
            if side is not None:
                side.close()

    def _dump(self, workload: Workload | None) -> None:
        history = workload.history if workload is not None else History()
        history.dump(os.path.join(self.out_dir, "history.jsonl"))
        if self.txns is not None:
            self.txns.history.dump(os.path.join(self.out_dir, "txn_history.jsonl"))
        with open(os.path.join(self.out_dir, "faults.jsonl"), "w", encoding="utf-8") as f:
            for fault in self.faults:
                f.write(json.dumps(asdict(fault)) + "\n")

    def _nemesis_loop(self, ctx: ChaosContext) -> None:
        deadline = time.monotonic() + self.config.duration
        time.sleep(2.0)   # warm-up: a history starts with a working cluster
        fault: FaultEvent | None = None
        try:
            while time.monotonic() + self.nemesis.hold[1] + 1 < deadline:
                fault = FaultEvent(self.nemesis.name, "", time.monotonic())
                self.faults.append(fault)
                fault.detail = self.nemesis.inject(ctx)
                fault.active = time.monotonic()
                time.sleep(self.rng.uniform(*self.nemesis.hold))
                self.nemesis.heal(ctx)
                fault.healed = time.monotonic()
                fault = None
                ctx.wait_healthy()
                time.sleep(min(self.rng.uniform(*self.config.quiet), max(0.0, deadline - time.monotonic())))
        finally:
            if fault is not None:   # inject or the hold failed: heal anyway before anything else
                fault.detail = fault.detail or "(inject failed)"
                try:
                    self.nemesis.heal(ctx)
                finally:
                    fault.healed = time.monotonic()
                    self._heal_everything(ctx)

    @staticmethod
    def _heal_everything(ctx: ChaosContext) -> None:
        if ctx.net is not None:
            ctx.net.heal()
        for node in ctx.members:
            if node.paused:
                node.resume()
            if not node.running:
                node.start()

    def _recover_and_read(self, ctx: ChaosContext, keys: list[str]) -> dict[str, tuple[str | None, int | None]]:
        """Wait for a leader and converged members, check they hold the same data, read the final values."""
        self._heal_everything(ctx)
        leader = ctx.leader(timeout=RECOVERY_TIMEOUT)
        try:
            ctx.cluster.wait_converged(timeout=RECOVERY_TIMEOUT, among=ctx.members)
        except AssertionError as exc:
            raise ChaosError(f"members did not converge after healing: {exc}") from None
        final: dict[str, tuple[str | None, int | None]] = {}
        for key in keys:
            final[key] = self._read_final(ctx, leader, key)
            for node in ctx.members:
                local = _read_local(node, key)
                if local != final[key]:
                    self.problems.append(f"{node.node_id} holds {key}={local} but the leader says {final[key]}")
        return final

    def _check_watch(self, ctx: ChaosContext, watcher: WatchRecorder, workload: Workload, start: int,
                     final: dict[str, tuple[str | None, int | None]]) -> None:
        """The watcher got every change of the run, in order, once (axon/testing/watchcheck.py)."""
        wait_for(lambda: ctx.leader(timeout=RECOVERY_TIMEOUT).client.put(watcher.sentinel, "end"),
                 RECOVERY_TIMEOUT, message="the watch's end marker to be written")
        if not watcher.done.wait(RECOVERY_TIMEOUT):
            self.problems.append(f"the watcher did not reach the end marker ({len(watcher.events)} events)")
            return
        self.watch_events = len(watcher.events)
        self.problems += watcher.problems
        if watcher.gaps and not self.nemesis.kills_every_node:
            # the change history is kept in memory: only a restart of every node may lose it
            self.problems.append(f"the watch lost revisions {watcher.gaps} though a node kept running")
        self.problems += check_watch(watcher.events, workload.history.ops(), start, final, watcher.gaps)

    def _read_final(self, ctx: ChaosContext, leader: NodeHandle, key: str) -> tuple[str | None, int | None]:
        deadline = time.monotonic() + RECOVERY_TIMEOUT
        while True:
            try:
                answer = leader.client.get(key)
                return (answer["value"], answer["revision"]) if answer is not None else (None, None)
            except ClientError as exc:
                if time.monotonic() >= deadline:
                    raise ChaosError(f"final read of {key} kept failing: {exc}") from None
                time.sleep(0.2)
                leader = ctx.leader(timeout=RECOVERY_TIMEOUT)

    def _report(self, workload: Workload | None, final: dict | None) -> ChaosReport:
        history = workload.history if workload is not None else History()
        if workload is not None:
            self.problems += workload.problems[:20]
        counts: dict[str, int] = {}
        for op in history.ops():
            counts[op.status] = counts.get(op.status, 0) + 1
        linearizable = durability = None
        if final is not None:
            linearizable = check_linearizable(history, self.config.check_timeout_per_key)
            durability = check_durability(history, final)
        txn_linearizable, txn_counts = None, {}
        if self.txns is not None:
            self.problems += self.txns.problems[:20]
            for op in self.txns.history.ops():
                txn_counts[op.status] = txn_counts.get(op.status, 0) + 1
            if final is not None:
                txn_linearizable = check_history(self.txns.history,
                                                 timeout_per_key=self.config.check_timeout_per_key)
        lock_counts = {}
        if self.locks is not None:
            self.problems += self.locks.check()
            lock_counts = self.locks.counts()
        ok = (not self.problems and linearizable is not None and linearizable.ok
              and durability is not None and durability.ok
              and (self.txns is None or (txn_linearizable is not None and txn_linearizable.ok)))
        report = ChaosReport(self.nemesis.name, self.out_dir, ok, self.faults, counts, linearizable,
                             durability, self.problems, measure_unavailability(history, self.faults),
                             self.watch_events, txn_linearizable, txn_counts,
                             lease_keepalives=self.leases.keepalives if self.leases is not None else 0)
        report.lock_counts = lock_counts
        with open(os.path.join(self.out_dir, "summary.txt"), "w", encoding="utf-8") as f:
            f.write(report.summary() + "\n")
        if not report.ok:
            print(f"chaos run {self.nemesis.name} FAILED; history and node logs in {self.out_dir}",
                  file=sys.stderr)
        return report


def _read_local(node: NodeHandle, key: str) -> tuple[str | None, int | None] | str:
    try:
        answer = node.client.get(key, stale=True)
    except ClientError as exc:
        return f"unreadable: {exc}"
    return (answer["value"], answer["revision"]) if answer is not None else (None, None)


def run_chaos(config: ChaosConfig) -> ChaosReport:
    """Run one nemesis against a fresh cluster and check the history (see the module docstring)."""
    return ChaosRun(config).run()


# ---------------------------------------------------------------------- CLI

def main(argv: Sequence[str] | None = None) -> int:
    import click

    @click.command(context_settings={"help_option_names": ["-h", "--help"]})
    @click.option("--nemesis", "nemeses", multiple=True, required=True,
                  type=click.Choice(sorted(NEMESES) + ["all"]), help="Fault to inject (repeatable; all = each).")
    @click.option("--duration", type=click.FloatRange(min=10), default=60.0, show_default=True,
                  help="Seconds of faults per nemesis.")
    @click.option("--nodes", type=click.Choice(["3", "5"]), default="3", show_default=True)
    @click.option("--seed", type=int, default=None, help="Random seed (default: time-based, printed).")
    @click.option("--out", "out", default=None,
                  help="Directory for histories and logs (default: a temp dir, removed when all pass).")
    @click.option("--cluster-key/--no-cluster-key", default=True, show_default=True,
                  help="Give the nodes a cluster key (sealed raft frames and gossip).")
    def command(nemeses: tuple[str, ...], duration: float, nodes: str, seed: int | None, out: str | None,
                cluster_key: bool) -> None:
        names = sorted(NEMESES) if "all" in nemeses else list(dict.fromkeys(nemeses))
        seed = seed if seed is not None else int(time.time()) % 100000
        base = out or tempfile.mkdtemp(prefix="axon-chaos-")
        click.echo(f"seed {seed}; output in {base}")
        failed = []
        for name in names:
            report = run_chaos(ChaosConfig(name, duration=duration, nodes=int(nodes), seed=seed,
                                           out_dir=os.path.join(base, name), cluster_key=cluster_key))
            click.echo(report.summary())
            if not report.ok:
                failed.append(name)
        if failed:
            click.echo(f"FAILED: {', '.join(failed)}; histories and node logs in {base}", err=True)
            sys.exit(1)
        if out is None:
            shutil.rmtree(base, ignore_errors=True)

    try:
        command.main(args=list(argv) if argv is not None else None, prog_name="python -m axon.testing.chaos",
                     standalone_mode=True)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())

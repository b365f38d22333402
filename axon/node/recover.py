"""Disaster recovery: a stopped node's data dir becomes a one-voter cluster (``axon recover``).

After losing a quorum for good, the committed data of one survivor is all there is.  Like
etcd's ``--force-new-cluster``, recovery keeps the data and forces a new membership:

1. the store is brought up to the end of the survivor's log: every entry the log holds is
   applied, as a leader elected from this log would commit them (an entry the old
   cluster acknowledged is in the log of at least one member of every majority);
2. one more slot, at the next index and a term above every term seen, makes this node the
   only voter (with the addresses it had), and the log is compacted past it;
3. the node gets a new cluster id, so the lost members, should they come back with their
   old logs, are refused at the handshake instead of disturbing the new history.

``axon serve`` with the node's usual flags then starts it as the leader of the new
cluster; fresh nodes join it with ``--join``.  ``seal_sole_voter`` is shared with a
restore from a backup file (axon/node/backup.py), which ends the same way.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from axon.config import ConfigError
from axon.kv.feed import ChangeFeed
from axon.kv.machine import KVStateMachine
from axon.kv.store import Slot, Store, StoreError
from axon.node.cluster_id import ClusterId
from axon.node.datadir import read_cluster_id, read_node_id, tighten_modes
from axon.raft.core import encode_config_bytes
from axon.raft.rules import log_behind_store
from axon.raft.types import ClusterConfig, HardState, Member
from axon.raft.wal import WAL, WalError

STORE_DIR = "store"      # as axon/node/process.py lays a data dir out
WAL_DIR = "raft"
APPLY_BATCH = 1000       # log entries applied per store write
STAGED_SNAPSHOT = "snapshot.incoming"


class RecoverError(Exception):
    """Recovery cannot go on; the message says why in one line."""


@dataclass(frozen=True)
class Recovered:
    """What a recovery (or a restore) left: who, at what revision and term, in which cluster."""
    node_id: str
    member: Member
    revision: int
    term: int
    cluster_id: str
    previous_cluster_id: str | None
    replayed: int = 0                         # log entries applied past the store's index
    dropped: tuple[str, ...] = ()             # members of the old configuration no longer in it


def inspect(data_dir: str) -> dict:
    """What a recovery would start from, without changing anything (the data dir must be free)."""
    node_id = _node_id(data_dir)
    with _open_store(data_dir) as store, _open_wal(data_dir) as wal:
        entries = wal.entries()
        return {"node_id": node_id, "cluster_id": read_cluster_id(data_dir),
                "store_revision": store.applied_index, "log_last_index": wal.last_index(),
                "log_last_term": entries[-1].term if entries else wal.compacted[1],
                "term": wal.hard_state.term}


def force_new_cluster(data_dir: str) -> Recovered:
    """Turn a stopped node's data dir into a one-voter cluster with a new id (see the module doc)."""
    os.umask(0o077)
    node_id = _node_id(data_dir)
    previous = read_cluster_id(data_dir)
    with _open_store(data_dir) as store, _open_wal(data_dir) as wal:
        replayed = _replay_log(store, wal)
        machine_config = KVStateMachine(store).config or ClusterConfig()
        member = machine_config.members().get(node_id)
        if member is None:
            raise RecoverError(f"node {node_id} is not a member of the last configuration in "
                               f"{data_dir}; recover from a node that was")
        term = seal_sole_voter(store, wal, node_id, member)
        revision = store.applied_index
    _drop_staged_snapshot(data_dir)
    try:
        cluster_id = ClusterId(data_dir).mint()
    except ConfigError as exc:
        raise RecoverError(str(exc)) from None
    tighten_modes(data_dir)
    dropped = tuple(sorted(set(machine_config.members()) - {node_id}))
    return Recovered(node_id, member, revision, term, cluster_id, previous, replayed, dropped)


def seal_sole_voter(store: Store, wal: WAL, node_id: str, member: Member) -> int:
    """Make ``node_id`` the only voter, one slot past the store's index, and start the log after
    it; returns the new term (above every term the store and the log have seen)."""
    term = max(store.applied_term, wal.hard_state.term, *(e.term for e in wal.entries())) + 1
    index = store.applied_index + 1
    blob = encode_config_bytes(ClusterConfig(voters={node_id: member}))
    try:
        store.apply([Slot(index, term, config_blob=blob)])
        store.sync()
    except StoreError as exc:
        raise RecoverError(f"cannot write the new configuration: {exc}") from None
    try:
        # The store holds everything up to ``index`` durably: the log starts after it.
        wal.compact(index, term, drop_newer=True)
        wal.append([], HardState(term, None))
        wal.begin_sync().run()
    except WalError as exc:
        raise RecoverError(f"cannot rewrite the log: {exc}") from None
    return term


def _replay_log(store: Store, wal: WAL) -> int:
    """Apply the log's entries past the store's index; returns how many."""
    try:
        log_behind_store(store.applied_index, wal.compacted[0], wal.last_index())
    except RuntimeError as exc:
        raise RecoverError(str(exc)) from None
    pending = [e for e in wal.entries() if e.index > store.applied_index]
    # The machine turns Raft entries into store slots; its change feed has no reader here.
    machine = KVStateMachine(store, ChangeFeed(store.applied_index))
    try:
        for start in range(0, len(pending), APPLY_BATCH):
            machine.apply(pending[start:start + APPLY_BATCH])
        store.sync()
    except StoreError as exc:
        raise RecoverError(f"cannot apply the log to the store: {exc}") from None
    return len(pending)


def _node_id(data_dir: str) -> str:
    if not os.path.isdir(data_dir):
        raise RecoverError(f"data dir {data_dir} does not exist")
    try:
        return read_node_id(data_dir)
    except ConfigError as exc:
        raise RecoverError(str(exc)) from None


def _part(data_dir: str, name: str, what: str) -> str:
    path = os.path.join(data_dir, name)
    if not os.path.isdir(path):
        raise RecoverError(f"data dir {data_dir} holds no {what} ({path} is missing)")
    return path


def _open_store(data_dir: str) -> Store:
    try:
        return Store.open(_part(data_dir, STORE_DIR, "store"))
    except StoreError as exc:
        if "in use" in str(exc):
            raise RecoverError(f"data dir {data_dir} is in use: stop the node that runs on it first "
                               f"(its LevelDB lock is held)") from None
        raise RecoverError(str(exc)) from None


def _open_wal(data_dir: str) -> WAL:
    try:
        return WAL.open(_part(data_dir, WAL_DIR, "Raft log"))
    except WalError as exc:
        raise RecoverError(f"cannot open the Raft log: {exc}") from None


def _drop_staged_snapshot(data_dir: str) -> None:
    """A half-received snapshot belongs to the old cluster's leader; it must not be installed."""
    try:
        os.unlink(os.path.join(data_dir, WAL_DIR, STAGED_SNAPSHOT))
    except FileNotFoundError:
        pass

"""Start-up: a new one-node cluster when asked to bootstrap, then the core recovered from the
WAL and the store (state on disk always wins over ``--bootstrap``)."""
from __future__ import annotations

import logging

from axon.raft.core import RaftCore, RaftOptions, bootstrap_entry
from axon.raft.interfaces import StateMachine
from axon.raft.rules import log_behind_store
from axon.raft.types import ClusterConfig, HardState, Member, SnapshotMeta
from axon.raft.wal import WAL

log = logging.getLogger("axon.raft")


def bootstrap(wal: WAL, sm: StateMachine, node_id: str, member: Member, wanted: bool) -> bool:
    """Write the first configuration (this node alone) if wanted and there is no state yet."""
    if not wanted:
        return False
    has_state = (wal.last_index() > 0 or wal.compacted[0] > 0
                 or sm.applied_index > 0 or wal.hard_state.term > 0)
    if has_state:
        log.info("data directory has cluster state; --bootstrap changes nothing")
        return False
    wal.append([bootstrap_entry(node_id, member)], HardState(1, None))
    wal.begin_sync().run()
    log.info("bootstrapped a new one-node cluster as %s", node_id)
    return True


def recover_core(node_id: str, wal: WAL, sm: StateMachine, options: RaftOptions) -> RaftCore:
    """The core as the store and the log left it: the store's applied state is its snapshot."""
    sm_index = sm.applied_index
    if log_behind_store(sm_index, wal.compacted[0], wal.last_index()):
        wal.compact(sm_index, sm.applied_term, drop_newer=True)
    snapshot = SnapshotMeta(sm_index, sm.applied_term, sm.config or ClusterConfig())
    entries = [e for e in wal.entries() if e.index > sm_index]
    return RaftCore(node_id, hard_state=wal.hard_state, snapshot=snapshot,
                    entries=entries, applied=sm_index, options=options)

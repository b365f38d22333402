"""The id of the cluster this node belongs to: made when the node bootstraps a cluster, adopted
from the first join answer that admits it, kept in the data dir's node.json.

A fresh joiner has none yet.  Whoever needs it calls the ``ClusterId`` object: the API names
it in /cluster/status and in join answers, the joiner sends it so that a leader of another
cluster refuses it, and the Raft transport's handshake is to read it the same way.
"""
from __future__ import annotations

import logging
import os

from axon.node.datadir import read_cluster_id, write_cluster_id

CLUSTER_ID_BYTES = 16      # random: two clusters never share an id by chance

log = logging.getLogger("axon.node.cluster_id")


class ClusterId:
    """``cluster_id()`` -> the id (32 hex digits), or None while this node belongs to no cluster."""

    def __init__(self, data_dir: str) -> None:
        self.data_dir = data_dir
        self._value = read_cluster_id(data_dir)

    def __call__(self) -> str | None:
        return self._value

    def mint(self) -> str:
        """A new id, for the cluster this node has just bootstrapped (raises ConfigError if unstorable)."""
        cluster_id = os.urandom(CLUSTER_ID_BYTES).hex()
        self._store(cluster_id)
        log.info("new cluster %s", cluster_id)
        return cluster_id

    def adopt(self, cluster_id: str) -> bool:
        """Take the id of the cluster that admitted this node if it has none; False if it has another."""
        if self._value is None:
            self._store(cluster_id)
            log.info("this node belongs to cluster %s", cluster_id)
            return True
        return self._value == cluster_id

    def _store(self, cluster_id: str) -> None:
        # stored before it is used: a restart must not find the node of no cluster again
        write_cluster_id(self.data_dir, cluster_id)
        self._value = cluster_id

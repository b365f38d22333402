"""`axon recover`: a stopped node's data dir becomes a one-voter cluster after a lost quorum."""
from __future__ import annotations

import click

from axon.cli.common import CONTEXT, fail, out
from axon.cli.node_options import flag_option
from axon.config import node_flags


def _data_dir_option(fn: click.decorators.FC) -> click.decorators.FC:
    [(field, flag)] = [(f, flag) for f, flag in node_flags() if f.name == "data_dir"]
    return flag_option(field, flag)(fn)


@click.command(context_settings=CONTEXT)
@_data_dir_option
@click.option("--force-new-cluster", is_flag=True,
              help="Do it: keep this node's data, make it the only voter, give it a new cluster id.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def recover(data_dir: str, force_new_cluster: bool, as_json: bool) -> None:
    """Make a surviving node the only voter of a new cluster holding its data (node stopped).

    Every entry of its log is kept, as a leader elected from it would keep them. Then start
    it with `axon serve` and its usual flags, and let fresh nodes (empty data dirs) join it
    with --join. The lost members' old data dirs must not be started again: they belong to
    the old cluster id, which the new cluster refuses.
    """
    from axon.node.recover import RecoverError, force_new_cluster as force, inspect
    try:
        if not force_new_cluster:
            state = inspect(data_dir)
            fail(f"node {state['node_id']} in {data_dir} is at revision {state['store_revision']}, its "
                 f"log ends at index {state['log_last_index']} of term {state['log_last_term']}; "
                 f"recovering rewrites its membership: pass --force-new-cluster to do it")
        done = force(data_dir)
    except RecoverError as exc:
        fail(str(exc))
    out({"node_id": done.node_id, "revision": done.revision, "term": done.term,
         "cluster_id": done.cluster_id, "previous_cluster_id": done.previous_cluster_id,
         "replayed_entries": done.replayed, "removed_members": list(done.dropped)}, as_json,
        lambda d: f"node {d['node_id']} is now the only voter of new cluster {d['cluster_id']} at "
                  f"revision {d['revision']} ({d['replayed_entries']} log entries applied; removed: "
                  f"{', '.join(d['removed_members']) or 'none'}); start it with `axon serve`")

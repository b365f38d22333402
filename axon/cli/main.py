"""The `axon` command group, and `axon` without a command: run a node with derived defaults."""
from __future__ import annotations

from typing import Any

import click
from click.core import ParameterSource

from axon.cli.bench import bench
from axon.cli.cluster import join, leave, members, remove, status
from axon.cli.common import CONTEXT, fail
from axon.cli.keys import keygen
from axon.cli.kv import kv
from axon.cli.lease import lease
from axon.cli.lock import lock
from axon.cli.recover import recover
from axon.cli.snapshot import snapshot
from axon.cli.tls import tls
from axon.cli.tokens import auth, token
from axon.cli.txn import txn
from axon.cli.node import default_node_settings, launch, run_node, serve
from axon.cli.node_options import DEFAULT_DATA_ROOT, default_node_options
from axon.config import DEFAULT_PORT


HELP = f"""Axon: a strongly consistent distributed key-value store.

Without a command, run a node with defaults: `axon --seed HOST:GOSSIPPORT` joins the cluster
that seed belongs to; with neither --seed nor --join it starts a new one-node cluster
(as --bootstrap). Ports: HTTP {DEFAULT_PORT}, Raft {DEFAULT_PORT + 1}, gossip {DEFAULT_PORT + 2}
unless --port says otherwise. Data goes to ./{DEFAULT_DATA_ROOT}/NODE_ID.
"""


@click.group(context_settings=CONTEXT, invoke_without_command=True, help=HELP)
@default_node_options
@click.pass_context
def cli(ctx: click.Context, **node: Any) -> None:
    """The group; without a command it runs a node (see HELP)."""
    if ctx.invoked_subcommand is None:
        run_node(default_node_settings(**node))
        return
    options = {param.name: param.opts[0] for param in ctx.command.params}
    given = [name for name in node if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE]
    if given:
        fail(f"{options[given[0]]} is a node option: give it without a command, or to `axon serve`")


for command in (serve, launch, status, members, join, leave, remove, kv, txn, bench, keygen, tls, token,
                auth, lock, lease, snapshot, recover):
    cli.add_command(command)


def main() -> None:
    """The `axon` console script, `python -m axon` and the .pyz entry point."""
    cli(prog_name="axon")

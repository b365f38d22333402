"""Commands that run nodes: `axon serve`, `axon launch`, and `axon` without a command."""
from __future__ import annotations

import os
import re
import socket
from typing import Any

import click

from axon.address import AddressError, format_addr, parse_addr
from axon.cli.common import CONTEXT, fail
from axon.cli.node_options import DEFAULT_DATA_ROOT, serve_options
from axon.config import (DEFAULT_HOST, DEFAULT_PORT, LOG_LEVELS, ConfigError, flag_default,
                         split_values)


@click.command(context_settings=CONTEXT)
@serve_options
def serve(**flags: Any) -> None:
    """Run one Axon node."""
    run_node(flags)


def run_node(flags: dict[str, Any]) -> None:
    """Run a node with these node flag values until it stops; a bad setting is a one-line error."""
    from gevent import monkey
    monkey.patch_all()
    from axon import logs
    from axon.config import NodeConfig
    from axon.node.process import NodeProcess
    try:
        config = NodeConfig.from_flags(**flags)
        logs.setup(config.node_id, config.log_level, config.log_json)
        process = NodeProcess(config)
    except ConfigError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot start: {exc}")
    try:
        process.run_forever()
    except OSError as exc:   # e.g. the HTTP port is taken
        fail(f"cannot serve: {exc}")


def default_node_settings(host: str | None, port: int, node_id: str | None, data_dir: str | None,
                          http: str | None, raft: str | None, gossip: str | None,
                          bootstrap: bool, join: tuple[str, ...], seed: tuple[str, ...],
                          **rest: Any) -> dict[str, Any]:
    """Fill in what `axon` without a command leaves out: addresses, node id, data dir, bootstrap."""
    joins, seeds = split_values(join), split_values(seed)
    host = host or _local_address_towards(seeds + joins)
    node_id = node_id or _node_id_from(host, port)
    return dict(node_id=node_id,
                data_dir=data_dir or os.path.join(".", DEFAULT_DATA_ROOT, node_id),
                http=http or format_addr(host, port), raft=raft or format_addr(host, port + 1),
                gossip=gossip or format_addr(host, port + 2),
                bootstrap=bootstrap or not (joins or seeds), join=tuple(joins), seed=tuple(seeds),
                **rest)


def _node_id_from(host: str, port: int) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", host).strip("-._") or "node"
    return f"{cleaned}-{port}"[-63:].lstrip("-._")


def _local_address_towards(targets: list[str]) -> str:
    """The local address the kernel would use to reach the first target (no packet is sent)."""
    if not targets:
        return DEFAULT_HOST
    try:
        host, port = parse_addr(targets[0])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect((host, port))
            return sock.getsockname()[0]
    except (AddressError, OSError):
        return DEFAULT_HOST


@click.command(context_settings=CONTEXT)
@click.option("--nodes", type=click.IntRange(1, 99), default=3, show_default=True,
              help="How many nodes a new cluster gets (a saved layout keeps its own).")
@click.option("--dir", "directory", default="./axon-cluster", show_default=True,
              help="Where the layout (layout.json), node data (data/) and logs (logs/) live.")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True,
              help="Port of the dashboard and the supervisor API (/api/nodes).")
@click.option("--host", default=DEFAULT_HOST, show_default=True,
              help="Address the nodes and the dashboard listen on.")
@click.option("--base-port", type=click.IntRange(1, 65533), default=DEFAULT_PORT, show_default=True,
              help="First node port: node k takes the first free block BASE+10*k "
                   "(http +0, raft +1, gossip +2).")
@click.option("--stop-timeout", type=click.FloatRange(min=0.1), default=15.0, show_default=True,
              help="Seconds a node gets to stop after SIGTERM before SIGKILL.")
@click.option("--log-level", default=flag_default("log_level"), show_default=True,
              type=click.Choice(LOG_LEVELS), help="The nodes' log level.")
@click.option("--tls", is_flag=True, envvar="AXON_LAUNCH_TLS",
              help="Serve the nodes and the dashboard over https, with a CA and certificates made in DIR/tls.")
@click.option("--audit-log", type=click.Path(dir_okay=False), default=None, envvar="AXON_AUDIT_LOG",
              help="Audit the launcher's node actions to this file (JSON lines, 0600); each node "
                   "audits to DIR/logs/NODE.audit.jsonl.")
@click.option("--max-nodes", type=click.IntRange(1, 99), default=16, show_default=True,
              help="The most nodes POST /api/nodes may bring the cluster to.")
@click.option("--auth", is_flag=True, envvar="AXON_LAUNCH_AUTH",
              help="Create the cluster with auth on: its root token goes to DIR/root.token (0600), "
                   "and the dashboard and the supervisor API ask for a token.")
def launch(nodes: int, directory: str, port: int, host: str, base_port: int, stop_timeout: float,
           log_level: str, tls: bool, audit_log: str | None, max_nodes: int, auth: bool) -> None:
    """Run a local cluster of node processes with the dashboard and a supervisor API.

    The first start creates the cluster; later starts on the same --dir bring the same nodes
    back with their data. Ctrl-C stops every node.
    """
    from gevent import monkey
    monkey.patch_all()
    from axon.launcher.supervisor import LaunchError, run
    try:
        run(directory, nodes, port, host, base_port, stop_timeout, log_level, say=click.echo, tls=tls,
            audit_log=audit_log, max_nodes=max_nodes, auth=auth)
    except LaunchError as exc:
        fail(str(exc))

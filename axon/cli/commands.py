"""The `axon` command line: run a node, and talk to a cluster over HTTP."""
from __future__ import annotations

import json
import os
import re
import socket
import sys
from typing import Any, Callable

import click
from click.core import ParameterSource

from axon.api.errors import ConfigError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7000       # a node without a command: http PORT, raft PORT+1, gossip PORT+2
DEFAULT_DATA_ROOT = "axon-data"


# ---------------------------------------------------------------------- node options
def _common_node_options() -> list[Callable]:
    """Options shared by `axon serve` and `axon` without a command."""
    return [
        click.option("--bootstrap", envvar="AXON_BOOTSTRAP", is_flag=True,
                     help="Form a new one-node cluster if the data dir is empty."),
        click.option("--join", envvar="AXON_JOIN", multiple=True,
                     help="HTTP address of a member to join through (repeatable)."),
        click.option("--seed", envvar="AXON_SEED", multiple=True,
                     help="Gossip address of a member to discover the cluster through (repeatable)."),
        click.option("--cluster-key-file", envvar="AXON_CLUSTER_KEY_FILE",
                     help="Shared secret authenticating Raft connections."),
        click.option("--gossip-key-file", envvar="AXON_GOSSIP_KEY_FILE",
                     help="Shared key encrypting gossip (16, 24 or 32 bytes; raw, hex or base64)."),
        click.option("--reap-dead-after", envvar="AXON_REAP_DEAD_AFTER", type=float, default=None,
                     help="Remove a voter from Raft after gossip has reported it dead this long (s)."),
        click.option("--request-timeout", envvar="AXON_REQUEST_TIMEOUT", type=float, default=5.0,
                     show_default=True, help="Seconds before a request without quorum gets 503."),
        click.option("--max-value-bytes", envvar="AXON_MAX_VALUE_BYTES", type=int, default=1 << 20,
                     show_default=True, help="Largest value accepted (413 above)."),
        click.option("--snapshot-rate", "snapshot_rate_mb", envvar="AXON_SNAPSHOT_RATE", type=float,
                     default=5.0, show_default=True,
                     help="MB/s at which a leader sends a snapshot to a lagging node (0: no limit)."),
        click.option("--log-level", envvar="AXON_LOG_LEVEL", default="info", show_default=True,
                     type=click.Choice(["debug", "info", "warning", "error"])),
        click.option("--log-json", envvar="AXON_LOG_JSON", is_flag=True, help="Log JSON lines."),
    ]


def _serve_options(fn: Callable) -> Callable:
    options = [
        click.option("--node-id", envvar="AXON_NODE_ID", required=True, help="Unique id of this node."),
        click.option("--data-dir", envvar="AXON_DATA_DIR", required=True, help="Where this node keeps its data."),
        click.option("--http", "http_addr", envvar="AXON_HTTP", default="127.0.0.1:7000", show_default=True,
                     help="HTTP API address HOST:PORT."),
        click.option("--raft", envvar="AXON_RAFT", default="127.0.0.1:7001", show_default=True,
                     help="Raft address HOST:PORT."),
        click.option("--gossip", envvar="AXON_GOSSIP", default="127.0.0.1:7002", show_default=True,
                     help="Gossip address HOST:PORT."),
    ] + _common_node_options()
    for option in reversed(options):
        fn = option(fn)
    return fn


def _default_node_options(fn: Callable) -> Callable:
    options = [
        click.option("--host", envvar="AXON_HOST", default=None,
                     help="Address to listen on and advertise [default: the local address that "
                          "reaches the first --seed/--join, else 127.0.0.1]."),
        click.option("--port", envvar="AXON_PORT", type=click.IntRange(1, 65533), default=DEFAULT_PORT,
                     show_default=True, help="HTTP port; Raft uses PORT+1 and gossip PORT+2."),
        click.option("--node-id", envvar="AXON_NODE_ID", default=None,
                     help="Unique id of this node [default: HOST-PORT]."),
        click.option("--data-dir", envvar="AXON_DATA_DIR", default=None,
                     help=f"Where this node keeps its data [default: ./{DEFAULT_DATA_ROOT}/NODE_ID]."),
        click.option("--http", "http_addr", envvar="AXON_HTTP", default=None,
                     help="HTTP address HOST:PORT [default: HOST:PORT]."),
        click.option("--raft", envvar="AXON_RAFT", default=None,
                     help="Raft address HOST:PORT [default: HOST:PORT+1]."),
        click.option("--gossip", envvar="AXON_GOSSIP", default=None,
                     help="Gossip address HOST:PORT [default: HOST:PORT+2]."),
    ] + _common_node_options()
    for option in reversed(options):
        fn = option(fn)
    return fn


@click.group(context_settings=CONTEXT, invoke_without_command=True)
@_default_node_options
@click.pass_context
def cli(ctx: click.Context, **node: Any) -> None:
    """Axon: a strongly consistent distributed key-value store.

    Without a command, run a node with defaults: `axon --seed HOST:GOSSIPPORT` joins the cluster
    that seed belongs to; with neither --seed nor --join it starts a new one-node cluster
    (as --bootstrap). Ports: HTTP 7000, Raft 7001, gossip 7002 unless --port says otherwise.
    Data goes to ./axon-data/NODE_ID.
    """
    if ctx.invoked_subcommand is not None:
        given = [name for name in node if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE]
        if given:
            flag = "--" + given[0].replace("_addr", "").replace("_", "-")
            _fail(f"{flag} is a node option: give it without a command, or to `axon serve`")
        return
    _run_node(**default_node_settings(**node))


def default_node_settings(host: str | None, port: int, node_id: str | None, data_dir: str | None,
                          http_addr: str | None, raft: str | None, gossip: str | None,
                          bootstrap: bool, join: tuple[str, ...], seed: tuple[str, ...],
                          **rest: Any) -> dict:
    """Fill in what `axon` without a command leaves out: addresses, node id, data dir, bootstrap."""
    joins, seeds = _split(join), _split(seed)
    host = host or _local_address_towards(seeds + joins)
    node_id = node_id or _node_id_from(host, port)
    return dict(node_id=node_id,
                data_dir=data_dir or os.path.join(".", DEFAULT_DATA_ROOT, node_id),
                http_addr=http_addr or _addr(host, port), raft=raft or _addr(host, port + 1),
                gossip=gossip or _addr(host, port + 2),
                bootstrap=bootstrap or not (joins or seeds), join=tuple(joins), seed=tuple(seeds),
                **rest)


def _addr(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _node_id_from(host: str, port: int) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", host).strip("-._") or "node"
    return f"{cleaned}-{port}"[-63:].lstrip("-._")


def _local_address_towards(targets: list[str]) -> str:
    """The local address the kernel would use to reach the first target (no packet is sent)."""
    if not targets:
        return DEFAULT_HOST
    from axon.config import parse_addr
    try:
        host, port = parse_addr(targets[0])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect((host, port))
            return sock.getsockname()[0]
    except (ConfigError, OSError):
        return DEFAULT_HOST


@cli.command(context_settings=CONTEXT)
@_serve_options
def serve(**settings: Any) -> None:
    """Run one Axon node."""
    _run_node(**settings)


def _run_node(node_id: str, data_dir: str, http_addr: str, raft: str, gossip: str, bootstrap: bool,
              join: tuple[str, ...], seed: tuple[str, ...], cluster_key_file: str | None,
              gossip_key_file: str | None, reap_dead_after: float | None,
              request_timeout: float, max_value_bytes: int, snapshot_rate_mb: float, log_level: str,
              log_json: bool) -> None:
    from gevent import monkey
    monkey.patch_all()
    from axon import logs
    from axon.config import NodeConfig, read_gossip_key, read_key_file
    from axon.node.process import NodeProcess
    try:
        config = NodeConfig(
            node_id=node_id, data_dir=data_dir, http=http_addr, raft=raft, gossip=gossip,
            bootstrap=bootstrap, join=_split(join), seed=_split(seed),
            cluster_key=read_key_file(cluster_key_file, "cluster key"),
            gossip_key=read_gossip_key(gossip_key_file), reap_dead_after=reap_dead_after,
            request_timeout=request_timeout, max_value_bytes=max_value_bytes,
            snapshot_rate_mb=snapshot_rate_mb, log_level=log_level, log_json=log_json).validate()
        logs.setup(node_id, log_level, log_json)
        process = NodeProcess(config)
    except ConfigError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot start: {exc}")
    try:
        process.run_forever()
    except OSError as exc:   # e.g. the HTTP port is taken
        _fail(f"cannot serve: {exc}")


def _split(values: tuple[str, ...] | list[str]) -> list[str]:
    """Flags may repeat, and an environment variable may hold several comma/space separated values."""
    out = []
    for value in values:
        out.extend(v for v in value.replace(",", " ").split() if v)
    return out


# ---------------------------------------------------------------------- launch
@cli.command(context_settings=CONTEXT)
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
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]), help="The nodes' log level.")
def launch(nodes: int, directory: str, port: int, host: str, base_port: int, stop_timeout: float,
           log_level: str) -> None:
    """Run a local cluster of node processes with the dashboard and a supervisor API.

    The first start creates the cluster; later starts on the same --dir bring the same nodes
    back with their data. Ctrl-C stops every node.
    """
    from gevent import monkey
    monkey.patch_all()
    from axon.launcher.supervisor import LaunchError, run
    try:
        run(directory, nodes, port, host, base_port, stop_timeout, log_level, say=click.echo)
    except LaunchError as exc:
        _fail(str(exc))


# ---------------------------------------------------------------------- client commands
def _client_options(fn: Callable) -> Callable:
    fn = click.option("--json", "as_json", is_flag=True, help="Print JSON.")(fn)
    fn = click.option("--addr", envvar="AXON_ADDR", default="127.0.0.1:7000", show_default=True,
                      help="HTTP address of any node.")(fn)
    return fn


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def _call(addr: str, fn: Callable[[Any], Any]) -> Any:
    from axon.client.http import AxonClient, ClientError
    try:
        return fn(AxonClient(addr))
    except ClientError as exc:
        _fail(str(exc))


def _table(rows: list[dict], columns: list[str]) -> str:
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def _out(data: Any, as_json: bool, text: Callable[[Any], str]) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True) if as_json else text(data))


@cli.command(context_settings=CONTEXT)
@_client_options
def status(addr: str, as_json: bool) -> None:
    """Show the Raft status of the cluster as one node sees it."""
    st = _call(addr, lambda c: c.status())

    def text(s: dict) -> str:
        head = (f"node {s['node_id']}: {s['state']}, term {s['term']}, leader {s['leader'] or '-'}, "
                f"commit {s['commit_index']}, applied {s['applied_index']}")
        rows = [{"node_id": n["node_id"], "role": "voter" if n["voter"] else "learner",
                 "online": {True: "online", False: "offline"}.get(n.get("online"), "unknown"),
                 "http": n["http"], "raft": n["raft"]} for n in s.get("nodes", [])]
        return head + "\n" + _table(rows, ["node_id", "role", "online", "http", "raft"])
    _out(st, as_json, text)


@cli.command(context_settings=CONTEXT)
@_client_options
def members(addr: str, as_json: bool) -> None:
    """List the members as gossip sees them."""
    data = _call(addr, lambda c: c.members())
    _out(data, as_json, lambda rows: _table(rows, ["node_id", "status", "http", "raft", "gossip"]))


@cli.command(context_settings=CONTEXT)
@click.argument("node_id")
@click.option("--raft", required=True, help="Raft address of the new node.")
@click.option("--http", "http_addr", required=True, help="HTTP address of the new node.")
@_client_options
def join(node_id: str, raft: str, http_addr: str, addr: str, as_json: bool) -> None:
    """Add NODE_ID to the cluster (it must be running with an empty data dir)."""
    data = _call(addr, lambda c: c.join(node_id, raft, http_addr))
    _out(data, as_json, lambda d: f"{node_id}: {d.get('status')}")


@cli.command(context_settings=CONTEXT)
@_client_options
def leave(addr: str, as_json: bool) -> None:
    """Take the node at --addr out of the cluster."""
    data = _call(addr, lambda c: c.leave())
    _out(data, as_json, lambda d: f"removed {d.get('removed')}")


@cli.command(context_settings=CONTEXT)
@click.argument("node_id")
@_client_options
def remove(node_id: str, addr: str, as_json: bool) -> None:
    """Remove NODE_ID from the cluster."""
    data = _call(addr, lambda c: c.remove(node_id))
    _out(data, as_json, lambda d: f"removed {d.get('removed')}")


@cli.group(context_settings=CONTEXT)
def kv() -> None:
    """Read and write keys."""


@kv.command("get", context_settings=CONTEXT)
@click.argument("key")
@click.option("--stale", is_flag=True, help="Read the node's local copy (may be stale).")
@_client_options
def kv_get(key: str, stale: bool, addr: str, as_json: bool) -> None:
    """Print the value of KEY."""
    data = _call(addr, lambda c: c.get(key, stale=stale))
    _out(data, as_json, lambda d: d["value"])


@kv.command("put", context_settings=CONTEXT)
@click.argument("key")
@click.argument("value")
@click.option("--if-revision", type=int, help="Only if the key's revision is this (0: absent).")
@_client_options
def kv_put(key: str, value: str, if_revision: int | None, addr: str, as_json: bool) -> None:
    """Set KEY to VALUE."""
    data = _call(addr, lambda c: c.put(key, value, if_revision=if_revision))
    _out(data, as_json, lambda d: f"revision {d['revision']}")


@kv.command("delete", context_settings=CONTEXT)
@click.argument("key")
@click.option("--if-revision", type=int, help="Only if the key's revision is this.")
@_client_options
def kv_delete(key: str, if_revision: int | None, addr: str, as_json: bool) -> None:
    """Delete KEY."""
    data = _call(addr, lambda c: c.delete(key, if_revision=if_revision))
    _out(data, as_json, lambda d: f"deleted {key}")


@kv.command("list", context_settings=CONTEXT)
@click.option("--prefix", default="", help="Only keys starting with this.")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--after", default=None, help="Start after this key (paging).")
@click.option("--stale", is_flag=True)
@_client_options
def kv_list(prefix: str, limit: int, after: str | None, stale: bool, addr: str, as_json: bool) -> None:
    """List keys in order."""
    data = _call(addr, lambda c: c.list(prefix, limit, after, stale))
    _out(data, as_json, lambda d: _table(d["items"], ["key", "revision", "value"]))


@cli.command(context_settings=CONTEXT)
@click.option("--addr", envvar="AXON_ADDR", multiple=True, default=["127.0.0.1:7000"], show_default=True,
              help="HTTP address of a node (repeatable; stale reads spread over all of them).")
@click.option("--workload", type=click.Choice(["write", "read", "stale", "mixed"]), default="write",
              show_default=True, help="read = linearizable GET; stale = GET ?stale=true; mixed = 90% reads.")
@click.option("-c", "--connections", type=click.IntRange(1, 10_000), default=16, show_default=True,
              help="Keep-alive connections, each with one request in flight.")
@click.option("-d", "--duration", type=click.FloatRange(min=0.1, max=86400), default=10.0,
              show_default=True, help="Seconds to run.")
@click.option("--value-size", type=click.IntRange(0, 64 << 20), default=100, show_default=True,
              help="Bytes per written value.")
@click.option("--keys", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Size of the key space (keys are picked uniformly).")
@click.option("--timeout", type=click.FloatRange(min=0.01), default=10.0, show_default=True,
              help="Per-request timeout (s).")
@click.option("--any-node", is_flag=True,
              help="Send to the given addresses as they are instead of to the leader.")
@click.option("--no-prefill", is_flag=True, help="Read workloads: don't write the key space first.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def bench(addr: tuple[str, ...], workload: str, connections: int, duration: float, value_size: int,
          keys: int, timeout: float, any_node: bool, no_prefill: bool, as_json: bool) -> None:
    """Load a running cluster over HTTP; print ops/s, latency percentiles and errors by status."""
    from gevent import monkey
    monkey.patch_all()
    from axon.bench import BenchConfig, BenchError, format_summary, run_bench
    cfg = BenchConfig(addrs=tuple(_split(addr)), workload=workload, connections=connections,
                      duration=duration, value_size=value_size, keys=keys, timeout=timeout,
                      to_leader=not any_node, prefill=not no_prefill)
    try:
        result = run_bench(cfg, progress=lambda line: click.echo(line, err=True))
    except BenchError as exc:
        _fail(str(exc))
    click.echo(json.dumps(result, sort_keys=True) if as_json else format_summary(result))


def main() -> None:
    cli(prog_name="axon")

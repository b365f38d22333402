"""Cluster commands over HTTP: status, members, join, leave, remove."""
from __future__ import annotations

import click

from axon.cli.common import CONTEXT, call, client_options, out, table


@click.command(context_settings=CONTEXT)
@client_options
def status(addr: str, as_json: bool) -> None:
    """Show the Raft status of the cluster as one node sees it."""
    out(call(addr, lambda c: c.status()), as_json, _status_text)


def _status_text(s: dict) -> str:
    head = (f"node {s['node_id']}: {s['state']}, term {s['term']}, leader {s['leader'] or '-'}, "
            f"commit {s['commit_index']}, applied {s['applied_index']}")
    rows = [{"node_id": n["node_id"], "role": "voter" if n["voter"] else "learner",
             "online": {True: "online", False: "offline"}.get(n.get("online"), "unknown"),
             "http": n["http"], "raft": n["raft"]} for n in s.get("nodes", [])]
    alarms = s.get("alarms") or []
    if alarms:   # the disk alarm: writes are refused cluster-wide until space is back
        head += f"\nALARM {', '.join(alarms)}: writes are refused; reads and deletes still work"
    return head + "\n" + table(rows, ["node_id", "role", "online", "http", "raft"])


@click.command(context_settings=CONTEXT)
@client_options
def members(addr: str, as_json: bool) -> None:
    """List the members as gossip sees them."""
    data = call(addr, lambda c: c.members())
    out(data, as_json, lambda rows: table(rows, ["node_id", "status", "http", "raft", "gossip"]))


@click.command(context_settings=CONTEXT)
@click.argument("node_id")
@click.option("--raft", required=True, help="Raft address of the new node.")
@click.option("--http", "http_addr", required=True, help="HTTP address of the new node.")
@client_options
def join(node_id: str, raft: str, http_addr: str, addr: str, as_json: bool) -> None:
    """Add NODE_ID to the cluster (it must be running with an empty data dir)."""
    data = call(addr, lambda c: c.join(node_id, raft, http_addr))
    out(data, as_json, lambda d: f"{node_id}: {d.get('status')}")


@click.command(context_settings=CONTEXT)
@client_options
def leave(addr: str, as_json: bool) -> None:
    """Take the node at --addr out of the cluster."""
    data = call(addr, lambda c: c.leave())
    out(data, as_json, lambda d: f"removed {d.get('removed')}")


@click.command(context_settings=CONTEXT)
@click.argument("node_id")
@client_options
def remove(node_id: str, addr: str, as_json: bool) -> None:
    """Remove NODE_ID from the cluster."""
    data = call(addr, lambda c: c.remove(node_id))
    out(data, as_json, lambda d: f"removed {d.get('removed')}")

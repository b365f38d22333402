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
    if s.get("version") is not None:
        head += (f"\nversion {s['version']}, up {duration(s.get('uptime_s'))}, "
                 f"data {size(s.get('data_bytes'))}, WAL {size(s.get('wal_bytes'))}")
    alarms = s.get("alarms") or []
    if alarms:   # the disk alarm: writes are refused cluster-wide until space is back
        head += f"\nALARM {', '.join(alarms)}: writes are refused; reads and deletes still work"
    return head + "\n" + table(rows, ["node_id", "role", "online", "http", "raft"])


def size(n: int | None) -> str:
    """Bytes as people read them: 512 B, 1.5 KiB, 3.2 GiB."""
    if n is None:
        return "?"
    if n < 1024:
        return f"{n} B"
    value = n / 1024
    for unit in ("KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def duration(seconds: float | None) -> str:
    """Seconds as people read them: 45s, 12m 5s, 3h 2m, 4d 1h."""
    if seconds is None:
        return "?"
    s = int(seconds)
    days, rest = divmod(s, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s" if minutes else f"{secs}s"


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

"""`axon lease`: grant, keep alive, show and revoke leases over HTTP."""
from __future__ import annotations

import time
from typing import Any

import click

from axon.cli.common import LONG_RUNNING_RETRY_FOR, CONTEXT, call, client_options, fail, out

LEASE_ID = click.IntRange(min=1)


@click.group(context_settings=CONTEXT)
def lease() -> None:
    """Leases: keys attached to one (`axon kv put --lease ID`) are deleted when it expires or is
    revoked; only the leader expires a lease, TTL seconds after its last keepalive.  --addr may
    list several nodes (a,b,c): a command moves on to the next when one fails."""


@lease.command("grant", context_settings=CONTEXT)
@click.argument("ttl", type=click.FloatRange(min=0, min_open=True))
@client_options
def lease_grant(ttl: float, addr: str, as_json: bool) -> None:
    """Grant a lease of TTL seconds; prints its id."""
    out(call(addr, lambda c: c.lease_grant(ttl)), as_json, lambda d: f"lease {d['id']} granted with TTL {d['ttl']}s")


@lease.command("keepalive", context_settings=CONTEXT)
@click.argument("lease_id", metavar="ID", type=LEASE_ID)
@click.option("--once", is_flag=True, help="Send one keepalive and exit.")
@client_options
def lease_keepalive(lease_id: int, once: bool, addr: str, as_json: bool) -> None:
    """Keep lease ID alive (one keepalive every TTL/3) until Ctrl-C, printing the time left."""
    def keep(client: Any) -> None:
        while True:
            sent = time.monotonic()
            ttl = client.lease_keepalive(lease_id)["ttl"]
            shown = client.lease_info(lease_id) or fail(f"lease {lease_id} not found")
            out(shown, as_json, lambda d: f"lease {d['id']} kept alive: {d['remaining']:.1f}s left (TTL {d['ttl']}s)")
            if once:
                return
            time.sleep(max(0.0, sent + ttl / 3 - time.monotonic()))
    try:
        call(addr, keep, LONG_RUNNING_RETRY_FOR)
    except KeyboardInterrupt:
        pass


@lease.command("revoke", context_settings=CONTEXT)
@click.argument("lease_id", metavar="ID", type=LEASE_ID)
@client_options
def lease_revoke(lease_id: int, addr: str, as_json: bool) -> None:
    """Revoke lease ID, deleting every key attached to it (at one revision)."""
    out(call(addr, lambda c: c.lease_revoke(lease_id)), as_json,
        lambda d: f"lease {d['id']} revoked, {d['deleted']} key(s) deleted at revision {d['revision']}")


@lease.command("show", context_settings=CONTEXT)
@click.argument("lease_id", metavar="ID", type=LEASE_ID)
@client_options
def lease_show(lease_id: int, addr: str, as_json: bool) -> None:
    """Print lease ID: its TTL, the seconds left and its keys."""
    data = call(addr, lambda c: c.lease_info(lease_id)) or fail(f"lease {lease_id} not found")
    out(data, as_json, lambda d: "\n".join([f"lease {d['id']}: TTL {d['ttl']}s, {d['remaining']:.1f}s left, "
                                            f"{len(d['keys'])} key(s)", *d["keys"]]))

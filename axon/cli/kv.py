"""`axon kv`: read and write keys over HTTP."""
from __future__ import annotations

import json

import click

from axon.cli.common import LONG_RUNNING_RETRY_FOR, CONTEXT, call, client_options, connected, fail, out, table


@click.group(context_settings=CONTEXT)
def kv() -> None:
    """Read and write keys."""


@kv.command("get", context_settings=CONTEXT)
@click.argument("key")
@click.option("--stale", is_flag=True, help="Read the node's local copy (may be stale).")
@client_options
def kv_get(key: str, stale: bool, addr: str, as_json: bool) -> None:
    """Print the value of KEY."""
    data = call(addr, lambda c: c.get(key, stale=stale)) or fail(f"key not found: {key}")
    out(data, as_json, lambda d: d["value"])


@kv.command("put", context_settings=CONTEXT)
@click.argument("key")
@click.argument("value")
@click.option("--if-revision", type=int, help="Only if the key's revision is this (0: absent).")
@click.option("--lease", "lease_id", type=click.IntRange(min=1), default=None,
              help="Attach KEY to this lease (`axon lease grant`): deleted when the lease ends.")
@client_options
def kv_put(key: str, value: str, if_revision: int | None, lease_id: int | None, addr: str, as_json: bool) -> None:
    """Set KEY to VALUE."""
    data = call(addr, lambda c: c.put(key, value, if_revision=if_revision, lease=lease_id))
    out(data, as_json, lambda d: f"revision {d['revision']}")


@kv.command("delete", context_settings=CONTEXT)
@click.argument("key")
@click.option("--if-revision", type=int, help="Only if the key's revision is this.")
@client_options
def kv_delete(key: str, if_revision: int | None, addr: str, as_json: bool) -> None:
    """Delete KEY."""
    data = call(addr, lambda c: c.delete(key, if_revision=if_revision)) or fail(f"key not found: {key}")
    out(data, as_json, lambda d: f"deleted {key}")


@kv.command("list", context_settings=CONTEXT)
@click.option("--prefix", default="", help="Only keys starting with this.")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--after", default=None, help="Start after this key (paging).")
@click.option("--stale", is_flag=True, help="Read the node's local copy (may be stale).")
@client_options
def kv_list(prefix: str, limit: int, after: str | None, stale: bool, addr: str, as_json: bool) -> None:
    """List keys in order."""
    data = call(addr, lambda c: c.list_page(prefix, limit, after, stale))
    out(data, as_json, lambda d: table(d["items"], ["key", "revision", "value"]))


@kv.command("watch", context_settings=CONTEXT)
@click.argument("key", required=False)
@click.option("--prefix", default=None, help="Watch every key starting with this instead of one KEY.")
@click.option("--from-revision", type=click.IntRange(min=1), default=None,
              help="Start with the first change at this revision (default: from now).")
@click.option("--count", type=click.IntRange(min=1), default=None, help="Stop after this many changes.")
@client_options
def kv_watch(key: str | None, prefix: str | None, from_revision: int | None, count: int | None,
             addr: str, as_json: bool) -> None:
    """Print changes to KEY (or under --prefix) as they happen; --addr may list several nodes
    (a,b,c): the watch moves to the next one when a node fails, losing and repeating nothing."""
    if (key is None) == (prefix is None):
        fail("give a KEY or --prefix (not both)")
    with connected(addr, LONG_RUNNING_RETRY_FOR) as client:
        for n, event in enumerate(client.watch(key=key, prefix=prefix, from_revision=from_revision), 1):
            if as_json:
                click.echo(json.dumps({"kind": event.kind, "key": event.key, "value": event.value,
                                       "revision": event.revision}))
            else:
                shown = "" if event.value is None else f" {event.value}"
                click.echo(f"{event.revision} {event.kind} {event.key}{shown}")
            if count is not None and n >= count:
                return

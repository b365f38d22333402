"""What the commands share: one-line errors, talking to a node, and printing results."""
from __future__ import annotations

import json
import sys
from typing import Any, Callable, NoReturn

import click

from axon.address import format_addr
from axon.config import DEFAULT_HOST, DEFAULT_PORT

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
DEFAULT_ADDR = format_addr(DEFAULT_HOST, DEFAULT_PORT)   # a node's HTTP address by default


def fail(message: str) -> NoReturn:
    """Print `error: message` on one line to stderr and exit 1."""
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def _keep_cacert(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """Kept in the context's meta for ``call``, so no command has to take and pass it on."""
    ctx.meta["axon.cacert"] = value


def _keep_token(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """Kept in the context's meta like --cacert (and never echoed: it is a secret)."""
    ctx.meta["axon.token"] = value


def client_options(fn: Callable) -> Callable:
    """--addr (the node to ask), --cacert, --token and --json, for commands that talk to a node."""
    fn = click.option("--json", "as_json", is_flag=True, help="Print JSON.")(fn)
    fn = click.option("--token", envvar="AXON_TOKEN", default=None, expose_value=False,
                      callback=_keep_token, show_envvar=True,
                      help="Auth token, sent as Authorization: Bearer (when auth is on).")(fn)
    fn = click.option("--cacert", envvar="AXON_CACERT", default=None, expose_value=False,
                      callback=_keep_cacert, type=click.Path(dir_okay=False),
                      help="CA certificate (PEM) to trust for https:// addresses [default: the system's].")(fn)
    fn = click.option("--addr", envvar="AXON_ADDR", default=DEFAULT_ADDR, show_default=True,
                      help="HTTP address of any node; https://HOST:PORT for a node serving TLS.")(fn)
    return fn


def call(addr: str, fn: Callable[[Any], Any]) -> Any:
    """fn(AxonClient(addr)); a client error ends the command with one line."""
    from axon.client.http import AxonClient, ClientError
    ctx = click.get_current_context(silent=True)
    cacert = ctx.meta.get("axon.cacert") if ctx is not None else None
    token = ctx.meta.get("axon.token") if ctx is not None else None
    try:
        return fn(AxonClient(addr, cacert=cacert, token=token))
    except ClientError as exc:
        fail(str(exc))


def data_client() -> Any:
    """The public client (axon.client.Client) over --addr, which may list several nodes (a,b,c)."""
    from axon.client import Client
    ctx = click.get_current_context()
    endpoints = [a.strip() for a in ctx.params["addr"].split(",") if a.strip()]
    if not endpoints:
        fail("--addr names no node")
    return Client(endpoints, token=ctx.meta.get("axon.token"), cacert=ctx.meta.get("axon.cacert"))


def table(rows: list[dict], columns: list[str]) -> str:
    """rows as aligned text columns under an upper-case header."""
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def out(data: Any, as_json: bool, text: Callable[[Any], str]) -> None:
    """Print data as indented JSON, or as text(data)."""
    click.echo(json.dumps(data, indent=2, sort_keys=True) if as_json else text(data))

"""What the commands share: one-line errors, talking to a node, and printing results."""
from __future__ import annotations

import contextlib
import json
import sys
from typing import TYPE_CHECKING, Any, Callable, Iterator, NoReturn

import click

from axon.address import format_addr
from axon.config import DEFAULT_HOST, DEFAULT_PORT

if TYPE_CHECKING:
    from axon.client import Client

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
DEFAULT_ADDR = format_addr(DEFAULT_HOST, DEFAULT_PORT)   # a node's HTTP address by default
# How long a command keeps trying when no node answers, or none has a leader: long enough to
# ride out an election, short enough that a wrong --addr fails at once.
COMMAND_RETRY_FOR = 2.0
# Commands that run on (watch, lock, lease keepalive) outlast a node's failure and the election after it.
LONG_RUNNING_RETRY_FOR = 15.0


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
    """--addr (the nodes to ask), --cacert, --token and --json, for commands that talk to a node."""
    fn = click.option("--json", "as_json", is_flag=True, help="Print JSON.")(fn)
    return connection_options(fn)


def connection_options(fn: Callable) -> Callable:
    """--addr, --cacert and --token: what a command needs to reach the cluster."""
    fn = click.option("--token", envvar="AXON_TOKEN", default=None, expose_value=False,
                      callback=_keep_token, show_envvar=True,
                      help="Auth token, sent as Authorization: Bearer (when auth is on).")(fn)
    fn = click.option("--cacert", envvar="AXON_CACERT", default=None, expose_value=False,
                      callback=_keep_cacert, type=click.Path(dir_okay=False),
                      help="CA certificate (PEM) to trust for https:// addresses [default: the system's].")(fn)
    fn = click.option("--addr", envvar="AXON_ADDR", default=DEFAULT_ADDR, show_default=True,
                      help="HTTP address of any node (several: a,b,c, tried in turn); "
                           "https://HOST:PORT for a node serving TLS.")(fn)
    return fn


def client_for(addr: str, retry_for: float = COMMAND_RETRY_FOR) -> "Client":
    """The client (axon.client.Client) over --addr's nodes, with --token and --cacert."""
    from axon.client import Client
    endpoints = [a.strip() for a in addr.split(",") if a.strip()]
    if not endpoints:
        fail("--addr names no node")
    ctx = click.get_current_context(silent=True)
    meta = ctx.meta if ctx is not None else {}
    return Client(endpoints, token=meta.get("axon.token"), cacert=meta.get("axon.cacert"), retry_for=retry_for)


@contextlib.contextmanager
def connected(addr: str, retry_for: float = COMMAND_RETRY_FOR) -> Iterator["Client"]:
    """``client_for(addr)``, closed after the block; a client error ends the command with one line."""
    from axon.client import ClientError
    with client_for(addr, retry_for) as client:
        try:
            yield client
        except ClientError as exc:
            fail(str(exc))


def call(addr: str, fn: Callable[["Client"], Any], retry_for: float = COMMAND_RETRY_FOR) -> Any:
    """fn(the client over ``addr``); a client error ends the command with one line."""
    with connected(addr, retry_for) as client:
        return fn(client)


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

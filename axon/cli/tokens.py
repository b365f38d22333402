"""`axon token` and `axon auth enable`: client auth administration over HTTP."""
from __future__ import annotations

import click

from axon.cli.common import CONTEXT, call, client_options, out, table

ROLES = ("read", "write", "admin")


@click.group(context_settings=CONTEXT)
def token() -> None:
    """Create, list and revoke auth tokens (needs an admin token once auth is on)."""


@token.command("create", context_settings=CONTEXT)
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), required=True,
              help="read: get/list/watch; write: also put/delete; admin: everything.")
@click.option("--prefix", default="", help="Keys the token may touch (admin tokens ignore it).")
@client_options
def token_create(name: str, role: str, prefix: str, addr: str, as_json: bool) -> None:
    """Create token NAME and print its secret (shown this once)."""
    data = call(addr, lambda c: c.token_create(name, role, prefix))
    out(data, as_json, lambda d: d["token"])


@token.command("list", context_settings=CONTEXT)
@client_options
def token_list(addr: str, as_json: bool) -> None:
    """List tokens (names, roles, prefixes; never secrets)."""
    data = call(addr, lambda c: c.token_list())
    out(data, as_json, lambda d: table(d["tokens"], ["name", "role", "prefix"]))


@token.command("revoke", context_settings=CONTEXT)
@click.argument("name")
@client_options
def token_revoke(name: str, addr: str, as_json: bool) -> None:
    """Revoke token NAME on every node."""
    data = call(addr, lambda c: c.token_revoke(name))
    out(data, as_json, lambda d: f"revoked {d['name']}")


@click.group(context_settings=CONTEXT)
def auth() -> None:
    """Client auth of a running cluster."""


@auth.command("enable", context_settings=CONTEXT)
@client_options
def auth_enable(addr: str, as_json: bool) -> None:
    """Turn auth on and print the root token (shown this once)."""
    data = call(addr, lambda c: c.auth_enable())
    out(data, as_json, lambda d: d["token"])

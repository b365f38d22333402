"""`axon txn`: one transaction from a JSON document (the body of POST /txn)."""
from __future__ import annotations

import json

import click

from axon.cli.common import CONTEXT, call, client_options, fail, out


@click.command("txn", context_settings=CONTEXT)
@click.argument("document", type=click.File("r"), default="-")
@client_options
def txn(document: click.utils.LazyFile, addr: str, as_json: bool) -> None:
    """Run the transaction in DOCUMENT (a file, or - for stdin), e.g.

    \b
    {"compare": [{"key": "config", "revision": 7}],
     "success": [{"op": "put", "key": "config", "value": "v2"}],
     "failure": [{"op": "get", "key": "config"}]}

    Prints whether the compares held and each operation's result; exits 2 when they did not.
    """
    try:
        body = json.loads(document.read())
    except ValueError as exc:
        fail(f"the transaction is not valid JSON: {exc}")
    if not isinstance(body, dict):
        fail("the transaction must be a JSON object with compare, success and failure lists")
    result = call(addr, lambda c: c.txn(body.get("compare", []), body.get("success", []), body.get("failure", [])))
    out(result, as_json, _text)
    if not result["succeeded"]:
        raise SystemExit(2)


def _text(result: dict) -> str:
    lines = [f"{'succeeded' if result['succeeded'] else 'failed'} at revision {result['revision']}"]
    for r in result["results"]:
        detail = {"put": lambda: f"revision {r['revision']}",
                  "delete": lambda: "deleted" if r["deleted"] else "not found",
                  "get": lambda: "not found" if r["value"] is None else f"{r['value']} (revision {r['revision']})"}
        lines.append(f"{r['op']} {r['key']}: {detail[r['op']]()}")
    return "\n".join(lines)

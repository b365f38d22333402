"""`axon keygen`: make a new cluster key."""
from __future__ import annotations

import click

from axon.cli.common import CONTEXT, fail
from axon.keys import KeyFileError, encode_key, new_key, write_key_file


@click.command(context_settings=CONTEXT)
@click.option("--out", "path", metavar="FILE", default=None,
              help="Create FILE (mode 0600) holding the key; it must not exist yet. "
                   "[default: print the key]")
def keygen(path: str | None) -> None:
    """Make a new cluster key: 32 random bytes, base64.

    Give the file to every node with --cluster-key-file (or --gossip-key-file); a node refuses
    a key file that group or others can read.
    """
    key = new_key()
    if path is None:
        click.echo(encode_key(key).decode("ascii"), nl=False)
        return
    try:
        write_key_file(path, key)
    except KeyFileError as exc:
        fail(str(exc))
    click.echo(f"wrote a new cluster key to {path} (mode 0600)", err=True)

"""Click options of the node flags, built from NodeConfig's flag table (axon.config).

`axon serve` takes them as the table says; `axon` without a command takes the same flags, but
the addresses, node id and data dir default to values derived from --host and --port.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import click

from axon.config import DEFAULT_PORT, Flag, flag_default, node_flags

DEFAULT_DATA_ROOT = "axon-data"

# `axon` without a command: what differs from `axon serve` (derived in cli/node.py).
_DERIVED_HELP = {
    "node_id": "Unique id of this node [default: HOST-PORT].",
    "data_dir": f"Where this node keeps its data [default: ./{DEFAULT_DATA_ROOT}/NODE_ID].",
    "http": "HTTP address HOST:PORT [default: HOST:PORT].",
    "raft": "Raft address HOST:PORT [default: HOST:PORT+1].",
    "gossip": "Gossip address HOST:PORT [default: HOST:PORT+2].",
}


def flag_option(f: dataclasses.Field, flag: Flag, **override: Any) -> Callable:
    """The click option of one node flag; its parameter name is the NodeConfig field's name."""
    kwargs: dict[str, Any] = {"envvar": flag.envvar, "help": flag.help}
    default = flag_default(f.name)
    if flag.kind is bool:
        kwargs.update(is_flag=True, default=default)
    elif flag.repeat:
        kwargs.update(multiple=True)
    elif default is dataclasses.MISSING:
        kwargs.update(required=True)
    elif flag.load is not None:       # the flag names a file; the field holds what it contains
        kwargs.update(default=None)
    else:
        kind = click.Choice(list(flag.choices)) if flag.choices else flag.kind
        kwargs.update(type=kind, default=default, show_default=default is not None)
    kwargs.update(override)
    return click.option(flag.option, f.name, **kwargs)


def serve_options(fn: Callable) -> Callable:
    """Every node flag, as NodeConfig declares it."""
    return _apply(fn, [flag_option(f, flag) for f, flag in node_flags()])


def default_node_options(fn: Callable) -> Callable:
    """--host and --port, then every node flag, with the derived defaults left to cli/node.py."""
    options = [
        click.option("--host", envvar="AXON_HOST", default=None,
                     help="Address to listen on and advertise [default: the local address that "
                          "reaches the first --seed/--join, else 127.0.0.1]."),
        click.option("--port", envvar="AXON_PORT", type=click.IntRange(1, 65533), default=DEFAULT_PORT,
                     show_default=True, help="HTTP port; Raft uses PORT+1 and gossip PORT+2."),
    ]
    for f, flag in node_flags():
        if f.name in _DERIVED_HELP:
            options.append(flag_option(f, flag, required=False, default=None, show_default=False,
                                       help=_DERIVED_HELP[f.name]))
        else:
            options.append(flag_option(f, flag))
    return _apply(fn, options)


def _apply(fn: Callable, options: list[Callable]) -> Callable:
    for option in reversed(options):
        fn = option(fn)
    return fn

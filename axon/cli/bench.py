"""`axon bench`: load a running cluster over HTTP (the work is in axon/bench.py)."""
from __future__ import annotations

import json

import click

from axon.cli.common import CONTEXT, DEFAULT_ADDR, fail
from axon.config import split_values


@click.command(context_settings=CONTEXT)
@click.option("--addr", envvar="AXON_ADDR", multiple=True, default=[DEFAULT_ADDR], show_default=True,
              help="HTTP address of a node (repeatable; stale reads spread over all of them).")
@click.option("--workload", type=click.Choice(["write", "read", "stale", "mixed"]), default="write",
              show_default=True, help="read = linearizable GET; stale = GET ?stale=true; mixed = 90% reads.")
@click.option("-c", "--connections", type=click.IntRange(1, 10_000), default=16, show_default=True,
              help="Keep-alive connections, each with one request in flight.")
@click.option("-d", "--duration", type=click.FloatRange(min=0.1, max=86400), default=10.0,
              show_default=True, help="Seconds to run.")
@click.option("--value-size", type=click.IntRange(0, 64 << 20), default=100, show_default=True,
              help="Bytes per written value.")
@click.option("--keys", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Size of the key space (keys are picked uniformly).")
@click.option("--timeout", type=click.FloatRange(min=0.01), default=10.0, show_default=True,
              help="Per-request timeout (s).")
@click.option("--any-node", is_flag=True,
              help="Send to the given addresses as they are instead of to the leader.")
@click.option("--no-prefill", is_flag=True, help="Read workloads: don't write the key space first.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def bench(addr: tuple[str, ...], workload: str, connections: int, duration: float, value_size: int,
          keys: int, timeout: float, any_node: bool, no_prefill: bool, as_json: bool) -> None:
    """Load a running cluster over HTTP; print ops/s, latency percentiles and errors by status."""
    from gevent import monkey
    monkey.patch_all()
    from axon.bench import BenchConfig, BenchError, format_summary, run_bench
    cfg = BenchConfig(addrs=tuple(split_values(addr)), workload=workload, connections=connections,
                      duration=duration, value_size=value_size, keys=keys, timeout=timeout,
                      to_leader=not any_node, prefill=not no_prefill)
    try:
        result = run_bench(cfg, progress=lambda line: click.echo(line, err=True))
    except BenchError as exc:
        fail(str(exc))
    click.echo(json.dumps(result, sort_keys=True) if as_json else format_summary(result))

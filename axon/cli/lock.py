"""`axon lock NAME -- CMD...`: run a command while holding a distributed lock."""
from __future__ import annotations

import os
import socket
import subprocess

import click

from axon.cli.common import LONG_RUNNING_RETRY_FOR, CONTEXT, client_for, connection_options, fail

LOST_CHECK_INTERVAL = 0.2   # how often the lease's health is looked at while the command runs
TERMINATE_GRACE = 5.0       # seconds a command told to stop (lock lost) gets before SIGKILL


@click.command("lock", context_settings={**CONTEXT, "ignore_unknown_options": True})
@click.argument("name")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("--ttl", type=click.FloatRange(min=1), default=10.0, show_default=True,
              help="Seconds the lock outlives this process if it dies (its lease's TTL).")
@click.option("--timeout", type=click.FloatRange(min=0), default=None,
              help="Give up (exit 1) when the lock is not acquired within this many seconds.")
@connection_options
def lock(name: str, command: tuple[str, ...], ttl: float, timeout: float | None, addr: str) -> None:
    """Acquire lock NAME, run COMMAND with its fencing token in AXON_LOCK_TOKEN, release it.

    \b
    axon lock jobs/nightly -- ./backup.sh --full

    Exits with COMMAND's code. If the lock is lost while COMMAND runs (its lease expired),
    COMMAND is terminated and axon exits 1.
    """
    from axon.client import ClientError
    with client_for(addr, LONG_RUNNING_RETRY_FOR) as client:
        held = client.lock(name, ttl=ttl, value=f"{socket.gethostname()}:{os.getpid()}")   # who holds it
        try:
            token = held.acquire(timeout)
        except ClientError as exc:   # LockTimeout, LockLost and the rest: one line
            fail(f"lock {name}: {exc}")
        try:
            code = _run(command, token, held)
        finally:
            held.release()
    raise SystemExit(code)


def _run(command: tuple[str, ...], token: int, held: "object") -> int:
    """Run ``command`` with the token in its environment; stop it if the lock is lost."""
    env = {**os.environ, "AXON_LOCK_TOKEN": str(token)}
    try:
        child = subprocess.Popen(list(command), env=env)
    except OSError as exc:
        held.release()
        fail(f"cannot run {command[0]}: {exc.strerror or exc}")
    while True:
        try:
            return child.wait(LOST_CHECK_INTERVAL)
        except subprocess.TimeoutExpired:
            pass
        if not held.valid:
            reason = held_reason(held)
            child.terminate()
            try:
                child.wait(TERMINATE_GRACE)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            held.release()
            fail(f"lost the lock while {command[0]} ran ({reason}); it was stopped")


def held_reason(held: "object") -> str:
    """Why the lock's session was lost, in a few words."""
    session = getattr(held, "session", None)
    return (session.lost_reason if session is not None else None) or "its lease expired"

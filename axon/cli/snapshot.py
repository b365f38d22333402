"""`axon snapshot save|restore|check`: back the data set up to a file, and a file into a new data dir."""
from __future__ import annotations

import http.client
import os
from typing import Any, BinaryIO

import click

from axon.cli.common import CONTEXT, client_options, fail, out
from axon.cli.node_options import flag_option
from axon.config import ConfigError, check_node_id, node_flags, parse_addr

RESTORE_FLAGS = ("node_id", "data_dir", "http", "raft", "gossip")
SAVE_TIMEOUT = 60.0          # seconds without a byte from the node before a save gives up
MIB = 1 << 20


@click.group(context_settings=CONTEXT)
def snapshot() -> None:
    """Back up the data set to a file; restore a file as a new one-node cluster."""


@snapshot.command("save", context_settings=CONTEXT)
@click.argument("file", type=click.Path(dir_okay=False))
@client_options
def save(file: str, addr: str, as_json: bool) -> None:
    """Save a consistent snapshot of every key, revision and the auth state to FILE (admin).

    The node streams it after applying everything committed when it was asked; the file ends
    with a SHA-256, checked here before FILE is written (as FILE.part until then).
    """
    from axon.kv.snapshot_file import SnapshotFileError, SnapshotFileReader
    from axon.node.backup import Tap
    answer = _request_snapshot(addr)
    part = file + ".part"
    try:
        with _private_file(part) as f, _bar("saving", None) as bar:
            reader = SnapshotFileReader(Tap(answer, lambda data: (f.write(data), bar.update(len(data)))))
            size = reader.verify()
            f.flush()
            os.fsync(f.fileno())
        os.replace(part, file)
    except SnapshotFileError as exc:
        _remove(part)
        fail(f"the node's snapshot is unusable: {exc}")
    except http.client.IncompleteRead:
        _remove(part)
        fail("the node ended the snapshot stream early (it stopped, or its store failed); nothing was saved")
    except (OSError, http.client.HTTPException) as exc:
        _remove(part)
        fail(f"saving the snapshot failed: {getattr(exc, 'strerror', None) or exc.__class__.__name__}")
    header = reader.header
    out({"file": file, "bytes": size, "keys": header.keys, "revision": header.revision,
         "cluster_id": header.cluster_id, "node_id": header.node_id}, as_json,
        lambda d: f"saved {d['file']}: {d['keys']} keys at revision {d['revision']} "
                  f"({d['bytes']} bytes, checksum verified)")


@snapshot.command("check", context_settings=CONTEXT)
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def check(file: str, as_json: bool) -> None:
    """Check FILE whole (framing and SHA-256) and print what it holds."""
    from axon.kv.snapshot_file import SnapshotFileError
    from axon.node.backup import verify_file
    try:
        header = verify_file(file)
    except SnapshotFileError as exc:
        fail(f"{file}: {exc}")
    out(header.to_json(), as_json,
        lambda d: f"{file}: {d['keys']} keys at revision {d['revision']}, saved {d['created']} "
                  f"from node {d['node_id']} of cluster {d['cluster_id']}; checksum verified")


def _restore_options(fn: Any) -> Any:
    for f, flag in reversed([(f, flag) for f, flag in node_flags() if f.name in RESTORE_FLAGS]):
        fn = flag_option(f, flag)(fn)
    return fn


@snapshot.command("restore", context_settings=CONTEXT)
@click.argument("file", type=click.Path(dir_okay=False))
@_restore_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def restore(file: str, node_id: str, data_dir: str, http: str, raft: str, gossip: str,
            as_json: bool) -> None:
    """Write a new data dir from FILE: a one-node cluster (new cluster id) with its every key.

    Start it with `axon serve` and the same --node-id, --data-dir, --http, --raft and --gossip;
    other nodes (with empty data dirs) then join it with --join.
    """
    from axon.kv.snapshot_file import SnapshotFileError
    from axon.node.backup import restore as restore_file
    from axon.node.recover import RecoverError
    from axon.raft.types import Member
    try:
        check_node_id(node_id)
        for addr, what in ((http, "--http"), (raft, "--raft"), (gossip, "--gossip")):
            parse_addr(addr, what)
        size = os.path.getsize(file)
    except ConfigError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror}")
    try:
        # Read twice: checked whole first, then restored.
        with _bar("restoring", 2 * size) as bar:
            done = restore_file(file, data_dir, node_id, Member(raft, http), progress=bar.update)
    except (SnapshotFileError, RecoverError) as exc:
        fail(str(exc))
    out({"data_dir": data_dir, "node_id": done.node_id, "revision": done.revision,
         "cluster_id": done.cluster_id, "previous_cluster_id": done.previous_cluster_id}, as_json,
        lambda d: f"restored {file} into {d['data_dir']}: node {d['node_id']} is the only voter of "
                  f"new cluster {d['cluster_id']} at revision {d['revision']}; start it with "
                  f"`axon serve` and the same flags")


def _request_snapshot(addr: str) -> http.client.HTTPResponse:
    """The node's streamed answer to GET /maintenance/snapshot (a refusal ends the command)."""
    from axon.client.http import ClientError, HttpPool
    from axon.web.maintenance import SNAPSHOT_PATH
    ctx = click.get_current_context()
    token = ctx.meta.get("axon.token")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        conn = HttpPool(SAVE_TIMEOUT, cacert=ctx.meta.get("axon.cacert")).new_connection(addr)
        conn.request("GET", SNAPSHOT_PATH, headers=headers)
        answer = conn.getresponse()
    except ClientError as exc:
        fail(str(exc))
    except (OSError, http.client.HTTPException) as exc:
        fail(f"{addr}: {getattr(exc, 'strerror', None) or exc.__class__.__name__}")
    if answer.status != 200:
        fail(_refusal(answer))
    return answer


def _refusal(answer: http.client.HTTPResponse) -> str:
    import json
    try:
        message = json.loads(answer.read(64 << 10))["error"]
    except (ValueError, KeyError, TypeError, OSError, http.client.HTTPException):
        message = None
    return f"{message or 'refused'} (HTTP {answer.status})"


def _bar(label: str, length: int | None) -> Any:
    """A progress bar over bytes on stderr (a moving one when ``length`` is unknown)."""
    bar = click.progressbar(iter(()), length=length, label=label, file=click.get_text_stream("stderr"))
    bar.item_show_func = lambda _: f"{bar.pos / MIB:.1f} MiB"
    return bar


def _private_file(path: str) -> BinaryIO:
    """``path`` opened for writing, 0600: a backup holds every value and the auth state."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    return os.fdopen(fd, "wb")


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


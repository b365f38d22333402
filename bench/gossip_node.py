"""Run one Axon GossipAgent as a process (for benchmarks and manual experiments).

Member events are printed to stdout as JSON lines.  With ``--status host:port`` a
tiny line protocol is served there: ``members`` answers the member list as one JSON
line, ``join host:port`` joins and answers {"joined": n}, ``leave`` leaves and exits.
SIGTERM stops at once (peers see a failure), SIGINT leaves gracefully.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import gevent  # noqa: E402
import gevent.event  # noqa: E402
from gevent.server import StreamServer  # noqa: E402

from axon.gossip import GossipConfig  # noqa: E402
from axon.gossip.address import parse_addr  # noqa: E402
from axon.gossip.agent import GossipAgent  # noqa: E402
from axon.keys import load_key  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", required=True)
    p.add_argument("--bind", default="127.0.0.1:0")
    p.add_argument("--seed", action="append", default=[], help="host:port of a member to join (repeatable)")
    p.add_argument("--status", help="host:port for the line-protocol status/control server")
    p.add_argument("--key-file", help="gossip key file (16/24/32 bytes as hex, base64 or raw; mode 0600)")
    p.add_argument("--profile", choices=["lan", "local"], default="lan")
    p.add_argument("--probe-interval", type=float)
    p.add_argument("--probe-timeout", type=float)
    p.add_argument("--gossip-interval", type=float)
    p.add_argument("--gossip-nodes", type=int)
    p.add_argument("--suspicion-mult", type=int)
    p.add_argument("--retransmit-mult", type=int)
    p.add_argument("--push-pull-interval", type=float)
    p.add_argument("--meta", action="append", default=[], help="key=value metadata (repeatable)")
    return p.parse_args(argv)


def build_config(args: argparse.Namespace) -> GossipConfig:
    base = GossipConfig.lan() if args.profile == "lan" else GossipConfig.local()
    overrides = {name: getattr(args, name) for name in ("probe_interval", "probe_timeout", "gossip_interval",
                                                        "gossip_nodes", "suspicion_mult", "retransmit_mult",
                                                        "push_pull_interval") if getattr(args, name) is not None}
    return dataclasses.replace(base, **overrides)


def emit(record: dict) -> None:
    sys.stdout.write(json.dumps(record, sort_keys=True) + "\n")
    sys.stdout.flush()


def serve_status(agent: GossipAgent, done: gevent.event.Event, sock, _peer) -> None:
    reader = sock.makefile("rb")
    try:
        for raw in reader:
            command, _, arg = raw.decode("utf-8", "replace").strip().partition(" ")
            if command == "members":
                reply = agent.members()
            elif command == "join":
                reply = {"joined": agent.join([arg])}
            elif command == "leave":
                reply = {"left": agent.leave(5.0)}
                done.set()
            else:
                reply = {"error": f"unknown command {command!r}"}
            sock.sendall(json.dumps(reply).encode() + b"\n")
    except OSError:
        pass
    finally:
        reader.close()
        sock.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    meta = dict(item.split("=", 1) for item in args.meta)
    meta.setdefault("node_id", args.name)
    key = load_key(args.key_file) if args.key_file else None
    agent = GossipAgent(build_config(args), args.name, args.bind, meta, key=key)
    agent.on_change(lambda kind, member: emit({"t": time.time(), "event": kind, "member": member}))
    agent.start()
    done = gevent.event.Event()
    server = None
    if args.status:
        server = StreamServer(parse_addr(args.status), lambda s, p: serve_status(agent, done, s, p))
        server.start()
    emit({"t": time.time(), "event": "ready", "address": agent.address})
    gevent.signal_handler(signal.SIGTERM, done.set)
    gevent.signal_handler(signal.SIGINT, lambda: (agent.leave(5.0), done.set()))
    if args.seed:
        agent.join_in_background(args.seed)
    done.wait()
    if server is not None:
        server.close()
    agent.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

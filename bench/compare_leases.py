"""Lease keepalives, Axon and etcd 3.4 side by side on loopback (3 nodes each, fsync on).

    python bench/compare_leases.py [--leases 1000] [--connections 64] [--duration 10] [--rounds 3] [--json FILE]

Needs `etcd` and `wrk` on PATH (as bench/compare_etcd.py).  Each system grants ``--leases``
leases of 60 s, then wrk sends keepalives of random ones to the leader over ``--connections``
connections: Axon ``POST /leases/<id>/keepalive``, etcd the gateway's ``POST /v3/lease/keepalive``
(one message per request).  An Axon keepalive confirms the leadership first (a ReadIndex round
to a quorum) so that a deposed leader cannot acknowledge one; etcd's leader answers from its
lessor (it checks it leads, without a round to the followers).  Rows: keepalives/s, p50, p99.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from compare_etcd import CompareError, tools_ready, run_wrk   # noqa: E402
from compare_watch import Axon, Etcd, record, report   # noqa: E402

TTL = 60
# The wrk script: keepalives of random leases from BENCH_LEASES (comma-separated ids).
_SCRIPT = """
local ids = {}
for id in string.gmatch(os.getenv("BENCH_LEASES"), "[^,]+") do ids[#ids + 1] = id end
local headers = {["Content-Type"] = "application/json"}
local etcd = os.getenv("BENCH_SYSTEM") == "etcd"
request = function()
  local id = ids[math.random(1, #ids)]
  if etcd then
    return wrk.format("POST", "/v3/lease/keepalive", headers, '{"ID":' .. id .. '}')
  end
  return wrk.format("POST", "/leases/" .. id .. "/keepalive", headers, "")
end
"""


def grant(system, count: int) -> list[str]:
    """``count`` leases of TTL seconds on the system's leader; their ids as text."""
    leader = system.leader()
    ids = []
    for _ in range(count):
        if system.name == "axon":
            resp = system.pool.request("POST", leader, "/leases", json.dumps({"ttl": TTL}).encode())
            want = 201
        else:
            resp = system.pool.request("POST", leader, "/v3/lease/grant", json.dumps({"TTL": TTL}).encode())
            want = 200
        if resp.status != want:
            raise CompareError(f"{system.name}: lease grant answered HTTP {resp.status}")
        ids.append(str(resp.json()["ID" if system.name == "etcd" else "id"]))
    return ids


def keepalive_row(system, ids: list[str], script: str, connections: int, duration: float) -> dict:
    res = run_wrk("http://" + system.leader(), script, connections, duration,
                  {"BENCH_LEASES": ",".join(ids), "BENCH_SYSTEM": system.name})
    if res.non_2xx or res.socket_errors:
        raise CompareError(f"{system.name}: keepalive run had {res.non_2xx} non-2xx and "
                           f"{res.socket_errors} errors")
    return {"keepalives_per_s": res.requests_per_s, "p50_ms": res.p50_ms, "p99_ms": res.p99_ms}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--leases", type=int, default=1000)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()
    if not tools_ready():
        return 1
    results: dict[str, dict[str, list]] = {}
    with tempfile.TemporaryDirectory(prefix="axon-lease-bench-") as tmp:
        script = os.path.join(tmp, "keepalive.lua")
        with open(script, "w") as f:
            f.write(_SCRIPT)
        systems = {}
        try:
            systems = {"axon": Axon(tmp), "etcd": Etcd(tmp)}
            ids = {name: grant(system, args.leases) for name, system in systems.items()}
            for rnd in range(args.rounds):
                for name in (["axon", "etcd"] if rnd % 2 == 0 else ["etcd", "axon"]):
                    record(results, f"keepalive @{args.connections}", name,
                           keepalive_row(systems[name], ids[name], script, args.connections, args.duration))
        except CompareError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        finally:
            for system in systems.values():
                system.close()
    return report(results, args.json_out)


if __name__ == "__main__":
    sys.exit(main())

"""Leases under faults (axon/testing/leasecheck.py beside the chaos workload): keys of a kept-alive
lease never vanish before the TTL since the last acknowledged keepalive, and are gone within
TTL + election time once their holders stop.  Every chaos run checks this; these runs stress it
with more holders and a TTL near its minimum, against the faults that move the leadership."""
from __future__ import annotations

import os

import pytest

from axon.testing.chaos import ChaosConfig, netns_skip_reason, run_chaos

DURATION = float(os.environ.get("AXON_CHAOS_DURATION", "40"))


@pytest.mark.slow
@pytest.mark.chaos
@pytest.mark.timeout(DURATION * 3 + 300)
@pytest.mark.parametrize("nemesis", ["kill-leader", "pause", "kill-all", "partition-isolated-leader"])
def test_leases_kept_alive_through_faults_never_expire_early(nemesis: str, tmp_path) -> None:
    reason = netns_skip_reason(nemesis)
    if reason:
        pytest.skip(reason)
    report = run_chaos(ChaosConfig(nemesis, duration=DURATION, nodes=3, seed=5, clients=4, out_dir=str(tmp_path),
                                   lease_holders=4, lease_ttl=3))
    print(report.summary())
    assert report.ok, report.summary()
    assert report.lease_keepalives >= 4 * DURATION / 6, report.summary()   # kill-all: down half the time

"""The lock under faults: clients taking turns at one lock while leaders are killed; a fencing
resource sees growing tokens and no interleaved holders (axon/testing/lockcheck.py)."""
from __future__ import annotations

import pytest

from axon.testing.chaos import ChaosConfig, run_chaos


@pytest.mark.slow
@pytest.mark.chaos
@pytest.mark.timeout(400)
@pytest.mark.parametrize("nemesis", ["kill-leader", "pause"])
def test_lock_holders_never_overlap_while_nodes_fail(nemesis: str, tmp_path) -> None:
    report = run_chaos(ChaosConfig(nemesis, duration=30, nodes=3, seed=23, clients=2, lock_clients=3,
                                   out_dir=str(tmp_path)))
    print(report.summary())
    assert report.ok, report.summary()
    assert len(report.faults) >= 3, report.summary()
    assert report.lock_counts["acquisitions"] >= 20, report.summary()
    assert report.lock_counts["writes"] >= 100, report.summary()

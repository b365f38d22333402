"""Shared fixtures: a real 3-node cluster that is always torn down."""
from __future__ import annotations

from typing import Iterator

import pytest

from axon.testing.cluster import Cluster


@pytest.fixture
def cluster(tmp_path) -> Iterator[Cluster]:
    """Three `axon serve` processes on 127.0.0.1 (n1 bootstrapped, n2/n3 joined), request timeout 2 s."""
    c = Cluster(tmp_path, n=3)
    try:
        yield c
    finally:
        c.close()

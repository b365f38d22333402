"""axon.launcher.layout: node addresses are formatted by the shared address module."""
from __future__ import annotations

from axon.launcher.layout import Layout


def test_an_ipv6_host_gets_bracketed_addresses() -> None:
    layout = Layout("::1", 7000)
    spec = layout.add_node(lambda ports: True)
    assert (spec.http, spec.raft, spec.gossip) == ("[::1]:7000", "[::1]:7001", "[::1]:7002")
    assert spec.ports() == [7000, 7001, 7002]
    assert Layout.from_json(layout.to_json()).nodes == [spec]

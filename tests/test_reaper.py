"""The pure rule behind --reap-dead-after."""
import pytest

from axon.node.reaper import pick_reap


@pytest.mark.parametrize("voters,dead,now,expected", [
    (["a", "b", "c", "d"], {"d": 0.0}, 10.0, "d"),           # 3 remain, alive majority of 4
    (["a", "b", "c", "d"], {"d": 9.0}, 10.0, None),          # not dead long enough
    (["a", "b", "c"], {"c": 0.0}, 10.0, None),               # would go below three voters
    (["a", "b", "c", "d", "e"], {"d": 0.0, "e": 0.0}, 10.0, "d"),  # 3 alive of 5: quorum holds
    (["a", "b", "c", "d", "e"], {"c": 0.0, "d": 0.0, "e": 0.0}, 10.0, None),  # minority alive
    (["a", "b", "c", "d"], {"a": 0.0}, 10.0, None),          # never ourselves
])
def test_pick_reap(voters, dead, now, expected):
    assert pick_reap(voters, dead, now, 5.0, self_id="a") == expected

"""The lxd provider does not run a balancer pair yet: it says so before it creates anything."""

from __future__ import annotations

import pytest

from relevo.errors import ProviderError
from relevo.providers.lxd import LXDProvider
from relevo.topology import parse_topology

PAIR = "provider: lxd\nnetwork: 10.205.7.0/24\nbalancer: {peer: ha2, vip: 10.205.7.10}\n"


@pytest.mark.parametrize("node", ["ha1", "ha2", "web1"])
def test_a_pair_on_lxd_is_refused_before_any_container(tmp_path, node):
    """`create` of any node of an LXD pair raises the reason, with no state directory made (so `relevo up`
    starts nothing and leaves LXD as it was)."""
    topology = parse_topology(PAIR, source=None, state_dir=tmp_path / ".relevo")
    with pytest.raises(ProviderError, match="does not run a balancer pair yet"):
        LXDProvider(topology).create(node)
    assert not (tmp_path / ".relevo").exists()

"""The provider contract (tests/contract/suite.py) against the real LXD daemon: the same suite the fake
and the local provider pass, on a cluster of three containers (a balancer, web1, web2)."""

from __future__ import annotations

from collections.abc import Hashable, Iterator

import pytest

from relevo.cluster import Cluster
from relevo.lxd.client import LXDClient
from relevo.providers.lxd_guest import APACHE_UNIT
from tests.contract.suite import ProviderContract, Subject, cluster_subject
from tests.lxd.conftest import TierImage, up_on_lxd

pytestmark = [pytest.mark.lxd, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def contract_cluster(
    lxd: LXDClient, tier_image: TierImage, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """Three containers (a balancer, web1, web2) without the controller; destroyed at the end."""
    body = "nodes:\n  web1: {role: web}\n  web2: {role: web}\n"
    with up_on_lxd(
        lxd, tier_image, tmp_path_factory.mktemp("lxd-contract"), "rc", body, controller=False
    ) as up:
        yield Cluster(up.topology)


def guest_workers(cluster: Cluster, node: str) -> frozenset[Hashable]:
    """Apache's workers in the node's container: the children of its unit's main process."""
    provider = cluster.provider_for(node)
    client, name = provider.placement.resolve(node)  # type: ignore[attr-defined]
    script = f"pgrep -P $(systemctl show --property=MainPID --value {APACHE_UNIT})"
    result = client.exec(name, ["sh", "-c", script], timeout_s=30)
    return frozenset(int(pid) for pid in result.stdout.split())


def allowance(cluster: Cluster, node: str) -> float | None:
    """The container's `limits.cpu.allowance` as cores (`10ms/100ms`: 0.1; None: none set)."""
    provider = cluster.provider_for(node)
    client, name = provider.placement.resolve(node)  # type: ignore[attr-defined]
    value = client.instance(name).config.get("limits.cpu.allowance")
    if not value:
        return None
    quota, _, period = value.partition("/")
    return float(quota.removesuffix("ms")) / float(period.removesuffix("ms"))


class TestLXDProvider(ProviderContract):
    @pytest.fixture
    def subject(self, contract_cluster: Cluster) -> Iterator[Subject]:
        cluster = contract_cluster
        yield from cluster_subject(
            cluster,
            lambda node: guest_workers(cluster, node),
            cpu_quota=lambda node: allowance(cluster, node),
        )

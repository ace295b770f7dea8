"""The provider contract (tests/contract/suite.py) against the real LXD daemon: the same suite the fake
and the local provider pass, on a cluster of three containers (a balancer, web1, web2)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Hashable, Iterator

import pytest

from relevo import lifecycle
from relevo.cluster import Cluster
from relevo.lxd.build import BuiltImage, import_image
from relevo.lxd.client import LXDClient
from relevo.lxd.errors import LXDError
from relevo.lxd.network import free_subnet
from relevo.providers.lxd_guest import APACHE_UNIT
from relevo.topology import load_topology
from tests.contract.suite import ProviderContract, Subject, cluster_subject

pytestmark = [pytest.mark.lxd, pytest.mark.timeout(900)]

TAG = f"c{os.getpid() % 1_000_000}"


@pytest.fixture(scope="module")
def contract_cluster(
    lxd: LXDClient, base_image: BuiltImage, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    alias = f"relevo-test/{TAG}"
    imported = import_image(lxd, base_image.path, alias)
    try:
        workdir = tmp_path_factory.mktemp("lxd-contract")
        (workdir / "relevo.yaml").write_text(
            f"name: rt{TAG}\nprovider: lxd\nnetwork: {free_subnet(start=os.getpid() + 7)}\n"
            f"providers:\n  lxd: {{image: '{alias}'}}\n"
            "nodes:\n  web1: {role: web}\n  web2: {role: web}\n"
        )
        topology = load_topology(workdir / "relevo.yaml")
        try:
            lifecycle.up(topology, controller=False)
            yield Cluster(topology)
        finally:
            with contextlib.suppress(Exception):
                lifecycle.destroy(topology)
    finally:
        with contextlib.suppress(LXDError):
            lxd.delete_alias(alias)
        if imported.uploaded:
            with contextlib.suppress(LXDError):
                lxd.delete_image(imported.fingerprint)


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

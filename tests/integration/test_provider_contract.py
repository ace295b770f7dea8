"""The provider contract (tests/contract/suite.py) run against the fake provider and the local one
(real HAProxy and Apache on loopback)."""

from __future__ import annotations

import os
from collections.abc import Hashable, Iterator
from pathlib import Path

import pytest

from relevo.cluster import Cluster
from relevo.procs import ProcessRecord, group_members
from relevo.providers import base
from relevo.providers.cpu_quota import CpuCgroups
from relevo.providers.local_exhaust import current_group
from relevo.topology import parse_topology
from tests.contract.fake import FakeProvider
from tests.contract.suite import ProviderContract, Subject, cluster_subject

from .conftest import (
    RunningCluster,
    cluster_in_short_dir,
    next_network,
)

NODES = "nodes:\n  web1: {role: web}\n  web2: {role: web}\n"


@pytest.fixture(scope="module")
def fake_provider() -> Iterator[FakeProvider]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(base.PROVIDERS, "fake", "tests.contract.fake:FakeProvider")
        topology = parse_topology(
            f"name: fake\nprovider: fake\nnetwork: {next_network()}\n{NODES}",
            source=Path("/nonexistent/relevo.yaml"),
            state_dir=Path("/nonexistent/.relevo"),
        )
        provider = FakeProvider(topology)
        yield provider
        for node in topology.node_names:
            provider.stop(node)


class TestFakeProvider(ProviderContract):
    @pytest.fixture
    def subject(self, fake_provider: FakeProvider) -> Iterator[Subject]:
        provider = fake_provider
        yield from cluster_subject(provider, lambda node: frozenset({provider.worker(node)}))


@pytest.fixture(scope="module")
def local_cluster() -> Iterator[RunningCluster]:
    """web1 and web2 behind the balancer, without the controller; as root its files on a 32 MiB tmpfs of
    its own (what disk-full may fill)."""
    tmpfs = "32m" if os.geteuid() == 0 else None
    with cluster_in_short_dir("", nodes=NODES, controller=False, tmpfs_size=tmpfs) as running:
        yield running


def local_quota(cluster: Cluster, node: str) -> float | None:
    """The CPU quota of the cgroup the node's leader is in (None: none, or no cpu controller)."""
    cgroups = CpuCgroups.detect()
    record = ProcessRecord.load(cluster.paths.pid_file(node))
    group = current_group(cgroups, record.pid) if cgroups is not None and record is not None else None
    return cgroups.quota(group) if cgroups is not None and group is not None else None


def local_free(cluster: Cluster, node: str) -> int:
    stat = os.statvfs(cluster.paths.node_dir(node))
    return stat.f_bavail * stat.f_frsize


def local_workers(cluster: Cluster, node: str) -> frozenset[Hashable]:
    record = ProcessRecord.load(cluster.paths.pid_file(node))
    if record is None:
        return frozenset()
    return frozenset(pid for pid in group_members(record.pgid) if pid != record.pid)


class TestLocalProvider(ProviderContract):
    @pytest.fixture
    def subject(self, local_cluster: RunningCluster) -> Iterator[Subject]:
        cluster = local_cluster.cluster
        yield from cluster_subject(
            cluster,
            lambda node: local_workers(cluster, node),
            cpu_quota=lambda node: local_quota(cluster, node),
            free_bytes=lambda node: local_free(cluster, node),
        )

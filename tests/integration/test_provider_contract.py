"""The provider contract (tests/contract/suite.py) run against the fake provider and the local one
(real HAProxy and Apache on loopback)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Hashable, Iterator
from pathlib import Path

import pytest

from relevo.cluster import Cluster
from relevo.procs import ProcessRecord, group_members
from relevo.providers import base
from relevo.providers.base import Fault
from relevo.providers.cpu_quota import CpuCgroups
from relevo.providers.local_exhaust import current_group
from relevo.topology import parse_topology
from tests.contract.fake import FakeProvider
from tests.contract.suite import ProviderContract, Subject, cluster_subject

from .conftest import RunningCluster, make_topology_file, next_network, start_cluster, stop_cluster

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
        for node in provider.topology.node_names:
            provider.fault(node, Fault.RESUME)
            provider.start(node)
        yield Subject(
            nodes=provider,
            web="web1",
            balancer=provider.topology.balancer.name,
            endpoint=provider.address,
            workers=lambda node: frozenset({provider.worker(node)}),
        )


@pytest.fixture(scope="module")
def local_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    import tempfile

    workdir = Path(tempfile.mkdtemp(prefix="rlv-c-", dir="/tmp"))  # short: the Runtime API socket path
    # As root, the cluster's files on a small tmpfs of the test's own: what disk-full may fill.
    mounted = os.geteuid() == 0
    if mounted:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=32m,mode=0700", "tmpfs", str(workdir)], check=True
        )
    try:
        running = start_cluster(make_topology_file(workdir, nodes=NODES))
        try:
            yield running
        finally:
            stop_cluster(running)
    finally:
        if mounted and subprocess.run(["umount", str(workdir)], check=False).returncode != 0:
            subprocess.run(["umount", "--lazy", str(workdir)], check=False)
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)


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

"""cpu-starve and disk-full on the local provider (root), against real Apache and HAProxy: a starved
node's processes run under the quota asked for and are back where they were once healed; a node's
tmpfs is full while the fault lasts and has its space back after, the node serving throughout; a
scenario spans both and returns to its steady state; a relevo that died mid-span leaves a record the
next heal_all undoes."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from relevo.cluster import Cluster
from relevo.procs import ProcessRecord, group_members
from relevo.providers.base import Fault, Impairment
from relevo.providers.cpu_quota import CpuCgroups
from relevo.providers.local_exhaust import FILL_NAME, current_group

from .conftest import RunningCluster, cluster_in_short_dir
from .test_scenarios import results

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="cgroups and mounting a tmpfs need root"),
]


@pytest.fixture(scope="module")
def cluster() -> Iterator[RunningCluster]:
    """The seed's layout with the controller, its state directory on a 32 MiB tmpfs this test mounts."""
    with cluster_in_short_dir(tmpfs_size="32m") as running:
        yield running


def pids_of(cluster: Cluster, node: str) -> list[int]:
    record = ProcessRecord.load(cluster.paths.pid_file(node))
    assert record is not None, f"{node} has no record"
    return group_members(record.pgid)


def groups_of(cgroups: CpuCgroups, cluster: Cluster, node: str) -> set[Path]:
    """The cgroups the node's processes are in now. Not per PID: under load Apache starts and ends
    children (and the controller may restart a starved node), so the PIDs of before are not those of after;
    a process that ended between the listing and the reading of its cgroup counts in none."""
    groups = {current_group(cgroups, pid) for pid in pids_of(cluster, node)}
    return {g for g in groups if g is not None}


def test_cpu_starve_puts_the_node_under_its_quota_until_healed(cluster: RunningCluster):
    """cpu-starve 10 %: every process of web1 is in a group with a quota of 0.1 CPU and web1 still
    answers; healed: they are back in the group they came from, and the group is gone."""
    cgroups = CpuCgroups.detect()
    if cgroups is None:
        pytest.skip("no cgroup cpu controller")
    c = cluster.cluster
    origin = groups_of(cgroups, c, "web1")
    assert origin, "web1's processes are in no cgroup"
    means = c.impair("web1", Impairment(fault=Fault.CPU_STARVE, pct=10))
    try:
        assert "CPU quota" in means
        groups = groups_of(cgroups, c, "web1")
        assert len(groups) == 1
        (group,) = groups
        assert group.name == "web1"
        assert cgroups.quota(group) == pytest.approx(0.1)
        assert (
            cluster.get(
                f"http://{cluster.topology.node('web1').address}:{cluster.topology.node('web1').port}/"
            )[0]
            == 200
        )
    finally:
        c.heal("web1")
    assert groups_of(cgroups, c, "web1") == origin
    assert not group.exists()
    assert not (c.paths.root / "faults" / "web1.json").exists()


def test_disk_full_fills_the_nodes_file_system_until_healed(cluster: RunningCluster):
    """disk-full: no byte left where web1's files are, web1 still serving; healed: the space is back
    and relevo's fill file and record are gone."""
    c = cluster.cluster
    directory = c.paths.node_dir("web1")
    free_before = os.statvfs(directory).f_bavail
    means = c.impair("web1", Impairment(fault=Fault.DISK_FULL))
    try:
        assert "tmpfs" in means
        assert os.statvfs(directory).f_bavail == 0
        node = cluster.topology.node("web1")
        assert cluster.get(f"http://{node.address}:{node.port}/")[0] == 200
    finally:
        c.heal("web1")
    assert os.statvfs(directory).f_bavail >= free_before - 16
    assert not (directory / FILL_NAME).exists()


def test_a_fault_left_by_a_dead_relevo_is_healed_from_its_record(cluster: RunningCluster):
    """A cpu-starve and a disk-full applied by one Cluster object and never healed by it (its relevo
    died): a new one's heal_all undoes both from their records (the starved node's processes back where
    they were)."""
    first = cluster.cluster
    # The starve first: with the disk full no record can be written, so no other fault is applied.
    first.impair("web2", Impairment(fault=Fault.CPU_STARVE, pct=20))
    first.impair("web1", Impairment(fault=Fault.DISK_FULL))
    healed = Cluster(cluster.topology).heal_all()
    assert sorted(healed) == ["cpu-starve web2", "disk-full web1"]
    assert not (first.paths.node_dir("web1") / FILL_NAME).exists()
    assert os.statvfs(first.paths.node_dir("web1")).f_bavail > 0


def test_a_scenario_with_both_spans_returns_to_its_steady_state(cluster: RunningCluster, tmp_path):
    """A scenario file with a 2 s cpu-starve of web1 and a 2 s disk-full of web2 runs: each fault's span
    and means are in the markers, nothing fails, and the steady state holds before and after."""
    mine = tmp_path / "exhaust.yaml"
    mine.write_text(
        "scenarios:\n"
        "  exhaust:\n"
        "    load: {rate: 300, duration: 4s}\n"
        "    faults:\n"
        "      - {at: 0.5s, for: 2s, cpu-starve: web1, pct: 20}\n"
        "      - {at: 1s, for: 2s, disk-full: web2}\n"
        "    expect: {max_failed: 0}\n"
    )
    run = results(cluster, "--scenario-file", str(mine))["exhaust"]
    faults = {m["label"]: m for m in run["markers"] if m["source"] == "fault"}
    assert set(faults) == {"cpu-starve web1 20 % of a core for 2 s", "disk-full web2 for 2 s"}, faults
    assert "CPU quota" in faults["cpu-starve web1 20 % of a core for 2 s"]["means"]
    assert "tmpfs" in faults["disk-full web2 for 2 s"]["means"]
    assert run["passed"], json.dumps(run["verdicts"])
    assert run["steady_state"]["after"]["ok"]

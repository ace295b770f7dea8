"""A CPU quota through the kernel's cgroups (v1 here, v2 elsewhere) on a real busy process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from relevo.procs import ProcessRecord, group_members
from relevo.providers.cpu_quota import CpuCgroups, Layout

from .conftest import make_topology_file, start_cluster, stop_cluster, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def cgroups() -> CpuCgroups:
    found = CpuCgroups.detect()
    if found is None:
        pytest.skip("this machine offers no cgroup cpu controller")
    if os.geteuid() != 0:
        pytest.skip("cgroups are writable by root only here")
    return found


def test_a_busy_process_group_is_throttled_to_its_quota_and_the_group_goes_away(cgroups, tmp_path):
    """A process group moved into a 0.1-CPU group is throttled by the kernel; children it forks later
    are in the group too; the empty group is removed after the processes end."""
    group = cgroups.group("test", tmp_path, "web1")
    # A busy process with one child forked at once and another forked when told (after the move).
    busy = (
        "import os, sys, time\n"
        "if os.fork() == 0:\n    time.sleep(60)\n    sys.exit()\n"
        "sys.stdin.readline()\n"
        "if os.fork() == 0:\n    time.sleep(60)\n    sys.exit()\n"
        "while True: pass\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", busy], start_new_session=True, stdin=subprocess.PIPE, text=True
    )
    try:
        wait_until(lambda: len(group_members(process.pid)) == 2, "the process has forked its first child")
        cgroups.apply(group, 0.1, group_members(process.pid))
        assert cgroups.quota(group) == pytest.approx(0.1)
        assert sorted(_members(group)) == sorted(str(p) for p in group_members(process.pid))
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
        wait_until(lambda: len(_members(group)) == 3, "the child forked later is in the group too", 10)
        wait_until(lambda: cgroups.throttled(group) > 0, "the kernel throttles the busy process", 10)
        own = group.relative_to(cgroups.base).as_posix()
        assert f"/{own}" in Path(f"/proc/{process.pid}/cgroup").read_text()
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the process group this test started, by its id
        process.wait()
        assert process.stdin is not None
        process.stdin.close()
        wait_until(lambda: not _members(group), "the group is empty", 10)
        cgroups.remove(group)
    assert not group.exists()
    assert cgroups.layout in (Layout.V1, Layout.V2)


def _members(group) -> list[str]:
    try:
        return (group / "cgroup.procs").read_text().split()
    except OSError:
        return []


def test_a_nodes_cpu_capacity_puts_its_apache_under_the_quota_until_it_stops(cgroups, cluster_dir):
    """`capacity: {cpu: 0.2}` on web1: after `up` every Apache process of web1 is in its own group with
    that quota, web2 (no quota) is not; `down` removes the group."""
    nodes = "nodes:\n  web1: {role: web, capacity: {cpu: 0.2}}\n  web2: {role: web}\n"
    running = start_cluster(make_topology_file(cluster_dir, nodes=nodes))
    try:
        group = cgroups.group("test", running.cluster.paths.root, "web1")
        assert cgroups.quota(group) == pytest.approx(0.2)
        web1 = ProcessRecord.load(running.cluster.paths.pid_file("web1"))
        web2 = ProcessRecord.load(running.cluster.paths.pid_file("web2"))
        assert web1 is not None and web2 is not None
        inside = set(_members(group))
        assert {str(pid) for pid in group_members(web1.pgid)} <= inside
        assert not {str(pid) for pid in group_members(web2.pgid)} & inside
        assert running.get()[0] == 200
    finally:
        stop_cluster(running)
    assert not group.exists()

"""HAProxy started as root serves from an unprivileged account (issue 17): its workers drop to it, while
the Runtime API socket and the files holding secrets stay root's, mode 0600, and relevo still reads it."""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

import pytest

from relevo.procs import ProcessRecord, group_members

from .conftest import RunningCluster

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root (CI runs as root)"),
]


def uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for {pid}")


def test_haproxy_started_as_root_serves_from_an_unprivileged_account(running_cluster: RunningCluster):
    """Run as root: HAProxy's worker runs as haproxy (or nobody), never uid 0; its master stays root to
    reload; the Runtime API socket and haproxy.cfg are root's, 0600; status still reads HAProxy."""
    cluster = running_cluster
    paths = cluster.cluster.paths
    record = ProcessRecord.load(paths.pid_file(cluster.topology.balancer.name))
    assert record is not None
    workers = [pid for pid in group_members(record.pgid) if pid != record.pid]
    assert workers, "HAProxy's master has no worker"
    names = {pwd.getpwuid(uid_of(pid)).pw_name for pid in workers}
    assert names <= {"haproxy", "nobody"} and names, names
    assert uid_of(record.pid) == 0, "the master re-executes itself on a reload: it stays root"
    for path in (paths.runtime_socket, paths.haproxy_cfg):
        info = path.lstat()
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (0, 0o600), path
    assert cluster.health()["web1"] == "UP", "relevo reads HAProxy's Runtime API"
    status, _ = cluster.get()
    assert status == 200

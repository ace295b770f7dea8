"""Crash at every instant (Hypothesis, real processes): the controller or the CLI is SIGKILLed at a random
moment of a start, a stop, a failover or a failback; `relevo up` then converges, no process of the cluster
runs that the records do not name, and after `relevo down` none runs at all.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relevo.cluster import Cluster
from relevo.controller import daemon
from relevo.paths import StatePaths
from relevo.procs import ProcessRecord, is_ours, proven_members
from relevo.providers.base import Fault
from relevo.topology import load_topology

from .conftest import make_topology_file, skip_without_daemons, wait_until
from .test_state_trust import cluster_processes, kill_leftovers, pgid_of

pytestmark = pytest.mark.integration

OPERATIONS = ("start-standby", "stop-primary", "failover", "failback")


def cli(path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "relevo", "-f", str(path), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def named_groups(paths: StatePaths) -> set[int]:
    """Process groups the state directory's records name and prove (the controller's pid included)."""
    groups: set[int] = set()
    for entry in (paths.root / "run").rglob("*.json"):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            data = json.loads(entry.read_text())
            record = ProcessRecord(
                pid=int(data["pid"]),
                start_time=int(data["start_time"]),
                pgid=int(data["pgid"]),
                exe=str(data["exe"]),
                config=str(data.get("config", "")),
            )
            if is_ours(record) or proven_members(record):
                groups.add(record.pgid)
    holder = daemon.lock_holder(paths.controller_lock)
    if holder is not None and (group := pgid_of(holder)) is not None:
        groups.add(group)
    return groups


def unnamed(paths: StatePaths) -> list[int]:
    return [pid for pid in cluster_processes(paths.root) if pgid_of(pid) not in named_groups(paths)]


def controller_pid(paths: StatePaths) -> int:
    record = ProcessRecord.load(paths.controller_pid)
    assert record is not None
    return record.pid


def run_operation(path: Path, operation: str, victim: str, delay_s: float) -> None:
    """Start the operation and SIGKILL the victim (the CLI running it, or the controller) `delay_s`
    into it."""
    topology = load_topology(path)
    cluster = Cluster(topology)
    paths = cluster.paths
    if operation == "failback":  # first a failover, finished, so that the failback is what is cut short
        cluster.fault("web1", Fault.CRASH)
        wait_until(
            lambda: (
                cluster.haproxy_servers().get("web1bck") is not None
                and cluster.haproxy_servers()["web1bck"].health == "UP"
            ),
            "web1bck serves",
        )
    command = {
        "start-standby": ("start", "web1bck"),
        "stop-primary": ("stop", "web1"),
        "failover": None,
        "failback": ("start", "web1"),
    }[operation]
    proc = cli(path, *command) if command else None
    if command is None:
        cluster.fault("web1", Fault.CRASH)
    target = proc.pid if (victim == "cli" and proc is not None) else controller_pid(paths)
    time.sleep(delay_s)
    with contextlib.suppress(ProcessLookupError):
        os.kill(target, signal.SIGKILL)
    if proc is not None:
        with contextlib.suppress(ProcessLookupError):
            finish(proc)
    daemon.stop_background(topology)  # collects a controller this process started, if it is dead


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    operation=st.sampled_from(OPERATIONS),
    victim=st.sampled_from(("cli", "controller")),
    delay_s=st.floats(min_value=0.0, max_value=1.0),
)
def test_crash_anywhere_then_up_and_down_leave_no_unrecorded_process(cluster_dir, operation, victim, delay_s):
    """Whatever was killed when: `up` exits 0 with only recorded processes, `down` leaves none."""
    skip_without_daemons()
    workdir = cluster_dir / f"{operation}-{victim}-{int(delay_s * 1000)}-{time.monotonic_ns()}"
    workdir.mkdir()
    path = make_topology_file(workdir, "standby: {hold: 200ms}")
    paths = StatePaths(workdir / ".relevo")
    try:
        code, err = finish(cli(path, "up"))
        assert code == 0, err
        run_operation(path, operation, victim, delay_s)
        code, err = finish(cli(path, "up"))
        assert code == 0, err
        assert daemon.controller_running(load_topology(path)), "up returned 0 without a controller"
        wait_until(
            lambda: not unnamed(paths),
            "every process of the cluster is recorded",
            timeout_s=5,
            explain=lambda: f": unrecorded {unnamed(paths)}",
        )
        code, err = finish(cli(path, "down"))
        assert code == 0, err
        assert cluster_processes(paths.root) == [], "processes left after down"
    finally:
        with contextlib.suppress(Exception):
            finish(cli(path, "down"))
        kill_leftovers(paths.root)

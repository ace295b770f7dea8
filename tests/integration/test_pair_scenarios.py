"""`relevo scenarios` on a pair of balancers (local provider): the first balancer killed, hung, lost and
stopped then started again under an open-loop load, each against its stated expectation."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import RunningCluster, make_topology_file, start_cluster, stop_cluster

pytestmark = pytest.mark.integration

PAIR = (
    "balancer: {name: ha1, peer: ha2}\nstandby: {hold: 1s}\nhealth: {timeout: 500ms}\n"
    "controller: {probe_timeout: 500ms}\n"
)
# failback-balancer starts the stopped balancer at 4 s, once its planned stop (begun at 1.5 s) is done: under
# two xdist workers that stop once took long enough for a 5.5 s load to end before the start was applied
# ("the load ended before it"), so the pair's runs are 8 s.
SHORT_OPEN = ("--rate", "500", "--duration", "8s")


@pytest.fixture
def pair(cluster_dir: Path) -> Iterator[RunningCluster]:
    running = start_cluster(make_topology_file(cluster_dir, PAIR), controller=True)
    try:
        yield running
    finally:
        stop_cluster(running)


def scenarios(running: RunningCluster, *args: str) -> dict[str, Any]:
    """`relevo -f FILE scenarios --json ARGS` as a user runs it; bounded in time."""
    assert running.topology.source is not None
    argv = [sys.executable, "-m", "relevo", "-f", str(running.topology.source), "scenarios"]
    done = subprocess.run(
        [*argv, "--json", "--no-report", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def test_the_pairs_balancer_faults_meet_their_expectations(pair):
    """kill-balancer, lose-balancer-host (at most one in-flight request per connection lost),
    hang-balancer (measured) and failback-balancer (0 failed: a planned stop is soft): each passes what
    it states."""
    names = "kill-balancer,lose-balancer-host,hang-balancer,failback-balancer"
    data = scenarios(pair, "--only", names, *SHORT_OPEN)
    assert list(data) == names.split(",")
    for name, run in data.items():
        assert run["passed"], (name, run["verdicts"])
    assert data["failback-balancer"]["verdicts"], "failback-balancer states an expectation"

"""Network faults on the local provider (root: iptables rules by the node's loopback address and the
delaying proxy), against real HAProxy, Apache and the controller: a partition fails over and back with no
failed request, a 200 ms delay shows in the measured latency, and after a `relevo scenarios` SIGKILLed
mid-span, `relevo down` leaves no rule, chain, qdisc or proxy of relevo's behind."""

from __future__ import annotations

import http.client
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from relevo import lifecycle
from relevo.providers.base import Fault, Impairment
from relevo.providers.local_impair import cluster_chain_tag

from .conftest import (
    RunningCluster,
    cluster_in_short_dir,
    wait_until,
)
from .test_scenarios import results

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="network faults on the local provider need root"),
]


@pytest.fixture(scope="module")
def cluster() -> Iterator[RunningCluster]:
    """The seed's layout with the controller; short probe and check timeouts and hold (as test_scenarios)."""
    with cluster_in_short_dir() as running:
        yield running


def traces(running: RunningCluster) -> dict[str, list[str]]:
    """What of this cluster's faults the system shows: its iptables chains and rules (`iptables-save`,
    both tables), qdiscs on the interfaces (`tc qdisc show`: relevo adds none locally, and none may
    appear), and listeners of a delaying proxy (`ss -ltnp`)."""
    tag = cluster_chain_tag(running.topology)
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True, timeout=30, check=True).stdout
    qdiscs = subprocess.run(["tc", "qdisc", "show"], capture_output=True, text=True, timeout=30, check=True)
    sockets = subprocess.run(["ss", "-ltnp"], capture_output=True, text=True, timeout=30, check=True).stdout
    network = running.topology.balancer.address.rsplit(".", 1)[0] + "."
    # The controller's metrics and the dashboard are relevo's own python listeners there, not a fault's.
    own = {f":{running.topology.controller.metrics_port} ", f":{running.topology.dashboard.port} "}
    return {
        "iptables": [line for line in rules.splitlines() if tag in line],
        "qdisc": [line for line in qdiscs.stdout.splitlines() if "netem" in line or "tbf" in line],
        "proxies": [
            line
            for line in sockets.splitlines()
            if network in line and "python" in line and not any(port in line for port in own)
        ],
    }


def test_a_partition_fails_over_and_its_heal_fails_back_with_no_failed_request(cluster):
    """partition-web1: web1 cut off for 2.5 s while it keeps running: web1bck serves, 0 failed requests,
    web1 gets its traffic back after the heal; the result says how and when; nothing is left."""
    data = results(cluster, "--only", "partition-web1", "--rate", "500")["partition-web1"]
    assert data["passed"], data["verdicts"]
    assert data["errors"] == 0
    kinds = [e["kind"] for e in data["events"]]
    assert "failover" in kinds and "failback" in kinds
    [span] = [m for m in data["markers"] if m["source"] == "fault"]
    assert span["kind"] == "partition" and span["means"].startswith("iptables")
    assert 1.4 <= span["t_s"] < span["end_t_s"]
    assert traces(cluster) == {"iptables": [], "qdisc": [], "proxies": []}


def latency_ms(running: RunningCluster, node: str, count: int = 20) -> float:
    """The median time of `count` GETs straight to the node on one kept-alive connection (as HAProxy
    sends them), opened once before the first."""
    endpoint = running.cluster.address(node)
    took = []
    connection = http.client.HTTPConnection(endpoint.address, endpoint.port, timeout=5)
    try:
        for _ in range(count):
            began = time.monotonic()
            connection.request("GET", "/")
            connection.getresponse().read()
            took.append((time.monotonic() - began) * 1000)
    finally:
        connection.close()
    return statistics.median(took)


def test_a_200_ms_delay_shows_in_the_measured_latency(cluster):
    """delay 200 ms on web2: the median GET to it takes 200 ms longer (once, not per direction or per
    packet); healed, it does not."""
    before = latency_ms(cluster, "web2")
    means = cluster.cluster.impair("web2", Impairment(fault=Fault.DELAY, ms=200))
    try:
        during = latency_ms(cluster, "web2")
    finally:
        cluster.cluster.heal("web2")
    after = latency_ms(cluster, "web2")
    assert "proxy" in means
    # Bounds with room for a loaded machine (a ±20 ms window was a speed assertion), still far apart:
    # most of the delay at least (before's median may have been the slower one), less than twice the delay,
    # and gone after the heal.
    assert 150 <= during - before < 400, f"before {before:.1f} ms, during {during:.1f} ms"
    assert after < before + 100, f"after the heal {after:.1f} ms (before {before:.1f} ms)"


def test_a_killed_run_leaves_its_faults_to_down_which_removes_every_trace(cluster, tmp_path):
    """`relevo scenarios` SIGKILLed while a partition and a delay are in force leaves them recorded (and
    applied); `relevo down` heals them: no rule, chain, qdisc or proxy of relevo's remains."""
    scenario_file = tmp_path / "s.yaml"
    scenario_file.write_text(
        "scenarios:\n  long:\n    load: {rate: 200, duration: 20s}\n    faults:\n"
        "      - {at: 0.5s, for: 15s, partition: web1}\n"
        "      - {at: 0.5s, for: 15s, delay: web2, ms: 100}\n"
    )
    topology = cluster.topology.source
    assert topology is not None
    run = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "relevo",
            "-f",
            str(topology),
            "scenarios",
            "--scenario-file",
            str(scenario_file),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        records = cluster.cluster.paths.root / "faults"
        wait_until(lambda: len(list(records.glob("*.json"))) == 2, "both faults are recorded", 120)
        wait_until(lambda: len(traces(cluster)["iptables"]) >= 6, "the rules are in place", 30)
    finally:
        os.kill(run.pid, signal.SIGKILL)
        run.wait(30)
    assert traces(cluster)["iptables"], "the killed run's rules were not left for down to heal"
    try:
        lifecycle.down(cluster.topology)
        assert traces(cluster) == {"iptables": [], "qdisc": [], "proxies": []}
        assert not list(records.glob("*.json"))
    finally:
        lifecycle.up(cluster.topology, controller=True)


def test_slow_lossy_and_flapping_network_scenarios_meet_their_expectations(cluster):
    """slow-web2 (every answer of web2 0.6 x the health timeout late for 4 s: `overloaded` journalled, no
    failover, 0 failed), lossy-web1 and flap-network-web1 (measured): each passes its verdicts, the steady
    state before and after included, and each span names its means (netem's absence said beside it)."""
    names = ("slow-web2", "lossy-web1", "flap-network-web1")
    data = results(cluster, "--only", ",".join(names), "--rate", "500")
    assert list(data) == list(names)
    for name in names:
        run = data[name]
        assert run["status"] == "passed", (name, run["verdicts"], run["markers"])
        spans = [m for m in run["markers"] if m["source"] == "fault"]
        assert spans and all("netem" in m["means"] for m in spans), (name, spans)
    assert data["slow-web2"]["errors"] == 0
    assert data["slow-web2"]["failovers"] == []
    assert len([m for m in data["flap-network-web1"]["markers"] if m["source"] == "fault"]) == 3

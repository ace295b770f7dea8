"""Two real HAProxy processes on one frontend (the local provider's pair): both serve, one SIGKILLed under
load costs no request on a new connection, and the controller restarts it with the current states."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from relevo.controller import daemon
from relevo.controller.events import read_events
from relevo.controller.haproxy_view import parse_servers_state
from relevo.errors import RuntimeAPIError
from relevo.haproxy.runtime import AdminState, RuntimeAPI
from relevo.providers.base import Fault
from relevo.services.haproxy import runtime_sockets

from .conftest import RunningCluster, make_topology_file, start_cluster, stop_cluster, wait_until

pytestmark = pytest.mark.integration

PAIR = "balancer: {name: ha1, peer: ha2}\nhealth: {timeout: 500ms}\ncontroller: {probe_timeout: 500ms}\n"
# The load: new connections only, bounded in count and time.
LOAD_THREADS = 4
LOAD_MAX_REQUESTS = 6000
LOAD_MAX_S = 6.0


@pytest.fixture
def pair(cluster_dir: Path) -> Iterator[RunningCluster]:
    """A pair of balancers and the seed's web nodes, with the failover controller."""
    running = start_cluster(make_topology_file(cluster_dir, PAIR), controller=True)
    try:
        ticking = lambda: bool(daemon.controller_status(running.topology)["ticking"])  # noqa: E731
        wait_until(ticking, "the controller ticks")
        yield running
    finally:
        stop_cluster(running)


def runtimes(running: RunningCluster) -> dict[str, RuntimeAPI]:
    return {name: RuntimeAPI(path) for name, path in runtime_sockets(running.topology).items()}


def admin_states(api: RuntimeAPI) -> dict[str, AdminState]:
    return {name: admin for name, (admin, _) in parse_servers_state(api.show_servers_state(), "web").items()}


@dataclass
class Load:
    """GETs on a new connection each, from a few threads; each result kept with its connect time."""

    host: str
    port: int
    results: list[tuple[float, str]] = field(default_factory=list)  # (monotonic connect start, outcome)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        deadline = time.monotonic() + LOAD_MAX_S
        while (
            not self.stop.is_set() and time.monotonic() < deadline and len(self.results) < LOAD_MAX_REQUESTS
        ):
            began = time.monotonic()
            try:
                connection = http.client.HTTPConnection(self.host, self.port, timeout=3)
                connection.request("GET", "/")
                response = connection.getresponse()
                response.read()
                connection.close()
                outcome = "ok" if response.status == 200 else f"status {response.status}"
            except OSError as exc:
                outcome = repr(exc)
            self.results.append((began, outcome))
            time.sleep(0.002)

    def failures_after(self, moment: float) -> list[str]:
        return [outcome for began, outcome in self.results if began >= moment and outcome != "ok"]


def test_both_balancers_serve_the_one_frontend(pair):
    """Fifty new connections to the one frontend address reach both HAProxy processes (SO_REUSEPORT)."""
    frontend = pair.topology.balancer.frontend
    for _ in range(50):
        connection = http.client.HTTPConnection(frontend.address, frontend.port, timeout=3)
        connection.request("GET", "/")
        assert connection.getresponse().status == 200
        connection.close()
    served = {
        name: sum(s.total_requests or 0 for s in api.servers("web").values())
        for name, api in runtimes(pair).items()
    }
    assert all(count > 0 for count in served.values()), served
    assert sum(served.values()) >= 50


@pytest.mark.parametrize("victim", ["ha2", "ha1"])
def test_a_killed_balancer_costs_no_new_connection_and_returns_with_the_states(pair, victim):
    """web1 is failed over first (its standby READY, which the configuration starts in MAINT, and web1
    MAINT); then one
    HAProxy is SIGKILLed under load: no request on a connection opened after the kill fails, and the
    controller restarts it, answering from its first read with the survivor's admin states."""
    topology = pair.topology
    apis = runtimes(pair)
    pair.cluster.fault("web1", Fault.CRASH)
    failed_over = {"web1": AdminState.MAINT, "web1bck": AdminState.READY}
    wait_until(
        lambda: all(failed_over.items() <= admin_states(api).items() for api in apis.values()),
        "both balancers have web1bck in service and web1 in maint",
    )
    survivor = next(name for name in apis if name != victim)
    expected = admin_states(apis[survivor])

    frontend = topology.balancer.frontend
    load = Load(frontend.address, frontend.port)
    threads = [threading.Thread(target=load.run) for _ in range(LOAD_THREADS)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        pair.cluster.fault(victim, Fault.CRASH)  # returns once its processes are gone
        killed_at = time.monotonic()
        first: dict[str, AdminState] = {}

        def answers() -> bool:
            try:
                first.update(admin_states(apis[victim]))
            except RuntimeAPIError:
                return False
            return True

        wait_until(answers, f"the controller restarts {victim}", timeout_s=15)
        time.sleep(0.5)
    finally:
        load.stop.set()
        for thread in threads:
            thread.join()
    assert load.failures_after(killed_at) == []
    assert len([r for r in load.results if r[0] >= killed_at]) > 50  # the load went on past the kill
    assert first == expected, f"{victim} started from {first}, the survivor has {expected}"
    restarts = [
        e for e in read_events(pair.cluster.paths.events) if e["kind"] == "action" and e["node"] == victim
    ]
    assert restarts and "restart" in restarts[-1]["reason"]


def test_status_json_lists_both_balancers(pair):
    """`relevo status --json` shows ha1 and ha2 as running balancers answering, each with its stats page,
    both on the one frontend."""
    assert pair.topology.source is not None
    done = subprocess.run(
        [sys.executable, "-m", "relevo", "-f", str(pair.topology.source), "status", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    report = json.loads(done.stdout)
    balancers = [n for n in report["nodes"] if n["role"] == "balancer"]
    assert [(n["name"], n["state"], n["health"]) for n in balancers] == [
        ("ha1", "running", "UP"),
        ("ha2", "running", "UP"),
    ]
    assert len({n["address"] for n in balancers}) == 1  # one frontend
    listed = {b["name"]: b for b in report["balancers"]}
    assert set(listed) == {"ha1", "ha2"}
    assert listed["ha1"]["stats_url"] != listed["ha2"]["stats_url"]
    assert listed["ha1"]["frontend_url"] == listed["ha2"]["frontend_url"]

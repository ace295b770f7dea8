"""The failover controller against real HAProxy and Apache, under load counted at the client.

The load is relevo's own engine, driven through its handle: started before the fault, watched second by
second (which server answered, from X-Served-By), stopped after. A closed loop (100 keep-alive users,
each pausing 0.1 s between requests) sends nothing while its request stalls, so it hides failures; an
open loop (a fixed arrival rate, whatever the answers do) does not. A request has failed when it got no
answer within the client's timeout, a broken connection, or a status other than 2xx/3xx. HAProxy does not
log a request cut off by a dying server: only the client can count it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time

import pytest

from relevo.controller import daemon
from relevo.controller.events import read_events
from relevo.controller.haproxy_view import parse_servers_state
from relevo.errors import RuntimeAPIError
from relevo.haproxy.runtime import AdminState
from relevo.loadgen import engine
from relevo.loadgen.engine import LoadRun, RunResult
from relevo.loadgen.plan import simple_plan
from relevo.procs import ProcessRecord, is_ours
from relevo.providers.base import Fault, NodeState
from relevo.supervisor import SUPERVISOR

from .conftest import RunningCluster, wait_until

pytestmark = pytest.mark.integration


# --- helpers ----------------------------------------------------------------------------------------------
def diagnose(running: RunningCluster) -> str:
    """What the controller did and saw, for a failure message."""
    paths = running.cluster.paths
    lines = [json.dumps(e) for e in read_events(paths.events, 40)]
    with contextlib.suppress(OSError):
        lines += ["--- controller log:", *paths.controller_log.read_text().splitlines()[-30:]]
    with contextlib.suppress(Exception):
        lines += ["--- HAProxy:", repr(admin(running))]
    lines += ["--- controller status:", repr(daemon.controller_status(running.topology))]
    lines += ["--- children:", repr(SUPERVISOR.children())]
    return "\n" + "\n".join(lines)


def admin(running: RunningCluster) -> dict[str, tuple[AdminState, bool]]:
    """Each server's (admin state, operationally up) as HAProxy has it now."""
    return parse_servers_state(running.cluster.runtime.show_servers_state(), "web")


def in_service(running: RunningCluster, server: str) -> bool:
    state, up = admin(running).get(server, (AdminState.MAINT, False))
    return state is AdminState.READY and up


RATE_RPS = 1000.0
MAX_LOAD_S = 60.0  # a bound: every test stops its load well before
CLIENT_TIMEOUT_S = 10.0  # far above HAProxy's `timeout server` + retries: a stall, not a slow answer


def load_for(running: RunningCluster, *, open_loop: bool) -> LoadRun:
    """About 1000 requests per second to the frontend, open or closed loop, on one worker."""
    url = running.frontend_url
    if open_loop:
        plan = simple_plan(
            url, threads=1000, rate_rps=RATE_RPS, duration_s=MAX_LOAD_S, timeout_s=CLIENT_TIMEOUT_S
        )
    else:
        plan = simple_plan(
            url, threads=100, loops=None, duration_s=MAX_LOAD_S, think_s=0.1, timeout_s=CLIENT_TIMEOUT_S
        )
    return engine.start(plan, workers=1)


def served(load: LoadRun, node: str) -> int:
    """Answers from `node` so far."""
    return sum(s.served_by.get(node, 0) for s in load.seconds())


def seconds_served(load: LoadRun, node: str) -> list[int]:
    """The seconds of the run (from its start) in which `node` answered."""
    return [s.second for s in load.seconds() if s.served_by.get(node, 0)]


def warm_up(load: LoadRun, running: RunningCluster) -> None:
    wait_until(
        lambda: served(load, "web1") > 50 and served(load, "web2") > 50,
        "both primaries serve the load",
    )


def finish(load: LoadRun) -> RunResult:
    load.stop()
    return load.wait(timeout_s=CLIENT_TIMEOUT_S + 5)


JUDGED_SAMPLES = 1000


def enough_to_judge(load: LoadRun) -> bool:
    """Whether the load has had answers enough for `assert_no_failures` to mean something."""
    return sum(s.requests for s in load.seconds()) > JUDGED_SAMPLES


def assert_no_failures(result: RunResult) -> None:
    """No request sent failed. Requests the open loop dropped are not counted as failures: they were never
    sent (all 1000 connections were still busy when the load stopped, as on a loaded machine where the
    generator and the cluster share two starved cores), so they say nothing of the cluster; the answered
    samples do, and there must be enough of those."""
    total = result.stats.total()
    sent = f"{total.count} samples, {total.dropped} never sent"
    assert total.count > JUDGED_SAMPLES, f"too little traffic to judge: {sent}"
    assert total.errors == 0, f"{total.errors} failed requests: {total.error_kinds} ({sent})"


# --- the cases --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("open_loop", [False, True], ids=["closed-loop", "open-loop"])
def test_killed_primary_is_replaced_without_a_failed_request(controlled, open_loop):
    """SIGKILL web1 under load: web1bck is started and serves, and no client request fails."""
    with load_for(controlled, open_loop=open_loop) as load:
        warm_up(load, controlled)
        controlled.cluster.fault("web1", Fault.CRASH)
        killed_second = int(load.elapsed_s())
        wait_until(
            lambda: served(load, "web1bck") > 0,
            "web1bck answers clients",
            explain=lambda: diagnose(controlled),
        )
        assert in_service(controlled, "web1bck")
        assert admin(controlled)["web1"][0] is AdminState.MAINT
        served_after_kill = served(load, "web2")
        wait_until(
            lambda: served(load, "web2") > served_after_kill and enough_to_judge(load),
            "web2 still serves its share, and traffic enough to judge",
        )
        result = finish(load)
    assert min(seconds_served(load, "web1bck")) >= killed_second
    assert served(load, "web2") > served_after_kill, "web2 stopped serving its share"
    assert_no_failures(result)
    failovers = [e for e in daemon.recent_events(controlled.topology, 50) if e["kind"] == "failover"]
    assert [e["node"] for e in failovers] == ["web1bck"]


@pytest.mark.parametrize("open_loop", [False, True], ids=["closed-loop", "open-loop"])
def test_restarted_primary_gets_its_traffic_back_without_a_failed_request(controlled, open_loop):
    """`start web1` after a failover: traffic returns to web1, web1bck is drained and stopped, and no
    client request fails."""
    topology = controlled.topology
    controlled.cluster.fault("web1", Fault.CRASH)
    wait_until(lambda: in_service(controlled, "web1bck"), "web1bck is in service")
    with load_for(controlled, open_loop=open_loop) as load:
        wait_until(lambda: served(load, "web1bck") > 50, "web1bck serves the load")
        controlled.cluster.start("web1")
        wait_until(
            lambda: controlled.cluster.status("web1bck") is NodeState.STOPPED,
            "web1bck is drained and stopped",
            timeout_s=topology.standby.hold_s + 20,
        )
        back_second = int(load.elapsed_s())
        wait_until(
            lambda: max(seconds_served(load, "web1"), default=-1) > back_second and enough_to_judge(load),
            "web1 serves again, and traffic enough to judge",
        )
        result = finish(load)
    assert max(seconds_served(load, "web1")) > back_second, "web1 does not serve after the failback"
    assert max(seconds_served(load, "web1bck")) <= back_second, "web1bck served after it was stopped"
    assert admin(controlled)["web1bck"][0] is AdminState.MAINT
    assert in_service(controlled, "web1")
    assert_no_failures(result)
    steps = [
        (e["node"], e["to"])
        for e in daemon.recent_events(topology, 50, include_actions=True)
        if e["kind"] == "action" and e["node"] in ("web1", "web1bck")
    ]
    tail = steps[steps.index(("web1", "ready")) :]
    assert [s for s in tail if s[1] in ("ready", "drain", "maint", "stopped")] == [
        ("web1", "ready"),
        ("web1bck", "drain"),
        ("web1bck", "maint"),
        ("web1bck", "stopped"),
    ]


def test_hung_primary_is_replaced_without_a_failed_request(controlled):
    """SIGSTOP web2 (a hang): detected, web2bck serves in its place, and no client request fails."""
    try:
        with load_for(controlled, open_loop=True) as load:
            warm_up(load, controlled)
            controlled.cluster.fault("web2", Fault.HANG)
            wait_until(
                lambda: served(load, "web2bck") > 0,
                "web2bck answers clients",
                explain=lambda: diagnose(controlled),
            )
            assert admin(controlled)["web2"][0] is AdminState.MAINT
            time.sleep(1.5)
            result = finish(load)
    finally:
        controlled.cluster.fault("web2", Fault.RESUME)
    assert_no_failures(result)
    downs = [
        e
        for e in daemon.recent_events(controlled.topology, 50)
        if e["kind"] == "health" and e["node"] == "web2" and e["to"] == "down"
    ]
    assert downs, "the hang was never reported"


def test_controller_killed_mid_failover_and_restarted_converges(controlled):
    """The controller SIGKILLed right after it started web1bck, then started again: web1bck serves (not
    started twice), web1 is in maint, and no client request fails meanwhile."""
    topology = controlled.topology
    paths = controlled.cluster.paths
    with load_for(controlled, open_loop=True) as load:
        warm_up(load, controlled)
        controlled.cluster.fault("web1", Fault.CRASH)
        wait_until(lambda: controlled.cluster.status("web1bck") is NodeState.RUNNING, "web1bck is started")
        record = ProcessRecord.load(paths.controller_pid)
        assert record is not None
        os.kill(record.pid, signal.SIGKILL)
        wait_until(lambda: not is_ours(record), "the controller is dead")
        assert daemon.stop_background(topology) is False  # reaps it; it was not running any more
        standby = ProcessRecord.load(paths.pid_file("web1bck"))
        daemon.start_background(topology)
        wait_until(
            lambda: in_service(controlled, "web1bck") and admin(controlled)["web1"][0] is AdminState.MAINT,
            "the new controller completes the failover",
            explain=lambda: diagnose(controlled),
        )
        wait_until(
            lambda: served(load, "web1bck") > 0,
            "web1bck answers clients",
            explain=lambda: diagnose(controlled),
        )
        time.sleep(1.5)
        result = finish(load)
    assert ProcessRecord.load(paths.pid_file("web1bck")) == standby, "web1bck was started twice"
    assert_no_failures(result)


def test_controller_killed_mid_drain_and_restarted_converges(controlled):
    """The controller SIGKILLed while web1bck drains, then started again: web1bck ends stopped and in
    maint, web1 in service."""
    topology = controlled.topology
    paths = controlled.cluster.paths
    controlled.cluster.fault("web1", Fault.CRASH)
    wait_until(lambda: in_service(controlled, "web1bck"), "web1bck is in service")
    controlled.cluster.start("web1")
    wait_until(
        lambda: admin(controlled)["web1bck"][0] is not AdminState.READY,
        "the failback begins",
        timeout_s=topology.standby.hold_s + 20,
    )
    record = ProcessRecord.load(paths.controller_pid)
    assert record is not None
    os.kill(record.pid, signal.SIGKILL)
    daemon.stop_background(topology)
    daemon.start_background(topology)
    wait_until(
        lambda: controlled.cluster.status("web1bck") is NodeState.STOPPED,
        "web1bck is stopped",
        timeout_s=topology.standby.hold_s + 20,
        explain=lambda: diagnose(controlled),
    )
    assert in_service(controlled, "web1")
    assert admin(controlled)["web1bck"][0] is AdminState.MAINT


def test_relevo_up_runs_one_controller_and_down_stops_it(running_cluster):
    """`start_background` twice runs one controller (the lock); `stop_background` ends it."""
    topology = running_cluster.topology
    try:
        first = daemon.start_background(topology)
        assert daemon.start_background(topology) == first
        with pytest.raises(daemon.ControllerRunningError):
            daemon.run_foreground(topology)
        assert daemon.controller_status(topology)["pid"] == first
    finally:
        assert daemon.stop_background(topology) is True
    assert daemon.controller_status(topology)["running"] is False
    with contextlib.suppress(ProcessLookupError):
        os.kill(first, 0)
        pytest.fail("the controller is still running")


def test_dead_haproxy_is_restarted_with_its_server_states(controlled):
    """HAProxy SIGKILLed after a failover: the controller restarts it, and the standby still serves in
    place of the dead primary."""
    balancer = controlled.topology.balancer.name
    pid_file = controlled.cluster.paths.pid_file(balancer)
    controlled.cluster.fault("web1", Fault.CRASH)

    def saved() -> bool:
        # The failover done and saved: a kill between its commands and the save is another case (the
        # controller sets the states again: tests/unit/controller/test_truth.py).
        with contextlib.suppress(OSError, RuntimeAPIError):
            states = parse_servers_state(controlled.cluster.paths.server_state.read_text(), "web")
            return states["web1"][0] is AdminState.MAINT and states["web1bck"][0] is AdminState.READY
        return False

    wait_until(
        lambda: in_service(controlled, "web1bck") and saved(),
        "web1bck is in service and the server states are saved",
        explain=lambda: diagnose(controlled),
    )
    before = ProcessRecord.load(pid_file)
    controlled.cluster.fault(balancer, Fault.CRASH)

    def serving_again() -> bool:
        record = ProcessRecord.load(pid_file)
        if record is None or record == before or not is_ours(record):
            return False
        with contextlib.suppress(Exception):
            return in_service(controlled, "web1bck") and controlled.get()[0] == 200
        return False

    wait_until(
        serving_again, "a new HAProxy serves with web1bck in service", explain=lambda: diagnose(controlled)
    )
    assert admin(controlled)["web1"][0] is AdminState.MAINT

    def restarts() -> list[dict[str, object]]:
        return [
            e
            for e in daemon.recent_events(controlled.topology, 50, include_actions=True)
            if e["node"] == balancer and e["to"] == "running"
        ]

    # The restart runs off the tick: it is journalled by the tick after it finished.
    wait_until(restarts, "the restart of HAProxy is journalled", explain=lambda: diagnose(controlled))

"""The controller against a fake cluster and a fake clock: every failover path, tick by tick."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from relevo.controller.actions import Done
from relevo.controller.state import ControlAction
from relevo.haproxy.runtime import AdminState
from relevo.providers.base import NodeState

from .fakes import StepRunner, World, controller, events, run, topology


@pytest.fixture
def topo(tmp_path: Path):
    return topology(tmp_path)


def failed_over(world: World, primary: str = "web1", standby: str = "web1bck") -> bool:
    return (
        world.nodes[standby].process is NodeState.RUNNING
        and world.servers[standby].admin is AdminState.READY
        and world.servers[standby].up
        and world.servers[primary].admin is AdminState.MAINT
    )


def back_to_normal(world: World, primary: str = "web1", standby: str = "web1bck") -> bool:
    return (
        world.servers[primary].admin is AdminState.READY
        and world.servers[standby].admin is AdminState.MAINT
        and world.nodes[standby].process is NodeState.STOPPED
    )


def test_quiet_cluster_needs_no_action(topo):
    """A healthy cluster with stopped cold standbys makes the controller do nothing at all but write the
    settled server states once, at its start."""
    world = World.seed(topo)
    run(world, controller(topo, world), 5)
    assert world.calls == [("save", "", "")]


def test_killed_primary_is_replaced_by_its_standby(topo):
    """A dead primary: its standby is started, put in service at once, and the primary put in maint."""
    world = World.seed(topo)
    ctl = controller(topo, world)
    run(world, ctl, 1)
    world.nodes["web1"].process = NodeState.STOPPED
    run(world, ctl, 0.4)
    assert failed_over(world)
    assert world.starts["web1bck"] == 1
    assert world.serving() == {"web2", "web1bck"}
    # ready, then health up without waiting for HAProxy's rise, then the primary into maint.
    assert world.verbs("web1bck")[1:] == [("set-state", "ready"), ("health-up", "")]
    assert ("set-state", "maint") in world.verbs("web1")
    (failover,) = events(topo, "failover")
    assert failover["node"] == "web1bck"
    assert set(failover["durations"]) == {"detection_s", "until_served_s", "standby_start_s"}


def test_standby_is_up_in_haproxy_the_tick_it_is_made_ready(topo):
    """The standby is forced up with its `ready`, not left to HAProxy's `rise` checks (most of the wait)."""
    world = World.seed(topo)
    ctl = controller(topo, world)
    run(world, ctl, 1)
    world.nodes["web1"].process = NodeState.STOPPED
    for _ in range(10):
        ctl.tick()  # no HAProxy checks in between: only the controller can bring it up
        if world.servers["web1bck"].admin is AdminState.READY:
            break
        world.clock.now += 0.1
    assert world.servers["web1bck"].admin is AdminState.READY
    assert world.serving() == {"web2", "web1bck"}


def test_recovered_primary_gets_traffic_back_after_the_hold(topo):
    """Failback waits for the hold time, then ready primary -> drain standby -> maint -> stop, in order."""
    world = World.seed(topo)
    ctl = controller(topo, world)
    run(world, ctl, 1)
    world.nodes["web1"].process = NodeState.STOPPED
    run(world, ctl, 1)
    world.nodes["web1"].process = NodeState.RUNNING
    run(world, ctl, 2)
    assert failed_over(world), "failback before the hold time"
    run(world, ctl, 2)
    assert back_to_normal(world)
    assert world.stops["web1bck"] == 1
    order = [(v, n, a) for v, n, a in world.calls if v in ("set-state", "stop")][-4:]
    assert order == [
        ("set-state", "web1", "ready"),
        ("set-state", "web1bck", "drain"),
        ("set-state", "web1bck", "maint"),
        ("stop", "web1bck", ""),
    ]


def test_standby_keeps_serving_until_haproxy_has_the_primary_up(topo):
    """During failback the pair always has a server in service: the standby is drained only once
    HAProxy itself has the primary up (here `health up` fails, so HAProxy's own checks must rise)."""
    world = World.seed(topo)
    ctl = controller(topo, world)
    world.nodes["web1"].process = NodeState.STOPPED
    run(world, ctl, 1)
    world.nodes["web1"].process = NodeState.RUNNING
    world.refused.add(("health-up", "web1"))
    for _ in range(50):
        run(world, ctl, 0.1)
        assert world.serving() & {"web1", "web1bck"}, f"nothing serves web1's share at {world.clock.now}"
    assert back_to_normal(world)


def test_drain_waits_for_sessions_to_end(topo):
    """A draining standby is stopped only once its sessions reach zero."""
    world = World.seed(topo)
    ctl = controller(topo, world)
    world.nodes["web1"].process = NodeState.STOPPED
    run(world, ctl, 1)
    world.servers["web1bck"].sessions = 3
    world.nodes["web1"].process = NodeState.RUNNING
    run(world, ctl, 3.6)
    assert world.servers["web1bck"].admin is AdminState.DRAIN
    run(world, ctl, 1)
    assert world.servers["web1bck"].admin is AdminState.DRAIN, "gave up before drain_timeout"
    world.servers["web1bck"].sessions = 0
    run(world, ctl, 0.3)
    assert back_to_normal(world)


def test_drain_wait_is_bounded(topo):
    """Sessions that never end hold the drain only for drain_timeout, then the standby is stopped."""
    world = World.seed(topo)
    ctl = controller(topo, world)
    world.nodes["web1"].process = NodeState.STOPPED
    run(world, ctl, 1)
    world.servers["web1bck"].sessions = 7
    world.nodes["web1"].process = NodeState.RUNNING
    run(world, ctl, 7)
    assert back_to_normal(world)
    (drained,) = events(topo, "drained")
    assert "gave up waiting for 7 sessions" in str(drained["reason"])


def test_flapping_primary_does_not_start_and_stop_the_standby_in_a_loop(topo):
    """A primary failing every other second gets its standby started once, kept, and no failback."""
    world = World.seed(topo)
    ctl = controller(topo, world)
    run(world, ctl, 1)
    for _ in range(10):
        world.nodes["web1"].serves = False
        run(world, ctl, 1)
        world.nodes["web1"].serves = True
        run(world, ctl, 1)
    assert world.starts["web1bck"] == 1
    assert world.stops["web1bck"] == 0
    assert failed_over(world)
    run(world, ctl, 4)
    assert back_to_normal(world)


def test_hang_the_provider_cannot_see_is_found_by_probe_timeouts(topo):
    """A running but silent primary (probes time out) is DOWN after `fall` probes and replaced."""
    world = World.seed(topo)
    ctl = controller(topo, world)
    run(world, ctl, 1)
    world.nodes["web2"].hung = True
    run(world, ctl, 0.1)
    assert not failed_over(world, "web2", "web2bck"), "one slow probe is not `fall` failures"
    run(world, ctl, 0.5)
    assert failed_over(world, "web2", "web2bck")


def test_paused_primary_is_down_at_once(topo):
    """A primary whose processes are all SIGSTOPped is DOWN on the next tick: the provider knows."""
    world = World.seed(topo)
    ctl = controller(topo, world)
    run(world, ctl, 1)
    world.nodes["web2"].process = NodeState.PAUSED
    run(world, ctl, 0.1)
    assert world.starts["web2bck"] == 1


def test_both_primaries_down_start_both_standbys(topo):
    """With both primaries dead, both standbys serve and both primaries are in maint."""
    world = World.seed(topo)
    ctl = controller(topo, world)
    run(world, ctl, 1)
    world.nodes["web1"].process = NodeState.STOPPED
    world.nodes["web2"].process = NodeState.STOPPED
    run(world, ctl, 0.5)
    assert failed_over(world, "web1", "web1bck")
    assert failed_over(world, "web2", "web2bck")
    assert world.serving() == {"web1bck", "web2bck"}


def test_standby_that_never_answers_is_reported_and_retried_with_backoff(topo):
    """A standby with no passing probe is reported, stopped, and retried after growing backoffs only."""
    world = World.seed(topo)
    ctl = controller(topo, world)
    world.nodes["web1bck"].serves = False
    run(world, ctl, 1)
    world.nodes["web1"].process = NodeState.STOPPED
    run(world, ctl, 60)
    failures = events(topo, "standby-failed")
    assert failures and failures[0]["node"] == "web1bck"
    # Start timeout 10 s, backoff 1, 2, 4, 8 ... s: a handful of attempts in a minute, no tight loop.
    assert 2 <= world.starts["web1bck"] <= 5
    assert world.servers["web1"].admin is AdminState.READY, "primary left in maint with nothing in its place"
    assert world.servers["web1bck"].admin is AdminState.MAINT


def test_standby_start_error_is_reported_and_backed_off(topo):
    """A provider error on start counts as a standby failure: reported, then retried after a backoff."""
    world = World.seed(topo)
    ctl = controller(topo, world)
    world.nodes["web1bck"].start_error = True
    world.nodes["web1"].process = NodeState.STOPPED
    run(world, ctl, 0.5)
    assert world.starts["web1bck"] == 1
    assert [e["node"] for e in events(topo, "standby-failed")] == ["web1bck"]
    assert events(topo, "action-failed")
    world.nodes["web1bck"].start_error = False
    run(world, ctl, 1.5)
    assert failed_over(world)


def test_standby_that_dies_while_serving_is_taken_out(topo):
    """A serving standby that dies is reported, put back in maint, and its primary released from maint."""
    world = World.seed(topo)
    ctl = controller(topo, world)
    world.nodes["web1"].process = NodeState.STOPPED
    run(world, ctl, 1)
    assert failed_over(world)
    world.nodes["web1bck"].process = NodeState.STOPPED
    run(world, ctl, 0.2)
    assert world.servers["web1bck"].admin is AdminState.MAINT
    assert world.servers["web1"].admin is AdminState.READY
    assert "stopped answering while serving" in str(events(topo, "standby-failed")[0]["reason"])


@pytest.mark.parametrize("cut_after", [0.1, 0.2, 0.3, 0.5, 1.0])
def test_controller_restarted_mid_failover_converges_without_duplicate_start(topo, cut_after):
    """A new controller (fresh memory) taking over at any point of a failover ends in the same state."""
    world = World.seed(topo)
    first = controller(topo, world)
    run(world, first, 1)
    world.nodes["web1"].process = NodeState.STOPPED
    run(world, first, cut_after)
    second = controller(topo, world)
    run(world, second, 1)
    assert failed_over(world)
    assert world.starts["web1bck"] == 1


@pytest.mark.parametrize("cut_after", [3.1, 3.2, 3.3, 3.4, 3.6, 4.0])
def test_controller_restarted_mid_failback_converges(topo, cut_after):
    """A new controller taking over during a failback (mid-drain included) finishes it: no standby left
    running for the healthy primary, no primary left in maint."""
    world = World.seed(topo)
    first = controller(topo, world)
    world.nodes["web1"].process = NodeState.STOPPED
    run(world, first, 1)
    world.servers["web1bck"].sessions = 2
    world.nodes["web1"].process = NodeState.RUNNING
    run(world, first, cut_after)
    world.servers["web1bck"].sessions = 0
    second = controller(topo, world)
    run(world, second, 4)
    assert back_to_normal(world)
    assert world.starts["web1bck"] == 1


def test_new_controller_releases_a_healthy_primary_left_in_maint(topo):
    """A primary a previous controller put in maint (its saved record says so), with nothing serving in
    its place, is put back at once, without the hold."""
    world = World.seed(topo)
    world.servers["web1"].admin = AdminState.MAINT
    topo.state_dir.mkdir(parents=True)
    (topo.state_dir / "controller-owned.json").write_text('{"owned": {"web1": "maint"}, "manual": []}')
    ctl = controller(topo, world)
    run(world, ctl, 0.3)
    assert world.servers["web1"].admin is AdminState.READY
    assert world.starts["web1bck"] == 0


def test_new_controller_stops_a_standby_left_running_for_a_healthy_primary(topo):
    """A cold standby running in maint while its primary is healthy is stopped once the hold has passed."""
    world = World.seed(topo)
    world.nodes["web2bck"].process = NodeState.RUNNING
    ctl = controller(topo, world)
    run(world, ctl, 4)
    assert world.nodes["web2bck"].process is NodeState.STOPPED
    assert world.verbs("web2bck") == [("stop", "")]


def test_warm_standby_runs_in_maint_and_fails_over_without_a_start(tmp_path):
    """Warm: standbys run all the time in maint; failover is Runtime API calls only; failback keeps it."""
    topo = topology(tmp_path, "standby: {temperature: warm}")
    world = World.seed(topo, warm=True)
    ctl = controller(topo, world)
    run(world, ctl, 1)
    world.nodes["web1"].process = NodeState.STOPPED
    run(world, ctl, 0.2)
    assert failed_over(world)
    assert world.starts["web1bck"] == 0
    world.nodes["web1"].process = NodeState.RUNNING
    run(world, ctl, 4)
    assert world.servers["web1bck"].admin is AdminState.MAINT
    assert world.nodes["web1bck"].process is NodeState.RUNNING
    assert world.stops["web1bck"] == 0


def test_warm_standby_that_is_not_running_is_started(tmp_path):
    """A warm standby found stopped is started even while its primary is healthy."""
    topo = topology(tmp_path, "standby: {temperature: warm}")
    world = World.seed(topo, warm=True)
    world.nodes["web2bck"].process = NodeState.STOPPED
    run(world, controller(topo, world), 0.3)
    assert world.nodes["web2bck"].process is NodeState.RUNNING
    assert world.servers["web2bck"].admin is AdminState.MAINT


def test_pool_mode_only_starts_and_stops_processes(tmp_path):
    """Pool mode: HAProxy's `backup` routes; the controller starts and stops standbys, never sets states."""
    topo = topology(tmp_path, "standby: {mode: pool}")
    world = World.seed(topo, pool=True)
    ctl = controller(topo, world)
    run(world, ctl, 1)
    world.nodes["web1"].process = NodeState.STOPPED
    run(world, ctl, 0.5)
    assert world.nodes["web1bck"].process is NodeState.RUNNING
    world.servers["web1bck"].sessions = 1
    world.nodes["web1"].process = NodeState.RUNNING
    run(world, ctl, 4)
    assert world.nodes["web1bck"].process is NodeState.RUNNING, "stopped a backup with sessions"
    world.servers["web1bck"].sessions = 0
    run(world, ctl, 0.3)
    assert world.nodes["web1bck"].process is NodeState.STOPPED
    assert not [c for c in world.calls if c[0] in ("set-state", "health-up")]


def test_on_failure_restarts_a_dead_primary_with_exponential_backoff(tmp_path):
    """restart: on-failure restarts a dead primary at growing intervals, then fails back once it lives."""
    topo = topology(tmp_path, "standby: {restart: on-failure}")
    world = World.seed(topo)
    ctl = controller(topo, world)
    run(world, ctl, 1)
    world.nodes["web1"].dies_on_start = True
    world.nodes["web1"].process = NodeState.STOPPED
    times = []
    for _ in range(200):
        before = world.starts["web1"]
        run(world, ctl, 0.1)
        if world.starts["web1"] > before:
            times.append(world.clock.now)
    gaps = [round(b - a, 1) for a, b in itertools.pairwise(times)]
    assert gaps[:4] == [1.0, 2.0, 4.0, 8.0]
    assert failed_over(world)
    world.nodes["web1"].dies_on_start = False
    run(world, ctl, 25)
    assert back_to_normal(world)


def test_never_policy_leaves_a_dead_primary_alone(topo):
    """restart: never (the default) never starts a primary: the standby serves until someone does."""
    world = World.seed(topo)
    ctl = controller(topo, world)
    world.nodes["web1"].process = NodeState.STOPPED
    run(world, ctl, 10)
    assert world.starts["web1"] == 0
    assert failed_over(world)


def test_dead_haproxy_is_restarted_and_standbys_still_start(topo):
    """With HAProxy dead, the standby is started anyway, HAProxy restarted, and the failover completed."""
    world = World.seed(topo)
    ctl = controller(topo, world)
    run(world, ctl, 1)
    world.haproxy_alive = False
    world.balancer_process = NodeState.STOPPED
    world.nodes["web1"].process = NodeState.STOPPED
    ctl.tick()
    assert world.starts["ha1"] == 1
    assert world.starts["web1bck"] == 1
    run(world, ctl, 0.5)
    assert failed_over(world)


def test_runtime_api_errors_are_retried_and_never_fatal(topo):
    """Runtime API commands that fail are retried after a backoff; the failover still completes."""
    world = World.seed(topo)
    ctl = controller(topo, world)
    run(world, ctl, 1)
    world.nodes["web1"].process = NodeState.STOPPED
    world.runtime_errors = 6
    run(world, ctl, 3)
    assert failed_over(world)


def test_provider_status_errors_are_unknown_not_fatal(topo):
    """A provider that cannot tell a node's state for a while is waited out, not acted upon."""
    world = World.seed(topo)
    ctl = controller(topo, world)
    world.nodes["web1"].process = NodeState.STOPPED
    world.status_errors = 10**6
    run(world, ctl, 1)
    world.status_errors = 0
    run(world, ctl, 0.5)
    assert failed_over(world)


def test_status_file_shows_the_controller_view(topo):
    """Each tick writes the controller's view: health, HAProxy admin state, failures."""
    import json

    world = World.seed(topo)
    ctl = controller(topo, world)
    world.nodes["web1"].process = NodeState.STOPPED
    run(world, ctl, 0.5)
    state = json.loads((topo.state_dir / "controller-state.json").read_text())
    assert state["nodes"]["web1"]["health"] == "down"
    assert state["nodes"]["web1bck"]["admin"] == "ready"
    assert state["haproxy"] is True


class ReportsLate(StepRunner):
    """A provider start that takes effect at once but whose return the controller hears of only later
    (the real runner's thread finishes between the tick's harvest and its probes): the standby is seen
    serving before its start has been reported."""

    def submit(self, action: ControlAction) -> bool:
        if action.node in self.running:
            return False
        self.run(action, self.world.clock.now)
        self.running[action.node] = (action, self.world.clock.now, False)
        return True

    def harvest(self) -> list[Done]:
        now = self.world.clock.now
        done = []
        for node, (action, began, _) in list(self.running.items()):
            if now - began >= 0.3 - 1e-9:
                del self.running[node]
                done.append(Done(action=action, began=began, ended=now))
        return done


def test_kill_both_journals_each_failover_in_the_order_it_happened(topo):
    """Both primaries killed, the standbys up before their starts are reported: for each, the journal
    reads failover-started, its start stopped -> starting -> running, then failover (never failover
    first, never `running -> running`); a kill's `detected` is 0 and its reason names the evidence."""
    world = World.seed(topo)
    ctl = controller(topo, world)
    late = ReportsLate(world, ctl.perform)
    ctl.runner = late
    run(world, ctl, 1)
    world.nodes["web1"].process = NodeState.STOPPED
    world.nodes["web2"].process = NodeState.STOPPED
    run(world, ctl, 1.0)
    assert failed_over(world, "web1", "web1bck") and failed_over(world, "web2", "web2bck")
    journal = events(topo)
    for primary, standby in (("web1", "web1bck"), ("web2", "web2bck")):
        kinds = [
            (e["kind"], e["from"], e["to"])
            for e in journal
            if (e["node"] == primary and e["kind"] == "failover-started")
            or (e["node"] == standby and e["kind"] == "failover")
            or (e["node"] == standby and e["kind"] == "action" and e["reason"].startswith("start:"))
        ]
        started = kinds.index(("failover-started", "down", "failing-over"))
        starting = kinds.index(("action", "stopped", "starting"))
        running = kinds.index(("action", "starting", "running"))
        failover = next(i for i, k in enumerate(kinds) if k[0] == "failover")
        assert started < starting < running and started < failover, kinds
        assert not any(k[1:] == ("running", "running") for k in kinds), kinds
        (event,) = [e for e in journal if e["kind"] == "failover" and e["node"] == standby]
        assert event["durations"]["detection_s"] == 0
        assert "process stopped" in event["reason"]
    stamps = [e["ts"] for e in journal]
    assert stamps == sorted(stamps), "the journal is in the order things happened"

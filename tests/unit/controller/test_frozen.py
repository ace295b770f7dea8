"""Frozen standbys tick by tick on the in-memory cluster: frozen once ready, thawed and in service on a
failover, frozen again after failback, a standby dying mid-thaw, and a controller restarted mid-thaw."""

from __future__ import annotations

from pathlib import Path

import pytest

from relevo.haproxy.runtime import AdminState
from relevo.providers.base import Fault, NodeState

from .fakes import World, controller, events, run, topology


@pytest.fixture
def topo(tmp_path: Path):
    return topology(tmp_path, "standby: {temperature: frozen, hold: 1s}")


def rested(world: World, ctl) -> None:
    """`relevo up` started the standbys; the controller freezes them once their probes pass."""
    run(world, ctl, 1.0)
    assert world.nodes["web1bck"].process is NodeState.PAUSED
    assert world.nodes["web2bck"].process is NodeState.PAUSED
    assert world.servers["web1bck"].admin is AdminState.MAINT


def test_standbys_are_frozen_once_ready_and_stay_frozen(topo):
    """Frozen after their first passing probes, then left alone: no probe, no health change, no action."""
    world = World.seed(topo, warm=True)
    ctl = controller(topo, world)
    rested(world, ctl)
    calls = len(world.calls)
    run(world, ctl, 2.0)
    assert [c for c in world.calls[calls:] if c[0] != "save"] == []
    assert not [e for e in events(topo, "health") if e["node"].endswith("bck")]
    assert ctl.health["web1bck"].last_probe_ok, "its health is kept from before the freeze"


def test_kill_thaws_the_standby_into_service_and_failback_freezes_it_again(topo):
    """web1 killed: web1bck thawed (not started), ready and up; web1 back: drained, frozen again."""
    world = World.seed(topo, warm=True)
    ctl = controller(topo, world)
    rested(world, ctl)
    world.nodes["web1"].process = NodeState.STOPPED
    run(world, ctl, 0.5)
    assert world.nodes["web1bck"].process is NodeState.RUNNING
    assert "web1bck" in world.serving() and world.servers["web1"].admin is AdminState.MAINT
    assert world.starts["web1bck"] == 0, "thawed, never started"
    assert ("fault", "web1bck", str(Fault.RESUME)) in world.calls
    failover = [e for e in events(topo, "failover") if e["node"] == "web1bck"]
    assert len(failover) == 1
    world.nodes["web1"].process = NodeState.RUNNING
    run(world, ctl, 3.0)
    assert world.servers["web1"].admin is AdminState.READY
    assert world.servers["web1bck"].admin is AdminState.MAINT
    assert world.nodes["web1bck"].process is NodeState.PAUSED, "frozen again after its drain"
    assert world.stops["web1bck"] == 0


def test_failback_stop_setting_stops_then_restarts_and_refreezes(tmp_path):
    """`failback: stop`: the drained standby is stopped, then started afresh and frozen again."""
    topo = topology(tmp_path, "standby: {temperature: frozen, failback: stop, hold: 1s}")
    world = World.seed(topo, warm=True)
    ctl = controller(topo, world)
    rested(world, ctl)
    world.nodes["web1"].process = NodeState.STOPPED
    run(world, ctl, 0.5)
    world.nodes["web1"].process = NodeState.RUNNING
    run(world, ctl, 3.0)
    assert world.stops["web1bck"] == 1 and world.starts["web1bck"] == 1
    assert world.nodes["web1bck"].process is NodeState.PAUSED


def test_standby_dying_mid_failover_is_retried_and_serves(topo):
    """The thawed standby dies before it serves: reported as failed, started again after the backoff."""
    world = World.seed(topo, warm=True)
    ctl = controller(topo, world)
    rested(world, ctl)
    world.nodes["web1"].process = NodeState.STOPPED
    world.haproxy_checks()
    ctl.tick()  # web1 DOWN: the thaw is submitted (and done: the fake runner is instant)
    world.clock.now += 0.1
    world.nodes["web1bck"].process = NodeState.STOPPED  # dies right after its thaw
    run(world, ctl, 3.0)
    assert [e["node"] for e in events(topo, "standby-failed")] == ["web1bck"]
    assert world.starts["web1bck"] >= 1
    assert "web1bck" in world.serving()


def test_controller_restarted_mid_thaw_converges(topo):
    """A new controller (no memory) finds web1 dead and web1bck thawed but still in maint: it puts the
    standby in service."""
    world = World.seed(topo, warm=True)
    ctl = controller(topo, world)
    rested(world, ctl)
    world.nodes["web1"].process = NodeState.STOPPED
    world.nodes["web1bck"].process = NodeState.RUNNING  # the thaw done, the controller gone before more
    fresh = controller(topo, world)
    run(world, fresh, 0.5)
    assert "web1bck" in world.serving() and world.servers["web1"].admin is AdminState.MAINT


def test_controller_restarted_before_the_thaw_thaws_it(topo):
    """A new controller finds web2 dead and web2bck still frozen in maint: it thaws it, never starts it."""
    world2 = World.seed(topo, warm=True)
    ctl2 = controller(topo, world2)
    rested(world2, ctl2)
    world2.nodes["web2"].process = NodeState.STOPPED  # died while no controller ran; web2bck still frozen
    fresh2 = controller(topo, world2)
    run(world2, fresh2, 0.6)
    assert "web2bck" in world2.serving()
    assert world2.starts["web2bck"] == 0, "thawed, not started"


def test_a_controller_started_with_frozen_standbys_does_not_probe_them(topo):
    """A new controller's first tick finds the standbys frozen: they are not probed (a probe would hang
    and count as a failure), so their health is not made DOWN before their thaw."""
    world = World.seed(topo, warm=True)
    ctl = controller(topo, world)
    rested(world, ctl)
    probed: list[str] = []
    fresh = controller(topo, world)
    collect = fresh.observer.collect

    def spy(names):
        probed.extend(names)
        return collect(names)

    fresh.observer.collect = spy
    run(world, fresh, 0.3)
    assert "web1bck" not in probed and "web2bck" not in probed
    assert not [e for e in events(topo, "health") if e["node"].endswith("bck")]

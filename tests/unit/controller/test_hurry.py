"""A standby the controller starts is hurried (probe.Prober.hurry): probed until it first answers, not
once per tick, since that first pass is what puts it in service."""

from __future__ import annotations

from pathlib import Path

from relevo.providers.base import NodeState

from .fakes import World, controller, run, topology


def test_the_standby_started_for_a_failover_is_hurried_once(tmp_path: Path):
    """web1 dies: the tick that starts web1bck hurries it, once; nothing else (a running node, a stop at
    failback) is hurried."""
    topo = topology(tmp_path)
    world = World.seed(topo)
    ctl = controller(topo, world)
    hurried: list[str] = []
    ctl.hurry = hurried.append
    run(world, ctl, 0.5)
    assert hurried == [], "a healthy cluster starts nothing"
    world.nodes["web1"].process = NodeState.STOPPED
    run(world, ctl, 0.3)
    assert world.starts["web1bck"] == 1
    assert hurried == ["web1bck"]
    world.nodes["web1"].process = NodeState.RUNNING  # back: failback drains and stops web1bck
    run(world, ctl, 6.0)
    assert world.stops["web1bck"] == 1, "failed back"
    assert hurried == ["web1bck"]

"""Deaths heard beside the tick (pidfd, LXD events): certain evidence, acted upon in the tick they are
heard in, journalled with the source that heard them first; the reader threads wake the loop."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from relevo.controller.sources import Heard, Sources
from relevo.providers.base import NodeEvent, NodeState

from .fakes import World, controller, events, run, topology


class FakeSources:
    """Events to hand to the controller at its next tick."""

    def __init__(self) -> None:
        self.pending: list[Heard] = []
        self.refreshed = 0

    def start(self, wake: object) -> None:
        pass

    def heard(self) -> list[Heard]:
        found, self.pending = self.pending, []
        return found

    def refresh(self) -> None:
        self.refreshed += 1

    def close(self) -> None:
        pass


def heard(node: str, state: NodeState, at: float, source: str = "pidfd") -> Heard:
    return Heard(event=NodeEvent(node=node, state=state, source=source, detail="its process exited"), at=at)


@pytest.fixture
def topo(tmp_path: Path):
    return topology(tmp_path)


def test_a_heard_death_acts_in_the_same_tick(topo):
    """Heard before the provider or the probes could tell: web1 is DOWN and its standby started at once,
    and the journal names the source and counts detection from when it was heard."""
    world = World.seed(topo)
    ctl = controller(topo, world)
    sources = FakeSources()
    ctl.sources = sources
    run(world, ctl, 0.5)
    sources.pending.append(heard("web1", NodeState.STOPPED, at=world.clock.now - 0.004))
    ctl.tick()
    down = [e for e in events(topo, "health") if e["node"] == "web1" and e["to"] == "down"]
    assert len(down) == 1
    assert "first heard by pidfd" in down[0]["reason"]
    assert down[0]["durations"]["detection_s"] == pytest.approx(0.004)
    assert world.starts["web1bck"] == 1
    assert sources.refreshed >= 1


def test_a_start_heard_after_the_death_cancels_it(topo):
    """A death followed by the node running again (LXD's instance-started) is no death this tick."""
    world = World.seed(topo)
    ctl = controller(topo, world)
    ctl.sources = sources = FakeSources()
    run(world, ctl, 0.5)
    now = world.clock.now
    sources.pending += [
        heard("web1", NodeState.STOPPED, now - 0.01, "lxd-events"),
        heard("web1", NodeState.RUNNING, now - 0.005, "lxd-events"),
    ]
    ctl.tick()
    assert not [e for e in events(topo, "health") if e["to"] == "down"]
    assert world.starts["web1bck"] == 0


def test_without_a_source_the_tick_still_detects(topo):
    """The tick is the safety net: a death nobody heard is found by the probes, as before."""
    world = World.seed(topo)
    ctl = controller(topo, world)
    run(world, ctl, 0.5)
    world.nodes["web1"].process = NodeState.STOPPED
    run(world, ctl, 0.2)
    down = [e for e in events(topo, "health") if e["node"] == "web1" and e["to"] == "down"]
    assert len(down) == 1 and "heard" not in down[0]["reason"]


def test_a_heard_balancer_death_restarts_it_without_waiting_for_the_view(topo):
    """HAProxy's master heard exiting: restarted in that tick, though its (polled) view still answers."""
    world = World.seed(topo)
    ctl = controller(topo, world)
    ctl.sources = sources = FakeSources()
    run(world, ctl, 0.5)
    sources.pending.append(heard("ha1", NodeState.STOPPED, world.clock.now))
    ctl.tick()
    assert world.starts["ha1"] == 1


class ScriptedWatch:
    """A watch that reports one batch of events, then nothing."""

    def __init__(self, batch: list[NodeEvent]) -> None:
        self.batch = batch
        self.closed = threading.Event()

    def wait(self, timeout_s: float) -> list[NodeEvent]:
        found, self.batch = self.batch, []
        if not found:
            self.closed.wait(timeout_s)
        return found

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        self.closed.set()


def test_sources_read_in_a_thread_stamp_and_wake():
    """A reader thread queues what its watch heard, stamped with the clock, and wakes the loop."""
    woken = threading.Event()
    watch = ScriptedWatch([NodeEvent(node="web1", state=NodeState.STOPPED, source="pidfd")])
    sources = Sources([watch], clock=lambda: 42.0)
    sources.start(woken.set)
    try:
        assert woken.wait(5.0)
        found = sources.heard()
        assert [(h.event.node, h.at, h.death) for h in found] == [("web1", 42.0, True)]
        assert sources.heard() == []
    finally:
        sources.close()
    assert watch.closed.is_set()

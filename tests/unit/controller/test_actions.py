"""Provider actions off the tick, with real threads: one per node at a time, bounded in time."""

from __future__ import annotations

import threading

from relevo.controller.actions import ActionRunner, Done
from relevo.controller.state import Busy, ControlAction, start, stop
from relevo.polling import wait_until


def wait_for(predicate, timeout_s: float = 30.0) -> None:
    assert wait_until(predicate, timeout_s, 0.005), "timed out"


def harvest_one(runner: ActionRunner) -> list[Done]:
    """What the runner reports, once it reports something (its worker thread ends the action)."""
    got: list[Done] = []

    def reported() -> bool:
        got.extend(runner.harvest())
        return bool(got)

    wait_for(reported)
    return got


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_slow_start_does_not_hold_up_another_nodes_action():
    """web1bck's start blocks; web2bck's start, submitted after it, finishes and is harvested first."""
    release = threading.Event()
    done: list[str] = []

    def perform(action: ControlAction) -> None:
        if action.node == "web1bck":
            release.wait(5)
        done.append(action.node)

    runner = ActionRunner(perform, timeout_s=30)
    try:
        assert runner.submit(start("web1bck", "x"))
        assert runner.submit(start("web2bck", "y"))
        assert [d.action.node for d in harvest_one(runner)] == ["web2bck"]
        assert runner.busy() == {"web1bck": Busy.STARTING}
        assert not runner.submit(stop("web1bck", "z")), "a second action on a busy node"
        release.set()
        (finished,) = harvest_one(runner)
        assert finished.action.node == "web1bck" and finished.error is None
        assert runner.busy() == {}
    finally:
        release.set()
        runner.close()


def test_an_action_past_its_timeout_is_reported_failed_once_and_its_node_stays_busy():
    """Past the timeout: one failure reported, the node busy until the call returns, the late outcome
    not reported again."""
    release = threading.Event()

    def blocked(_action: object) -> None:
        release.wait(5)

    clock = Clock()
    runner = ActionRunner(blocked, timeout_s=0.05, clock=clock)
    try:
        runner.submit(start("web1bck", "x"))
        clock.now += 0.1
        (late,) = runner.harvest()
        assert late.error == "still running after 0.05 s"
        assert runner.harvest() == []
        assert runner.busy() == {"web1bck": Busy.STARTING}
        release.set()
        wait_for(lambda: runner._running["web1bck"].future.done())
        assert runner.harvest() == [], "the late outcome was reported again"
        assert runner.busy() == {}
    finally:
        release.set()
        runner.close()


def test_a_provider_error_is_the_actions_error():
    """An exception in the provider call comes back as the action's error, with its message."""

    def fail(_action: ControlAction) -> None:
        raise RuntimeError("disk full")

    runner = ActionRunner(fail, timeout_s=5)
    try:
        runner.submit(start("web1bck", "x"))
        wait_for(lambda: runner._running["web1bck"].future.done())
        (done,) = runner.harvest()
        assert done.error == "disk full"
    finally:
        runner.close()

"""`decide` with frozen standbys: started ahead of time and frozen once ready in maint; a failover thaws
and puts in service; failback drains, then freezes again (or stops, per `standby.failback`)."""

from __future__ import annotations

from dataclasses import replace

from relevo.controller.decide import decide
from relevo.controller.health import NodeHealth, Status
from relevo.controller.state import ActionKind, Busy, Memory, NodeView
from relevo.haproxy.runtime import AdminState
from relevo.model import Failback, Temperature
from relevo.providers.base import NodeState

from .test_decide import DOWN, POLICY, STOPPED, UP, kinds, node, obs

FROZEN = replace(POLICY, temperature=Temperature.FROZEN)
# Its last probe passed before it was frozen: a frozen standby keeps that health while frozen.
READY = NodeHealth(status=Status.UP, successes=3, since=50.0, last_ok_at=60.0)


def test_idle_frozen_standby_that_is_stopped_is_started_ahead_of_time():
    """A healthy pair whose frozen standby is not running: start it now, not at the failover."""
    plan = decide(
        FROZEN,
        obs(
            node(NodeState.RUNNING, UP, AdminState.READY), node(NodeState.STOPPED, STOPPED, AdminState.MAINT)
        ),
        Memory(),
    )
    assert kinds(plan) == [(ActionKind.START, "web1bck", None)]


def test_ready_idle_standby_in_maint_is_frozen():
    """Running, its probe passing, in maint, nothing else to do: freeze it (and it is no longer starting)."""
    plan = decide(
        FROZEN,
        obs(node(NodeState.RUNNING, UP, AdminState.READY), node(NodeState.RUNNING, READY, AdminState.MAINT)),
        Memory(starting={"web1bck": 99.0}),
    )
    assert kinds(plan) == [(ActionKind.FREEZE, "web1bck", None)]
    assert "web1bck" not in plan.memory.starting


def test_a_running_standby_not_yet_answering_is_not_frozen():
    """Frozen before its first passing probe, a failover would thaw a standby that may not serve."""
    not_yet = NodeHealth(status=Status.UNKNOWN)
    plan = decide(
        FROZEN,
        obs(
            node(NodeState.RUNNING, UP, AdminState.READY), node(NodeState.RUNNING, not_yet, AdminState.MAINT)
        ),
        Memory(starting={"web1bck": 99.0}),
    )
    assert kinds(plan) == []


def test_frozen_idle_standby_is_left_frozen():
    """The resting state: nothing to do, and a paused standby is not a failure."""
    plan = decide(
        FROZEN,
        obs(node(NodeState.RUNNING, UP, AdminState.READY), node(NodeState.PAUSED, READY, AdminState.MAINT)),
        Memory(),
    )
    assert kinds(plan) == [] and plan.events == ()


def test_primary_down_thaws_the_frozen_standby():
    """The failover's first step is a thaw (never a start, never a failure), remembered as starting."""
    plan = decide(
        FROZEN,
        obs(node(NodeState.STOPPED, DOWN, AdminState.READY), node(NodeState.PAUSED, READY, AdminState.MAINT)),
        Memory(),
    )
    assert kinds(plan) == [(ActionKind.THAW, "web1bck", None)]
    assert plan.memory.starting == {"web1bck": 100.0}
    thaw = plan.actions[0]
    assert thaw.then is not None and "thawing web1bck" in thaw.then.reason


def test_thawed_standby_goes_in_service_without_waiting_for_a_probe():
    """Thawed (running) with the health it had when frozen: ready + health up + primary to maint at once."""
    plan = decide(
        FROZEN,
        obs(
            node(NodeState.STOPPED, DOWN, AdminState.READY), node(NodeState.RUNNING, READY, AdminState.MAINT)
        ),
        Memory(starting={"web1bck": 99.99}),
    )
    assert kinds(plan) == [
        (ActionKind.SET_STATE, "web1bck", AdminState.READY),
        (ActionKind.HEALTH_UP, "web1bck", None),
        (ActionKind.SET_STATE, "web1", AdminState.MAINT),
    ]


def test_standby_dying_while_thawing_is_a_failed_standby():
    """Heard dead mid-failover (stopped, nothing running): reported, taken out, retried after a backoff."""
    plan = decide(
        FROZEN,
        obs(
            node(NodeState.STOPPED, DOWN, AdminState.READY),
            node(NodeState.STOPPED, STOPPED, AdminState.MAINT),
        ),
        Memory(starting={"web1bck": 99.9}),
    )
    assert [e.kind for e in plan.events] == ["standby-failed"]
    assert "web1bck" in plan.memory.failed
    assert (ActionKind.START, "web1bck", None) not in kinds(plan)


def test_failback_drains_then_freezes_again():
    """Primary stable again: drain the standby; once in maint, freeze it (not stop it)."""
    draining = decide(
        FROZEN,
        obs(
            node(NodeState.RUNNING, UP, AdminState.READY),
            node(NodeState.RUNNING, READY, AdminState.DRAIN, sessions=0),
        ),
        Memory(draining={"web1bck": 99.0}, owned={"web1bck": AdminState.DRAIN}),
    )
    assert kinds(draining) == [(ActionKind.SET_STATE, "web1bck", AdminState.MAINT)]
    after = decide(
        FROZEN,
        obs(node(NodeState.RUNNING, UP, AdminState.READY), node(NodeState.RUNNING, READY, AdminState.MAINT)),
        replace(draining.memory, owned={"web1bck": AdminState.MAINT}),
    )
    assert kinds(after) == [(ActionKind.FREEZE, "web1bck", None)]


def test_failback_stops_it_when_the_setting_says_stop():
    """`standby.failback: stop`: drained, then stopped; the idle pair then starts it afresh (and freezes)."""
    policy = replace(FROZEN, failback=Failback.STOP)
    plan = decide(
        policy,
        obs(
            node(NodeState.RUNNING, UP, AdminState.READY),
            node(NodeState.RUNNING, READY, AdminState.DRAIN, sessions=0),
        ),
        Memory(draining={"web1bck": 99.0}, owned={"web1bck": AdminState.DRAIN}),
    )
    assert kinds(plan) == [
        (ActionKind.SET_STATE, "web1bck", AdminState.MAINT),
        (ActionKind.STOP, "web1bck", None),
    ]


def test_no_freeze_while_an_action_on_the_standby_runs():
    """A start or thaw still under way: freezing now would race it."""
    busy = NodeView(process=NodeState.RUNNING, health=READY, server=None, busy=Busy.THAWING)
    plan = decide(FROZEN, obs(node(NodeState.RUNNING, UP, AdminState.READY), busy), Memory())
    assert kinds(plan) == []


def test_a_frozen_standby_serving_is_a_hang_and_fails():
    """Paused while in service (someone froze it, or it hung): the standby failed, stopped for a retry."""
    plan = decide(
        FROZEN,
        obs(
            node(NodeState.STOPPED, DOWN, AdminState.MAINT),
            node(NodeState.PAUSED, replace(READY, failures=2), AdminState.READY),
        ),
        Memory(owned={"web1": AdminState.MAINT, "web1bck": AdminState.READY}),
    )
    assert [e.kind for e in plan.events] == ["standby-failed"]
    assert (ActionKind.STOP, "web1bck", None) in kinds(plan)

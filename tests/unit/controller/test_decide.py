"""`decide` called directly: observations in, actions out, no I/O."""

from __future__ import annotations

from relevo.controller.decide import decide, note_failure, note_success
from relevo.controller.health import NodeHealth, Status
from relevo.controller.state import (
    ActionKind,
    Backoff,
    Memory,
    NodeView,
    Observation,
    Policy,
    ServerView,
    set_state,
    start,
)
from relevo.haproxy.runtime import AdminState
from relevo.providers.base import NodeState

POLICY = Policy(primaries=("web1",), standby_of={"web1": "web1bck"}, balancer="ha1")
UP = NodeHealth(status=Status.UP, successes=5, since=0.0, last_ok_at=99.9)
DOWN = NodeHealth(
    status=Status.DOWN, failures=2, since=99.8, last_ok_at=99.5, fault_at=99.6, detail="connection refused"
)
STOPPED = NodeHealth(status=Status.DOWN, failures=9, detail="process stopped")
FRESH = NodeHealth(status=Status.DOWN, successes=1, failures=0, last_ok_at=100.0)  # first pass


def obs(primary, standby, *, now=100.0, haproxy=True):
    return Observation(now=now, nodes={"web1": primary, "web1bck": standby}, haproxy=haproxy)


def node(process, health, admin, up=True, sessions=0):
    return NodeView(process=process, health=health, server=ServerView(admin=admin, up=up, sessions=sessions))


def kinds(plan):
    return [(a.kind, a.node, a.state) for a in plan.actions]


def test_down_primary_with_stopped_standby_starts_it():
    """Primary DOWN, standby stopped: the only action is starting the standby, remembered as starting."""
    plan = decide(
        POLICY,
        obs(
            node(NodeState.STOPPED, DOWN, AdminState.READY),
            node(NodeState.STOPPED, STOPPED, AdminState.MAINT),
        ),
        Memory(),
    )
    assert kinds(plan) == [(ActionKind.START, "web1bck", None)]
    assert plan.memory.starting == {"web1bck": 100.0}


def test_first_passing_probe_puts_the_standby_in_service():
    """The standby's first passing probe: ready, health up, primary to maint, and a timed event."""
    memory = Memory(starting={"web1bck": 99.9})
    plan = decide(
        POLICY,
        obs(
            node(NodeState.STOPPED, DOWN, AdminState.READY), node(NodeState.RUNNING, FRESH, AdminState.MAINT)
        ),
        memory,
    )
    assert kinds(plan) == [
        (ActionKind.SET_STATE, "web1bck", AdminState.READY),
        (ActionKind.HEALTH_UP, "web1bck", None),
        (ActionKind.SET_STATE, "web1", AdminState.MAINT),
    ]
    assert plan.events == (), "nothing is journalled before it happened"
    ready = plan.actions[0]
    assert ready.then is not None and ready.then.kind == "failover"
    # Detection counts from the fault's first evidence (99.6) to DOWN (99.8); the rest is measured
    # when HAProxy has taken the standby, from these starting points.
    assert round(ready.then.durations["detection_s"], 6) == 0.2
    assert ready.timed_from == {"until_served_s": 99.6, "standby_start_s": 99.9}
    assert [a.needs for a in plan.actions] == ["", ready.key, ready.key]
    assert "web1bck" in plan.memory.starting, "forgotten only once seen serving"


def test_standby_seen_serving_ends_the_failover():
    """The tick after the takeover HAProxy has the standby ready: nothing more to journal or set."""
    memory = Memory(
        starting={"web1bck": 99.9},
        outage={"web1": 99.6},
        owned={"web1": AdminState.MAINT, "web1bck": AdminState.READY},
    )
    plan = decide(
        POLICY,
        obs(
            node(NodeState.STOPPED, DOWN, AdminState.MAINT), node(NodeState.RUNNING, FRESH, AdminState.READY)
        ),
        memory,
    )
    assert plan.actions == () and plan.events == ()
    assert plan.memory.starting == {} and plan.memory.outage == {}


def test_without_haproxy_the_standby_is_started_but_nothing_is_set():
    """HAProxy not answering: Runtime API actions wait, the provider action does not."""
    plan = decide(
        POLICY,
        obs(
            NodeView(process=NodeState.STOPPED, health=DOWN),
            NodeView(process=NodeState.STOPPED, health=STOPPED),
            haproxy=False,
        ),
        Memory(),
    )
    assert kinds(plan) == [(ActionKind.START, "web1bck", None)]


def test_healthy_pair_needs_nothing():
    """A stable primary in service with its standby stopped in maint: no action, no event."""
    plan = decide(
        POLICY,
        obs(
            node(NodeState.RUNNING, UP, AdminState.READY), node(NodeState.STOPPED, STOPPED, AdminState.MAINT)
        ),
        Memory(),
    )
    assert plan.actions == () and plan.events == ()


def test_failed_standby_waits_out_its_backoff():
    """A standby in its failure backoff is not started again before the retry time."""
    memory = Memory(failed={"web1bck": Backoff(attempts=1, next_at=101.0)})
    standby = node(NodeState.STOPPED, STOPPED, AdminState.MAINT)
    primary = node(NodeState.STOPPED, DOWN, AdminState.READY)
    assert decide(POLICY, obs(primary, standby), memory).actions == ()
    assert kinds(decide(POLICY, obs(primary, standby, now=101.0), memory)) == [
        (ActionKind.START, "web1bck", None)
    ]


def test_failed_action_is_gated_then_retried():
    """A failed Runtime API command is not sent again until its backoff passes; success clears it."""
    action = set_state("web1", AdminState.MAINT)
    memory, events = note_failure(POLICY, Memory(), action, 100.0, "refused")
    assert events[0].kind == "action-failed"
    assert not memory.gates[action.key].ready(100.1)
    assert memory.gates[action.key].ready(100.2)
    assert note_success(memory, action).gates == {}


def test_standby_start_error_becomes_a_standby_failure():
    """A provider error starting a standby is a standby failure with a retry time."""
    memory = Memory(starting={"web1bck": 100.0})
    memory, events = note_failure(POLICY, memory, start("web1bck", "x"), 100.0, "boom")
    assert [e.kind for e in events] == ["action-failed", "standby-failed"]
    assert memory.failed["web1bck"].attempts == 1
    assert "web1bck" not in memory.starting


def test_backoff_doubles_up_to_its_maximum():
    """Backoff waits base, 2 x base, 4 x base ... never more than the maximum."""
    backoff, waits = Backoff(), []
    for _ in range(7):
        backoff = backoff.after(0.0, 1.0, 30.0)
        waits.append(backoff.next_at)
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]

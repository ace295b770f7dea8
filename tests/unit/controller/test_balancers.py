"""A pair's two HAProxy processes driven as one: commands to both, a returning one given the states."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from relevo.controller.balancers import BalancerSet, answering, save_for_restart, synced_events
from relevo.controller.decide import decide
from relevo.controller.health import NodeHealth, Status
from relevo.controller.state import ActionKind, Memory, NodeView, Observation, Policy, ServerView
from relevo.errors import RuntimeAPIError
from relevo.haproxy.runtime import AdminState
from relevo.providers.base import NodeState

READY, MAINT, DRAIN = AdminState.READY, AdminState.MAINT, AdminState.DRAIN


class FakeHAProxy:
    """One HAProxy's Runtime API: server admin states, answering or not, and what it was told."""

    def __init__(self, states: Mapping[str, AdminState]) -> None:
        self.states = dict(states)
        self.up = dict.fromkeys(states, True)
        self.answers = True
        self.commands: list[tuple[str, str, str]] = []
        self.saved = 0

    def _check(self) -> None:
        if not self.answers:
            raise RuntimeAPIError("connection refused")

    def view(self) -> Mapping[str, ServerView]:
        self._check()
        return {name: ServerView(admin=state, up=self.up[name]) for name, state in self.states.items()}

    def set_state(self, server: str, state: AdminState) -> None:
        self._check()
        self.states[server] = state
        self.commands.append(("state", server, str(state)))

    def health_up(self, server: str) -> None:
        self._check()
        self.commands.append(("health", server, "up"))

    def save(self) -> None:
        self._check()
        self.saved += 1


@pytest.fixture
def pair():
    ha1 = FakeHAProxy({"web1": READY, "web1bck": MAINT})
    ha2 = FakeHAProxy({"web1": READY, "web1bck": MAINT})
    return ha1, ha2, BalancerSet({"ha1": ha1, "ha2": ha2})


def test_every_state_goes_to_every_answering_balancer(pair):
    """A failover's commands reach both HAProxy processes, whichever one a client's connection lands on."""
    ha1, ha2, both = pair
    both.view()
    both.set_state("web1bck", READY)
    both.health_up("web1bck")
    both.set_state("web1", MAINT)
    assert ha1.states == ha2.states == {"web1": MAINT, "web1bck": READY}
    assert ("health", "web1bck", "up") in ha1.commands and ("health", "web1bck", "up") in ha2.commands


def test_a_dead_balancer_is_skipped_and_the_survivor_serves_the_view(pair):
    """With ha1 gone the view is ha2's and commands go to ha2 alone, without an error."""
    ha1, ha2, both = pair
    ha1.answers = False
    ha2.states["web1"] = DRAIN
    assert both.view()["web1"].admin is DRAIN
    assert answering(both, "ha1", True) == {"ha1": False, "ha2": True}
    both.set_state("web1bck", READY)
    assert ha2.states["web1bck"] is READY and ha1.states["web1bck"] is MAINT


def test_no_balancer_answering_is_an_error(pair):
    """Both silent: the view raises (the loop reads it as HAProxy not answering) and commands fail."""
    ha1, ha2, both = pair
    ha1.answers = ha2.answers = False
    with pytest.raises(RuntimeAPIError):
        both.view()
    with pytest.raises(RuntimeAPIError):
        both.set_state("web1", MAINT)


def test_a_returning_balancer_is_given_the_incumbents_states(pair):
    """ha1 comes back from an old server-state file (web1 ready, standby in maint) after ha2 failed web1
    over: its first read sets web1 maint and the standby ready (and UP), and the move is journalled."""
    ha1, _ha2, both = pair
    ha1.answers = False
    both.view()
    both.set_state("web1bck", READY)
    both.set_state("web1", MAINT)
    ha1.answers = True  # back, with what it started from
    view = both.view()
    assert view["web1"].admin is MAINT  # the incumbent's view, not the returning one's
    assert ha1.states == {"web1": MAINT, "web1bck": READY}
    assert ("health", "web1bck", "up") in ha1.commands
    events = synced_events(both)
    assert [(e.node, e.to) for e in events] == [("ha1", "synced")]
    assert "ha2's states" in events[0].reason and "web1 maint" in events[0].reason
    assert synced_events(both) == []  # journalled once


def test_agreeing_balancers_are_not_touched(pair):
    """Two balancers with the same states: no command, no event."""
    ha1, ha2, both = pair
    both.view()
    both.view()
    assert ha1.commands == ha2.commands == []
    assert synced_events(both) == []


def test_save_before_a_restart_comes_from_the_survivor(pair):
    """Before ha1 restarts, the states are saved from ha2 (the file both start from); with no other
    balancer answering nothing is saved (the last good dump stays)."""
    ha1, ha2, both = pair
    ha1.answers = False
    both.view()
    save_for_restart(both, "ha1")
    assert (ha1.saved, ha2.saved) == (0, 1)
    ha2.answers = False
    with pytest.raises(RuntimeAPIError):
        both.view()
    save_for_restart(both, "ha1")
    assert ha2.saved == 1


UP = NodeHealth(status=Status.UP, successes=5, since=0.0, last_ok_at=99.9)
POLICY = Policy(primaries=("web1",), standby_of={"web1": "web1bck"}, balancer="ha1", peers=("ha2",))


def _obs(ha1: NodeState, ha2: NodeState) -> Observation:
    server = ServerView(admin=READY, up=True)
    nodes = {
        "web1": NodeView(process=NodeState.RUNNING, health=UP, server=server),
        "web1bck": NodeView(
            process=NodeState.STOPPED, health=NodeHealth(), server=ServerView(admin=MAINT, up=False)
        ),
    }
    return Observation(now=100.0, nodes=nodes, balancer=ha1, peers={"ha2": ha2}, haproxy=True)


@pytest.mark.parametrize(
    ("ha1", "ha2", "restarted"),
    [
        (NodeState.RUNNING, NodeState.STOPPED, ["ha2"]),
        (NodeState.RUNNING, NodeState.PAUSED, ["ha2"]),
        (NodeState.STOPPED, NodeState.RUNNING, ["ha1"]),
        (NodeState.RUNNING, NodeState.RUNNING, []),
    ],
)
def test_either_balancer_of_a_pair_is_restarted(ha1, ha2, restarted):
    """A dead or hung peer is restarted as the first balancer is, while the other keeps serving."""
    plan = decide(POLICY, _obs(ha1, ha2), Memory())
    assert [a.node for a in plan.actions if a.kind is ActionKind.RESTART] == restarted

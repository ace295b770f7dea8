"""The steady state: what each scenario declares before its load and after its faults healed (derived from
its own timeline), what differs from an observation, and the bounded wait on an injected clock."""

from __future__ import annotations

from relevo.providers.base import NodeState
from relevo.scenarios.catalogue import catalogue
from relevo.scenarios.model import Setup
from relevo.scenarios.steady import (
    Expected,
    Observed,
    SteadyState,
    check,
    differences,
    expected_after,
    expected_before,
)
from relevo.topology import parse_topology


def topology_of(text: str, tmp_path):
    return parse_topology(text, source=None, state_dir=tmp_path / ".relevo")


def healthy(state: SteadyState) -> Observed:
    """An observation that matches `state` exactly."""
    return Observed(
        states={n: NodeState.RUNNING if e.serving else e.state for n, e in state.nodes.items()},
        health={n: "UP" if e.serving else e.health for n, e in state.nodes.items()},
        answers={n: "" for n, e in state.nodes.items() if e.serving},
        controller=state.controller,
        frontend=str(state.frontend_status),
    )


def test_the_default_setup_declares_primaries_serving_and_cold_standbys_stopped_in_maint(tmp_path):
    """Before the load: web1 and web2 serve, web1bck and web2bck are stopped and in MAINT, the controller
    runs and the frontend answers 200."""
    state = expected_before(topology_of("", tmp_path), Setup())
    assert state.nodes["web1"].serving and state.nodes["web2"].serving
    assert state.nodes["web1bck"] == Expected(serving=False, state=NodeState.STOPPED, health="MAINT")
    assert state.controller and state.frontend_status == 200


def test_warm_standbys_are_declared_running_out_of_rotation(tmp_path):
    """Warm standbys run in MAINT; frozen ones are paused in MAINT."""
    warm = expected_before(topology_of("standby: {temperature: warm}\n", tmp_path), Setup())
    assert warm.nodes["web2bck"] == Expected(serving=False, state=NodeState.RUNNING, health="MAINT")
    frozen = expected_before(topology_of("standby: {temperature: frozen}\n", tmp_path), Setup())
    assert frozen.nodes["web2bck"].state is NodeState.PAUSED


def test_no_servers_declares_stopped_primaries_down_and_the_503_page(tmp_path):
    """The seed's no-servers layout: primaries stopped and DOWN in HAProxy, the frontend's 503, no
    controller."""
    topology = topology_of("", tmp_path)
    available, _ = catalogue(topology)
    state = expected_before(topology, available["no-servers"].setup)
    assert state.nodes["web1"] == Expected(serving=False, state=NodeState.STOPPED, health="DOWN")
    assert state.frontend_status == 503 and not state.controller


def test_a_primary_killed_for_good_is_left_out_and_its_standby_serves_after(tmp_path):
    """kill-web1: after the faults, web1 is not checked and web1bck must serve in its place; web2 and
    web2bck are as before."""
    topology = topology_of("", tmp_path)
    available, _ = catalogue(topology)
    after = expected_after(topology, available["kill-web1"])
    assert "web1" not in after.nodes
    assert after.nodes["web1bck"].serving
    assert after.nodes["web2"].serving
    assert after.nodes["web2bck"].state is NodeState.STOPPED


def test_a_primary_started_again_must_serve_and_its_standby_be_stopped_again(tmp_path):
    """recover-web1, flap-web1 and every healed network fault return to the steady state before."""
    topology = topology_of("", tmp_path)
    available, _ = catalogue(topology)
    before = expected_before(topology, Setup())
    healed = (
        "recover-web1",
        "flap-web1",
        "partition-web1",
        "slow-web2",
        "maintenance-web1",
        "reload-balancer",
    )
    for name in healed:
        assert expected_after(topology, available[name]) == before, name


def test_without_the_controller_a_lost_primary_is_replaced_by_nobody(tmp_path):
    """kill-web1-no-standby: web1 and its standby are out of the check, web2 still serves."""
    topology = topology_of("", tmp_path)
    available, _ = catalogue(topology)
    after = expected_after(topology, available["kill-web1-no-standby"])
    assert set(after.nodes) == {"web2", "web2bck"}
    assert after.nodes["web2"].serving and not after.controller


def test_a_controller_killed_and_started_again_must_run(tmp_path):
    """kill-controller starts the controller again: it must be running after."""
    topology = topology_of("", tmp_path)
    available, _ = catalogue(topology)
    assert expected_after(topology, available["kill-controller"]).controller


def test_differences_name_each_node_and_what_is_wrong(tmp_path):
    """A node that should serve but is stopped, a standby left running, the controller gone and the
    frontend refusing: each is said, with what was expected."""
    state = expected_before(topology_of("", tmp_path), Setup())
    seen = healthy(state)
    assert differences(state, seen) == []
    broken = Observed(
        states={**seen.states, "web2": NodeState.STOPPED, "web1bck": NodeState.RUNNING},
        health={**seen.health, "web2": "DOWN"},
        answers={**seen.answers, "web2": "connection refused"},
        controller=False,
        frontend="nothing (ConnectionRefusedError: refused)",
    )
    assert differences(state, broken) == [
        "web2 not serving (stopped, DOWN in HAProxy, its health GET: connection refused)",
        "web1bck running, expected stopped",
        "the controller is not running",
        "the frontend answered nothing (ConnectionRefusedError: refused), expected 200",
    ]


def test_the_check_waits_until_it_holds_within_its_bound(tmp_path):
    """A cluster that returns on the third look passes, with the time it took on the injected clock; one
    that never returns fails at the bound with what differed at the last look."""
    state = expected_before(topology_of("", tmp_path), Setup())
    now = [0.0]
    looks: list[Observed] = []

    def sleep(s: float) -> None:
        now[0] += s

    good = healthy(state)
    bad = Observed(
        states=good.states,
        health={**good.health, "web1": "DOWN"},
        answers=good.answers,
        controller=True,
        frontend="200",
    )
    sequence = iter([bad, bad, good])

    def look(_: SteadyState) -> Observed:
        looks.append(observed := next(sequence))
        return observed

    done = check("after", state, look, within_s=5.0, clock=lambda: now[0], sleep=sleep)
    assert done.ok and len(looks) == 3 and abs(done.took_s - 0.2) < 1e-9
    assert done.what == "steady state after the faults healed (within 5 s)"

    never = check("after", state, lambda _: bad, within_s=1.0, clock=lambda: now[0], sleep=sleep)
    assert not never.ok and never.took_s >= 1.0
    assert never.differences == ("web1 not serving (DOWN in HAProxy)",)

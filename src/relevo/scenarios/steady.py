"""The cluster's steady state, checked before a scenario's load and again after its faults healed (Chaos
Toolkit's steady-state hypothesis): every node serving that should (its own health GET answers and HAProxy
has it UP), every other node as declared (a cold standby stopped and in MAINT, a warm one running, a
frozen one paused), the controller running when the scenario wants it, and the frontend answering.

What is expected after the faults is derived from the scenario's own timeline, never guessed from what
happened: a primary the scenario kills (or hangs, stops, puts in MAINT) and never brings back is out of
the check, and with the controller on its standby must serve in its place; one it starts again (or
resumes, or sets ready) must serve again, its standby back as declared (the failback done). Lasting
faults are healed at their span's end, so they change nothing. Balancers are checked through the
frontend. Deciding what differs is pure (`differences`); `check` observes and polls within a bound, on
an injected clock.
"""

from __future__ import annotations

import http.client
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from relevo.cluster import Cluster
from relevo.controller import daemon
from relevo.controller.probe import http_probe
from relevo.model import Temperature, Topology
from relevo.providers.base import NodeState
from relevo.scenarios.model import Action, Scenario, Setup
from relevo.scenarios.prepare import desired_running
from relevo.scenarios.result import SteadyCheck

# After the faults healed, the cluster has the failback's hold plus this long to be as declared again.
STEADY_MARGIN_S = 10.0
# Before the load, `prepare` has already waited for every server: this is only for a straggler.
BEFORE_WITHIN_S = 5.0
POLL_S = 0.1
FRONTEND_TIMEOUT_S = 2.0
# HAProxy's answer when no server is up (the custom 503 page).
NO_SERVER_STATUS = 503

LOST = frozenset({Action.KILL, Action.HANG, Action.HANG_WORKERS, Action.STOP, Action.MAINTENANCE})
BACK = frozenset({Action.START, Action.RESUME, Action.READY})


@dataclass(frozen=True, slots=True, kw_only=True)
class Expected:
    """One web node as the steady state wants it. `serving`: answers its health GET and HAProxy has it UP;
    otherwise `state` (the provider's) and `health` (HAProxy's word) are what must hold."""

    serving: bool
    state: NodeState = NodeState.RUNNING
    health: str = "UP"

    def describe(self) -> str:
        return "serving" if self.serving else f"{self.state}, {self.health} in HAProxy"


@dataclass(frozen=True, slots=True, kw_only=True)
class SteadyState:
    nodes: Mapping[str, Expected]  # the nodes checked; one left out is not checked (lost on purpose)
    controller: bool
    frontend_status: int  # 200 while a server serves, else HAProxy's 503 page

    def describe(self) -> str:
        serving = [n for n, e in self.nodes.items() if e.serving]
        others = [f"{n} {e.describe()}" for n, e in self.nodes.items() if not e.serving]
        parts = [("serving: " + ", ".join(serving)) if serving else "no server serving"]
        parts += others
        parts.append("controller " + ("running" if self.controller else "off"))
        parts.append(f"frontend answers {self.frontend_status}")
        return "; ".join(parts)


@dataclass(frozen=True, slots=True, kw_only=True)
class Observed:
    """What the cluster showed at one look."""

    states: Mapping[str, NodeState]
    health: Mapping[str, str]  # HAProxy's view ("-" when it does not answer)
    answers: Mapping[str, str]  # a node's own health GET: "" when it answered, else why not
    controller: bool
    frontend: str  # "200", "503", or why nothing answered


# -- what is expected (pure) ------------------------------------------------------------------------------
def expected_before(topology: Topology, setup: Setup) -> SteadyState:
    """The steady state a scenario's setup declares (`prepare` puts the cluster so)."""
    running = desired_running(topology, setup)
    in_rotation = {n.name for n in topology.primaries} | set(setup.in_rotation)
    idle_state = {
        Temperature.COLD: NodeState.STOPPED,
        Temperature.WARM: NodeState.RUNNING,
        Temperature.FROZEN: NodeState.PAUSED,
    }
    nodes: dict[str, Expected] = {}
    for node in topology.nodes:
        name = node.name
        if name in running and name in in_rotation:
            nodes[name] = Expected(serving=True)
        elif name in in_rotation:  # a primary in rotation but stopped: HAProxy sees it DOWN
            nodes[name] = Expected(serving=False, state=NodeState.STOPPED, health="DOWN")
        elif name in running:
            # A standby running out of rotation: as its temperature keeps it (a static setup: running).
            temperature = topology.standby.temperature
            state = NodeState.RUNNING if setup.running is not None else idle_state[temperature]
            nodes[name] = Expected(serving=False, state=state, health="MAINT")
        else:
            nodes[name] = Expected(serving=False, state=NodeState.STOPPED, health="MAINT")
    serving = any(e.serving for e in nodes.values())
    return SteadyState(
        nodes=MappingProxyType(nodes),
        controller=setup.controller,
        frontend_status=topology.health.expect_status if serving else NO_SERVER_STATUS,
    )


def expected_after(topology: Topology, scenario: Scenario) -> SteadyState:
    """The steady state once the scenario's faults healed, from its own timeline (see the module doc)."""
    before = expected_before(topology, scenario.setup)
    nodes = dict(before.nodes)
    controller = scenario.setup.controller
    lost: set[str] = set()
    for fault in sorted(scenario.faults, key=lambda f: f.at_s):
        if fault.action is Action.KILL_CONTROLLER:
            controller = False
        elif fault.action is Action.START_CONTROLLER:
            controller = scenario.setup.controller or controller
        elif fault.node is None or topology.is_balancer(fault.node):
            continue  # a balancer: the frontend answers for it
        elif fault.action in LOST and fault.for_s is None:
            lost.add(fault.node)
        elif fault.action in BACK:
            lost.discard(fault.node)
    for name in lost:
        nodes.pop(name, None)
        standby = topology.standby_of(name)
        if standby is None:
            continue
        if controller and before.nodes.get(name, Expected(serving=False)).serving:
            nodes[standby.name] = Expected(serving=True)  # in its primary's place
        else:
            nodes.pop(standby.name, None)
    serving = any(e.serving for e in nodes.values())
    return SteadyState(
        nodes=MappingProxyType(nodes),
        controller=controller,
        frontend_status=topology.health.expect_status if serving else NO_SERVER_STATUS,
    )


def differences(expected: SteadyState, seen: Observed) -> list[str]:
    """What the observed cluster has that the steady state does not (empty: it holds)."""
    out: list[str] = []
    for name, want in expected.nodes.items():
        state = seen.states.get(name, NodeState.MISSING)
        health = seen.health.get(name, "-")
        if want.serving:
            problems = []
            if state is not NodeState.RUNNING:
                problems.append(str(state))
            if health != "UP":
                problems.append(f"{health} in HAProxy")
            why = seen.answers.get(name, "not asked")
            if why:
                problems.append(f"its health GET: {why}")
            if problems:
                out.append(f"{name} not serving ({', '.join(problems)})")
            continue
        if state is not want.state:
            out.append(f"{name} {state}, expected {want.state}")
        if health != want.health:
            out.append(f"{name} {health} in HAProxy, expected {want.health}")
    if seen.controller != expected.controller:
        out.append("the controller " + ("is not running" if expected.controller else "runs, expected off"))
    if seen.frontend != str(expected.frontend_status):
        out.append(f"the frontend answered {seen.frontend}, expected {expected.frontend_status}")
    return out


# -- looking at the cluster ---------------------------------------------------------------------------------
def observe(cluster: Cluster, expected: SteadyState) -> Observed:
    topology = cluster.topology
    names = list(expected.nodes)
    states = cluster.statuses(names) if names else {}
    health = {name: stat.health for name, stat in cluster.haproxy_servers().items()}
    answers: dict[str, str] = {}
    for name, want in expected.nodes.items():
        if want.serving:
            result = http_probe(
                cluster.address(name),
                path=topology.health.path,
                expect_status=topology.health.expect_status,
                timeout_s=topology.probe_timeout_s,
            )
            answers[name] = "" if result.ok else result.detail
    return Observed(
        states=states,
        health=health,
        answers=answers,
        controller=bool(daemon.controller_status(topology).get("ticking")),
        frontend=frontend_answer(topology),
    )


def frontend_answer(topology: Topology) -> str:
    """The status of one GET / through the frontend, or why none came."""
    url = urllib.parse.urlsplit(topology.balancer.frontend.url)
    connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=FRONTEND_TIMEOUT_S)
    try:
        connection.request("GET", "/", headers={"Connection": "close", "User-Agent": "relevo-steady"})
        response = connection.getresponse()
        response.read(65536)
        return str(response.status)
    except (OSError, http.client.HTTPException) as exc:
        return f"nothing ({type(exc).__name__}: {exc})"
    finally:
        connection.close()


def check(
    when: str,
    expected: SteadyState,
    look: Callable[[SteadyState], Observed],
    *,
    within_s: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> SteadyCheck:
    """Look until the steady state holds or `within_s` passed; what differed at the last look if not."""
    began = clock()
    while True:
        found = differences(expected, look(expected))
        took = clock() - began
        if not found or took >= within_s:
            return SteadyCheck(
                when=when,
                ok=not found,
                took_s=took,
                within_s=within_s,
                expected=expected.describe(),
                differences=tuple(found),
            )
        sleep(POLL_S)


def after_within_s(topology: Topology) -> float:
    """How long a cluster may take to return: a failback waits for its hold first."""
    return topology.standby.hold_s + STEADY_MARGIN_S

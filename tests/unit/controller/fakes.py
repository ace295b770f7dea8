"""A cluster in memory for controller tests: fake provider, fake HAProxy, fake probes, fake clock.

The fake HAProxy runs its own checks once per tick with `rise`/`fall` 2, and a server coming out of
maint starts from its last check result (as HAProxy 2.6 does), so tests see why `health up` matters.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from relevo.controller.actions import Done
from relevo.controller.events import EventLog, read_events
from relevo.controller.health import ProbeResult
from relevo.controller.loop import Controller
from relevo.controller.state import Busy, ControlAction, ServerView
from relevo.errors import ProviderError, RuntimeAPIError
from relevo.haproxy.runtime import AdminState
from relevo.model import Topology
from relevo.providers.base import Fault, NodeState
from relevo.topology import parse_topology

TICK_S = 0.1

NODES = """
nodes:
  web1: {role: web}
  web2: {role: web}
  web1bck: {role: standby, standby_for: web1}
  web2bck: {role: standby, standby_for: web2}
"""


def topology(tmp_path: Path, extra: str = "", nodes: str = NODES) -> Topology:
    text = f"name: t\nnetwork: 127.9.9.0/24\ncontroller: {{tick: 100ms, drain_timeout: 2s}}\n{extra}\n{nodes}"
    return parse_topology(text, source=None, state_dir=tmp_path / ".relevo")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeNode:
    process: NodeState = NodeState.STOPPED
    serves: bool = True  # answers its health probe while running
    hung: bool = False  # running, but probes time out (a hang the provider cannot see)
    start_error: bool = False  # the provider raises on start
    dies_on_start: bool = False  # start returns, but the processes are gone at once
    slow: bool = False  # answers, but its probe takes most of the timeout (overloaded)
    action_s: float = 0.0  # how long a provider start/stop of it takes (off the tick)


@dataclass
class FakeServer:
    admin: AdminState = AdminState.READY
    up: bool = True
    sessions: int = 0
    good: int = 0  # consecutive passing HAProxy checks
    bad: int = 0


@dataclass
class World:
    """Everything the controller observes and drives, and a record of what it did."""

    nodes: dict[str, FakeNode]
    servers: dict[str, FakeServer]
    clock: Clock = field(default_factory=Clock)
    haproxy_alive: bool = True
    balancer_process: NodeState = NodeState.RUNNING
    starts: Counter[str] = field(default_factory=Counter)
    stops: Counter[str] = field(default_factory=Counter)
    calls: list[tuple[str, str, str]] = field(default_factory=list)  # (verb, node, argument)
    runtime_errors: int = 0  # the next N Runtime API commands fail
    status_errors: int = 0  # the next N provider status calls fail
    refused: set[tuple[str, str]] = field(default_factory=set)  # (verb, server) HAProxy refuses
    balancer_action_s: float = 0.0
    lost_states: bool = False  # a restarted HAProxy comes back with its configured states
    # Each server-state dump (the admin states at that instant); a restarted HAProxy reads back the last.
    dumps: list[dict[str, AdminState]] = field(default_factory=list)
    failing_sets: Counter[tuple[str, str]] = field(default_factory=Counter)  # (server, state): N to fail

    @classmethod
    def seed(cls, topo: Topology, *, warm: bool = False, pool: bool = False) -> World:
        """`warm`: the standbys run (warm ones, or frozen ones just started by `relevo up`)."""
        nodes, servers = {}, {}
        for node in topo.nodes:
            running = node.standby_for is None or warm
            nodes[node.name] = FakeNode(process=NodeState.RUNNING if running else NodeState.STOPPED)
            standby_admin = AdminState.READY if pool else AdminState.MAINT
            is_standby = node.standby_for is not None
            servers[node.name] = FakeServer(
                admin=standby_admin if is_standby else AdminState.READY, up=not is_standby or warm
            )
        return cls(nodes=nodes, servers=servers)

    # --- the provider (Nodes protocol) ---------------------------------------------------------------
    def start(self, node: str) -> None:
        self.calls.append(("start", node, ""))
        self.starts[node] += 1
        if node == "ha1":
            self.balancer_process, self.haproxy_alive = NodeState.RUNNING, True
            # Without its server-state file (lost, or never written yet) a new HAProxy has the configured
            # states, never those of the process it replaces.
            if self.lost_states or not self.dumps:
                for name, server in self.servers.items():
                    server.admin = AdminState.MAINT if name.endswith("bck") else AdminState.READY
            else:  # load-server-state-from-file: the last dump's states
                for name, admin in self.dumps[-1].items():
                    self.servers[name].admin = admin
            return
        fake = self.nodes[node]
        if fake.start_error:
            raise ProviderError(f"{node} did not start")
        if fake.process is not NodeState.RUNNING:
            fake.process = NodeState.STOPPED if fake.dies_on_start else NodeState.RUNNING

    def stop(self, node: str) -> None:
        self.calls.append(("stop", node, ""))
        self.stops[node] += 1
        self.nodes[node].process = NodeState.STOPPED

    def fault(self, node: str, fault: object) -> None:
        self.calls.append(("fault", node, str(fault)))
        if node == "ha1":
            self.balancer_process, self.haproxy_alive = NodeState.STOPPED, False
        elif fault == Fault.HANG:  # a hang, or a frozen standby
            if self.nodes[node].process is NodeState.RUNNING:
                self.nodes[node].process = NodeState.PAUSED
        elif fault == Fault.RESUME:
            if self.nodes[node].process is NodeState.PAUSED:
                self.nodes[node].process = NodeState.RUNNING
        else:
            self.nodes[node].process = NodeState.STOPPED

    def status(self, node: str) -> NodeState:
        if self.status_errors:
            self.status_errors -= 1
            raise ProviderError("provider unreachable")
        return self.balancer_process if node == "ha1" else self.nodes[node].process

    # --- HAProxy (BalancerControl protocol) -------------------------------------------------------
    def _runtime(self) -> None:
        if not self.haproxy_alive:
            raise RuntimeAPIError("connection refused")
        if self.runtime_errors:
            self.runtime_errors -= 1
            raise RuntimeAPIError("HAProxy refused the command")

    def view(self) -> Mapping[str, ServerView]:
        self._runtime()
        return {
            name: ServerView(admin=s.admin, up=s.up and s.admin is not AdminState.MAINT, sessions=s.sessions)
            for name, s in self.servers.items()
        }

    def set_state(self, server: str, state: AdminState) -> None:
        self._runtime()
        if self.failing_sets[(server, str(state))] > 0:
            self.failing_sets[(server, str(state))] -= 1
            raise RuntimeAPIError(f"HAProxy refused state {state} for {server}")
        self.calls.append(("set-state", server, str(state)))
        self.servers[server].admin = state

    def health_up(self, server: str) -> None:
        self._runtime()
        if ("health-up", server) in self.refused:
            raise RuntimeAPIError(f"HAProxy refused health up for {server}")
        self.calls.append(("health-up", server, ""))
        self.servers[server].up = True

    def save(self) -> None:
        self._runtime()
        self.calls.append(("save", "", ""))
        self.dumps.append({name: server.admin for name, server in self.servers.items()})

    # --- probes -----------------------------------------------------------------------------------------
    def answers(self, node: str) -> bool:
        fake = self.nodes[node]
        return fake.process is NodeState.RUNNING and fake.serves and not fake.hung

    def collect(self, names: Sequence[str]) -> Mapping[str, ProbeResult]:
        results = {}
        for name in names:
            fake = self.nodes[name]
            if (fake.hung and fake.process is NodeState.RUNNING) or fake.process is NodeState.PAUSED:
                results[name] = ProbeResult(ok=False, detail="no answer within 1 s", ambiguous=True)
            elif fake.process is not NodeState.RUNNING:
                results[name] = ProbeResult(ok=False, detail="connection refused", certain=True)
            else:
                results[name] = ProbeResult(
                    ok=fake.serves,
                    detail="status 200" if fake.serves else "status 500",
                    took_s=0.8 if fake.slow else 0.002,
                )
        return results

    def haproxy_checks(self) -> None:
        """One round of HAProxy's own checks (rise 2, fall 2), skipped for servers in maint."""
        if not self.haproxy_alive:
            return
        for name, server in self.servers.items():
            if server.admin is AdminState.MAINT:
                continue
            if self.answers(name):
                server.good, server.bad = server.good + 1, 0
                server.up = server.up or server.good >= 2
            else:
                server.good, server.bad = 0, server.bad + 1
                server.up = server.up and server.bad < 2

    # --- helpers for assertions --------------------------------------------------------------------------
    def serving(self) -> set[str]:
        """Servers HAProxy would send new requests to."""
        return {n for n, s in self.servers.items() if s.admin is AdminState.READY and s.up}

    def verbs(self, node: str) -> list[tuple[str, str]]:
        return [(verb, arg) for verb, name, arg in self.calls if name == node]


class StepRunner:
    """Provider actions off the tick, deterministically: an action taking 0 s happens when submitted and
    is reported at the next harvest; a slower one happens (and is reported) once the fake clock has
    passed its duration. Times out like the real runner."""

    def __init__(self, world: World, perform: object = None, timeout_s: float = 30.0) -> None:
        self.world = world
        self.timeout_s = timeout_s
        self.perform = perform
        self.running: dict[str, tuple[ControlAction, float, bool]] = {}  # node -> (action, began, reported)
        self.finished: list[Done] = []

    def duration(self, action: ControlAction) -> float:
        return (
            self.world.balancer_action_s if action.node == "ha1" else self.world.nodes[action.node].action_s
        )

    def submit(self, action: ControlAction) -> bool:
        if action.node in self.running:
            return False
        now = self.world.clock.now
        if self.duration(action) <= 0:
            self.finished.append(self.run(action, now))
        else:
            self.running[action.node] = (action, now, False)
        return True

    def run(self, action: ControlAction, began: float) -> Done:
        assert callable(self.perform)
        try:
            self.perform(action)
        except Exception as exc:
            return Done(action=action, began=began, ended=self.world.clock.now, error=str(exc))
        return Done(action=action, began=began, ended=self.world.clock.now)

    def busy(self) -> dict[str, Busy]:
        return {node: action.busy for node, (action, _, _) in self.running.items()}

    def harvest(self) -> list[Done]:
        now = self.world.clock.now
        done, self.finished = self.finished, []
        for node, (action, began, reported) in list(self.running.items()):
            if now - began >= self.duration(action) - 1e-9:
                del self.running[node]
                result = self.run(action, began)
                if not reported:
                    done.append(result)
            elif not reported and now - began >= self.timeout_s:
                self.running[node] = (action, began, True)
                done.append(
                    Done(
                        action=action,
                        began=began,
                        ended=now,
                        error=f"still running after {self.timeout_s:g} s",
                    )
                )
        return done

    def close(self) -> None:
        pass


def controller(topo: Topology, world: World, *, action_timeout_s: float = 30.0) -> Controller:
    paths_root = topo.state_dir
    paths_root.mkdir(parents=True, exist_ok=True)
    runner = StepRunner(world, timeout_s=action_timeout_s)
    ctl = Controller(
        topo,
        nodes=world,
        balancer=world,
        collect=world.collect,
        events=EventLog(paths_root / "events.jsonl", wall_clock=world.clock),
        clock=world.clock,
        wall_clock=world.clock,
        state_file=paths_root / "controller-state.json",
        owned_file=paths_root / "controller-owned.json",
        runner=runner,
    )
    runner.perform = ctl.perform
    return ctl


def run(world: World, ctl: Controller, seconds: float) -> None:
    """Let `seconds` of fake time pass: each tick HAProxy checks, then the controller reconciles."""
    for _ in range(round(seconds / TICK_S)):
        world.haproxy_checks()
        ctl.tick()
        world.clock.now += TICK_S


def events(topo: Topology, kind: str | None = None) -> list[dict[str, Any]]:
    found = read_events(topo.state_dir / "events.jsonl")
    return [e for e in found if kind is None or e["kind"] == kind]

"""A cluster in memory for controller tests: fake provider, fake HAProxy, fake probes, fake clock.

The fake HAProxy runs its own checks once per tick with `rise`/`fall` 2, and a server coming out of
maint starts from its last check result (as HAProxy 2.6 does), so tests see why `health up` matters.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from relevo.controller.events import EventLog, read_events
from relevo.controller.health import ProbeResult
from relevo.controller.loop import Controller
from relevo.controller.state import ServerView
from relevo.errors import ProviderError, RuntimeAPIError
from relevo.haproxy.runtime import AdminState
from relevo.model import Topology
from relevo.providers.base import NodeState
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

    @classmethod
    def seed(cls, topo: Topology, *, warm: bool = False, pool: bool = False) -> World:
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

    def status(self, node: str) -> NodeState:
        if self.status_errors:
            self.status_errors -= 1
            raise ProviderError("provider unreachable")
        return self.balancer_process if node == "ha1" else self.nodes[node].process

    # --- HAProxy (Balancer protocol) ---------------------------------------------------------------
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
        self.calls.append(("set-state", server, str(state)))
        self.servers[server].admin = state

    def health_up(self, server: str) -> None:
        self._runtime()
        if ("health-up", server) in self.refused:
            raise RuntimeAPIError(f"HAProxy refused health up for {server}")
        self.calls.append(("health-up", server, ""))
        self.servers[server].up = True

    def save(self) -> None:
        self.calls.append(("save", "", ""))

    # --- probes -----------------------------------------------------------------------------------------
    def answers(self, node: str) -> bool:
        fake = self.nodes[node]
        return fake.process is NodeState.RUNNING and fake.serves and not fake.hung

    def collect(self, names: Sequence[str]) -> Mapping[str, ProbeResult]:
        results = {}
        for name in names:
            fake = self.nodes[name]
            if fake.hung and fake.process is NodeState.RUNNING:
                results[name] = ProbeResult(ok=False, detail="no answer within 0.3 s")
            elif fake.process is not NodeState.RUNNING:
                results[name] = ProbeResult(ok=False, detail="connection refused")
            else:
                results[name] = ProbeResult(
                    ok=fake.serves, detail="status 200" if fake.serves else "status 500"
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


def controller(topo: Topology, world: World) -> Controller:
    paths_root = topo.state_dir
    paths_root.mkdir(parents=True, exist_ok=True)
    return Controller(
        topo,
        nodes=world,
        balancer=world,
        collect=world.collect,
        events=EventLog(paths_root / "events.jsonl", wall_clock=world.clock),
        clock=world.clock,
        wall_clock=world.clock,
        state_file=paths_root / "controller-state.json",
    )


def run(world: World, ctl: Controller, seconds: float) -> None:
    """Let `seconds` of fake time pass: each tick HAProxy checks, then the controller reconciles."""
    for _ in range(round(seconds / TICK_S)):
        world.haproxy_checks()
        ctl.tick()
        world.clock.now += TICK_S


def events(topo: Topology, kind: str | None = None) -> list[dict[str, object]]:
    found = read_events(topo.state_dir / "events.jsonl")
    return [e for e in found if kind is None or e["kind"] == kind]

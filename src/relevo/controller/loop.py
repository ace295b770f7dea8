"""The reconcile loop: each tick observe (provider, own probes, HAProxy), decide (pure), act, record.

Nothing that goes wrong in a tick ends the loop: a provider or Runtime API that fails to answer is an
observation ("unknown"), a failed action is retried after a backoff (see `decide.note_failure`), and any
other exception is logged and the next tick starts afresh from what it observes.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from relevo.controller.decide import decide, note_failure, note_success
from relevo.controller.events import Event, EventKind, EventLog
from relevo.controller.haproxy_view import Balancer
from relevo.controller.health import NodeHealth, ProbeResult, Status, observe
from relevo.controller.state import (
    Action,
    ActionKind,
    Memory,
    NodeView,
    Observation,
    Plan,
    Policy,
    ServerView,
)
from relevo.files import write_atomic
from relevo.model import Topology
from relevo.providers.base import NodeState

LOG = logging.getLogger("relevo.controller")
# The same error is logged again at most this often, so a long outage does not flood the log.
REPEAT_LOG_S = 30.0

CollectFn = Callable[[Sequence[str]], Mapping[str, ProbeResult]]


class Nodes(Protocol):
    """The provider verbs the loop uses (a `Cluster`, or a fake in unit tests)."""

    def start(self, node: str) -> None: ...

    def stop(self, node: str) -> None: ...

    def status(self, node: str) -> NodeState: ...


def _nothing() -> None:
    pass


class Controller:
    def __init__(
        self,
        topology: Topology,
        *,
        nodes: Nodes,
        balancer: Balancer,
        collect: CollectFn,
        events: EventLog,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        state_file: Path | None = None,
        housekeeping: Callable[[], None] = _nothing,
    ) -> None:
        self.topology = topology
        self.policy = Policy.from_topology(topology)
        self.nodes = nodes
        self.balancer = balancer
        self.collect = collect
        self.events = events
        self.clock = clock
        self.wall_clock = wall_clock
        self.state_file = state_file
        self.housekeeping = housekeeping
        self.web = tuple(n.name for n in topology.nodes)
        self.health = {name: NodeHealth() for name in self.web}
        self.memory = Memory()
        self.observation: Observation | None = None
        self.ticks = 0
        self.started_at = wall_clock()
        self._logged: dict[str, tuple[str, float]] = {}

    # --- one tick ------------------------------------------------------------------------------------
    def tick(self) -> Plan:
        self.housekeeping()
        obs = self.observe()
        plan = decide(self.policy, obs, self.memory)
        self.memory = plan.memory
        for event in plan.events:
            self.record(event)
        runtime_changed = False
        for action in plan.actions:
            if self.execute(action, obs) and action.runtime:
                runtime_changed = True
        if runtime_changed:
            self.guard("save-state", self.balancer.save)
        self.ticks += 1
        self.write_state()
        return plan

    def observe(self) -> Observation:
        now = self.clock()
        probed = self.collect(self.web)
        processes: dict[str, NodeState | None] = {}
        for name in self.web:
            result = probed.get(name)
            # A node that just answered its probe is running: asking the provider too would cost a
            # /proc scan (local) or an API call (LXD) per node per tick for nothing.
            state = NodeState.RUNNING if result and result.ok else self.process(name)
            processes[name] = state
            if state in (NodeState.STOPPED, NodeState.MISSING, NodeState.PAUSED):
                # The provider knows: no probe can pass, and waiting for `fall` would only cost time.
                what = "hung (processes paused)" if state is NodeState.PAUSED else f"process {state}"
                result = ProbeResult(ok=False, detail=what, certain=True)
            if result is not None:
                self.update_health(name, result, now)
        servers: Mapping[str, ServerView] = {}
        haproxy = True
        try:
            servers = self.balancer.view()
            self._logged.pop("haproxy", None)
        except Exception as exc:  # any failure to read HAProxy is "not answering"
            haproxy = False
            self.log_error("haproxy", f"HAProxy's Runtime API does not answer: {exc}")
        # HAProxy answering is proof enough that it runs; only a silent one is worth asking about.
        balancer_state = NodeState.RUNNING if haproxy else self.process(self.policy.balancer)
        nodes = {
            name: NodeView(process=processes[name], health=self.health[name], server=servers.get(name))
            for name in self.web
        }
        self.observation = Observation(now=now, nodes=nodes, balancer=balancer_state, haproxy=haproxy)
        return self.observation

    def process(self, name: str) -> NodeState | None:
        try:
            state = self.nodes.status(name)
        except Exception as exc:  # an unknown state this tick, never a dead loop
            self.log_error(f"status:{name}", f"cannot tell {name}'s state: {exc}")
            return None
        self._logged.pop(f"status:{name}", None)
        return state

    def update_health(self, name: str, result: ProbeResult, now: float) -> None:
        before = self.health[name]
        after = observe(before, result, now, rise=self.policy.rise, fall=self.policy.fall)
        self.health[name] = after
        if after.status is before.status or before.status is Status.UNKNOWN:
            return  # a controller that just started learns the state: no transition to report
        durations = {}
        if after.status is Status.DOWN and after.last_ok_at is not None:
            durations["detection_s"] = now - after.last_ok_at
        self.record(
            Event(
                kind=EventKind.HEALTH,
                node=name,
                from_=before.status,
                to=after.status,
                reason=result.detail,
                durations=durations,
            )
        )

    def execute(self, action: Action, obs: Observation) -> bool:
        view = obs.nodes.get(action.node)
        began = self.clock()
        try:
            match action.kind:
                case ActionKind.START:
                    self.nodes.start(action.node)
                case ActionKind.STOP:
                    self.nodes.stop(action.node)
                case ActionKind.SET_STATE:
                    assert action.state is not None
                    self.balancer.set_state(action.node, action.state)
                case ActionKind.HEALTH_UP:
                    self.balancer.health_up(action.node)
        except Exception as exc:  # every failure is retried after a backoff, logged
            self.memory, events = note_failure(self.policy, self.memory, action, self.clock(), str(exc))
            for event in events:
                self.record(event)
            return False
        self.memory = note_success(self.memory, action)
        before, after = _transition(action, view, obs.balancer)
        self.record(
            Event(
                kind=EventKind.ACTION,
                node=action.node,
                from_=before,
                to=after,
                reason=f"{action.kind}: {action.reason}" if action.reason else str(action.kind),
                durations={"took_s": self.clock() - began},
            )
        )
        return True

    # --- records -------------------------------------------------------------------------------------
    def record(self, event: Event) -> None:
        record = self.events.append(event)
        durations = "".join(f" {k}={v:g}" for k, v in record["durations"].items())
        if event.kind in (EventKind.ERROR, EventKind.STANDBY_FAILED):
            level = logging.WARNING
        else:  # routine steps only with `relevo watch --verbose`: the journal has them all anyway
            level = logging.DEBUG if event.kind is EventKind.ACTION else logging.INFO
        message = f"{event.kind} {event.node}: {event.from_} -> {event.to} ({event.reason}){durations}"
        LOG.log(level, "%s", message)

    def log_error(self, key: str, message: str) -> None:
        """Log an error when it first happens, when it changes, and then every REPEAT_LOG_S."""
        now = self.clock()
        last = self._logged.get(key)
        if last is None or last[0] != message or now - last[1] >= REPEAT_LOG_S:
            LOG.warning("%s", message)
            self._logged[key] = (message, now)

    def guard(self, key: str, call: Callable[[], None]) -> None:
        try:
            call()
        except Exception as exc:  # a side duty; the next tick tries again
            self.log_error(key, f"{key} failed: {exc}")

    def snapshot(self) -> dict[str, Any]:
        """The controller's view, for `relevo status` (written to controller-state.json every tick)."""
        obs, now = self.observation, self.clock()
        nodes: dict[str, Any] = {}
        for name in self.web:
            health = self.health[name]
            view = obs.nodes.get(name) if obs else None
            server = view.server if view else None
            failed = self.memory.failed.get(name)
            nodes[name] = {
                "process": str(view.process) if view and view.process else None,
                "health": str(health.status),
                "for_s": round(now - health.since, 3) if health.status is not Status.UNKNOWN else None,
                "probe": health.detail,
                "admin": str(server.admin) if server else None,
                "haproxy_up": server.up if server else None,
                "sessions": server.sessions if server else None,
                "starting": name in self.memory.starting,
                "draining": name in self.memory.draining,
                "failed": {
                    "attempts": failed.attempts,
                    "retry_in_s": round(max(0.0, failed.next_at - now), 3),
                }
                if failed
                else None,
            }
        return {
            "pid": os.getpid(),
            "started": self.started_at,
            "last_tick": self.wall_clock(),
            "ticks": self.ticks,
            "tick_s": self.topology.controller.tick_s,
            "haproxy": obs.haproxy if obs else None,
            "balancer": str(obs.balancer) if obs and obs.balancer else None,
            "nodes": nodes,
        }

    def write_state(self) -> None:
        if self.state_file is None:
            return
        try:
            write_atomic(self.state_file, json.dumps(self.snapshot()))
        except OSError as exc:
            self.log_error("state-file", f"cannot write {self.state_file}: {exc}")

    # --- the daemon ------------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Tick every `tick_s` until `stop` is set (by a signal handler: it does nothing else)."""
        tick_s = self.topology.controller.tick_s
        self.record(
            Event(
                kind=EventKind.CONTROLLER,
                node="controller",
                from_="stopped",
                to="running",
                reason=f"pid {os.getpid()}, tick {tick_s:g} s",
            )
        )
        delay = 0.0
        while not stop.wait(delay):
            began = self.clock()
            try:
                self.tick()
                self._logged.pop("tick", None)
            except Exception:  # the loop must outlive any one bad tick
                if "tick" not in self._logged:
                    LOG.exception("a tick failed; the next one starts afresh")
                self.log_error("tick", "ticks keep failing (see the first traceback above)")
            delay = max(0.0, tick_s - (self.clock() - began))
        self.record(
            Event(
                kind=EventKind.CONTROLLER,
                node="controller",
                from_="running",
                to="stopped",
                reason="asked to stop",
            )
        )


def _transition(action: Action, view: NodeView | None, balancer: NodeState | None) -> tuple[str, str]:
    """What an action changed, in the words `relevo events` shows: from -> to."""
    server = view.server if view else None
    process = view.process if view else balancer
    match action.kind:
        case ActionKind.START:
            return str(process or "unknown"), "running"
        case ActionKind.STOP:
            return str(process or "unknown"), "stopped"
        case ActionKind.SET_STATE:
            return str(server.admin) if server else "unknown", str(action.state)
        case _:
            return ("up" if server and server.up else "down"), "up"

"""The reconcile loop: each tick observe (provider, own probes, HAProxy), decide (pure), act, record.

Each job is its own object: `observer.Observer` folds what is seen into an `Observation`, the pure
`decide()` plans, `actor.Actor` carries the plan out (Runtime API commands inline, provider actions off
the tick through `actions.ActionRunner`), and `recorder.Recorder` journals and logs; the owned-states
file (`owned.py`) and the status file (`status.py`) are written here, once per tick.

Nothing that goes wrong in a tick ends the loop: a provider or Runtime API that fails to answer is an
observation ("unknown"), a failed action is retried after a backoff (see `decide.note_failure`), a
journal that cannot be written keeps its events in memory, and any other exception is logged and the
next tick starts afresh from what it observes.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from relevo.controller.acting import Charge
from relevo.controller.actions import ActionRunner, Done, Runner
from relevo.controller.actor import Actor
from relevo.controller.decide import decide, note_failure, note_success, pending
from relevo.controller.events import Event, EventKind, EventLog
from relevo.controller.haproxy_view import BalancerControl
from relevo.controller.health import NodeHealth
from relevo.controller.observer import CollectFn, Observer
from relevo.controller.owned import OwnedFile, unsettled
from relevo.controller.recorder import Listener, Recorder
from relevo.controller.settled import SettledStates
from relevo.controller.sources import Heard
from relevo.controller.state import ActionKind, Decision, Observation, Policy
from relevo.controller.status import Seen, diff_settings, settings, snapshot
from relevo.files import write_atomic
from relevo.model import Topology
from relevo.polling import wait_until
from relevo.providers.base import Nodes

LOG = logging.getLogger("relevo.controller")
# The loop sleeps in slices this long, so a stop request is noticed quickly whatever the tick.
SLEEP_SLICE_S = 0.05
# While a failover is under way (a standby starting or thawing, a pair without service), the next tick
# comes this soon: the standby's first passing probe is what puts it in service.
FAST_TICK_S = 0.02


def _charge_word(charge: Charge) -> str:
    return "acting" if charge.acts else "standing by"


class StopFlag(Protocol):
    def is_set(self) -> bool: ...


class EventSources(Protocol):
    """Deaths heard beside the tick (`sources.Sources`, or a fake in unit tests)."""

    def start(self, wake: Callable[[], None]) -> None: ...

    def heard(self) -> list[Heard]: ...

    def refresh(self) -> None: ...

    def close(self) -> None: ...


def _nothing() -> None:
    pass


class Controller:
    def __init__(
        self,
        topology: Topology,
        *,
        nodes: Nodes,
        balancer: BalancerControl,
        collect: CollectFn,
        events: EventLog,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        state_file: Path | None = None,
        owned_file: Path | None = None,
        server_state_file: Path | None = None,
        housekeeping: Callable[[], None] = _nothing,
        runner: Runner | None = None,
        sources: EventSources | None = None,
        wake: threading.Event | None = None,
        listener: Listener | None = None,
        vip_holder: Callable[[], str | None] | None = None,
        provider_wait_s: float = 0.0,
        charge: Callable[[], Charge] | None = None,
        hurry: Callable[[str], None] | None = None,
    ) -> None:
        self.topology = topology
        self.policy = Policy.from_topology(topology)
        self.clock = clock
        self.wall_clock = wall_clock
        self.state_file = state_file
        self.recorder = Recorder(events, clock=clock, listener=listener)
        self.observer = Observer(
            topology,
            nodes=nodes,
            balancer=balancer,
            collect=collect,
            recorder=self.recorder,
            clock=clock,
            vip_holder=vip_holder,
        )
        self.actor = Actor(nodes=nodes, balancer=balancer, clock=clock)
        self.perform = self.actor.perform
        self.owned_states = OwnedFile(
            owned_file, servers=self.observer.web, log_error=self.recorder.log_error
        )
        self.memory = self.owned_states.load()
        self.observer.balancer_lapsed = self.owned_states.lapsed()
        self.settled_states = SettledStates(balancer.save, server_state_file)
        self.housekeeping = housekeeping
        self.sources = sources
        # Set by an event source or a finished provider action: the loop ticks at once.
        self.wake = wake or threading.Event()
        self.runner: Runner = runner or ActionRunner(
            self.perform, timeout_s=topology.controller.action_timeout_s, clock=clock, done=self.wake.set
        )
        self.last_snapshot: dict[str, Any] = {}
        self.ticks = 0
        self.started_at = wall_clock()
        # The longest a tick may wait on the providers' APIs (their status), said in the state file.
        self.provider_wait_s = provider_wait_s
        # A VM pair's balancer: may this controller act now (charge.ChargeWatch)? None: always.
        self.charge = charge
        self.charge_seen: Charge | None = None
        # A web node just started is probed until it first answers, waking the loop then (probe.Prober's
        # `hurry`): its first pass puts a standby in service, and need not wait for the next tick's probe.
        self.hurry = hurry

    # What tests and the daemon read or swap in (a failing HAProxy, a journal on a full disk): kept where
    # they were before the split, and a swap reaches every part that uses them.
    @property
    def balancer(self) -> BalancerControl:
        return self.observer.balancer

    @balancer.setter
    def balancer(self, balancer: BalancerControl) -> None:
        self.observer.balancer = self.actor.balancer = balancer

    @property
    def events(self) -> EventLog:
        return self.recorder.events

    @events.setter
    def events(self, events: EventLog) -> None:
        self.recorder.events = events

    @property
    def observation(self) -> Observation | None:
        return self.observer.observation

    @property
    def health(self) -> dict[str, NodeHealth]:
        return self.observer.health

    @property
    def listener(self) -> Listener | None:
        return self.recorder.listener

    @listener.setter
    def listener(self, listener: Listener | None) -> None:
        self.recorder.listener = listener

    # --- one tick ------------------------------------------------------------------------------------
    def tick(self) -> Decision:
        self.housekeeping()
        self.events.flush()  # a journal that could not be written gets another try every tick
        thawed = False
        for done in self.runner.harvest():
            self.finished(done)
            thawed |= done.action.kind is ActionKind.THAW and done.error is None
        # A standby just thawed serves with the health it was frozen with: act now, not after probes.
        obs = self.observe(urgent=thawed)
        if not self.in_charge():
            # Observed (its health current when it takes charge), nothing decided or done: it converges
            # from what it sees then, as a restarted controller does.
            self.ticks += 1
            self.write_state()
            return Decision(actions=(), events=(), memory=self.memory)
        plan = decide(self.policy, obs, self.memory)
        self.memory = plan.memory
        for event in plan.events:
            self.recorder.record(event)
        lapsed = self.observer.balancer_lapsed
        self.owned_states.save(
            self.memory, {**unsettled(self.memory), **pending(plan.actions)}, lapsed=lapsed
        )
        succeeded: set[str] = set()
        runtime_changed = False
        for action in plan.actions:
            if action.needs and action.needs not in succeeded:
                continue  # what it depends on failed this tick: the next tick decides again
            if not action.runtime:
                if self.runner.submit(action):
                    view = obs.nodes.get(action.node)
                    self.recorder.began(action, view.process if view else obs.balancer)
                    if self.hurry is not None and action.kind is ActionKind.START and view is not None:
                        self.hurry(action.node)
                continue
            done = self.actor.execute(action)
            self.finished(done)
            if done.error is None:
                succeeded.add(action.key)
                runtime_changed = True
        if runtime_changed or any(e.kind is EventKind.OPERATOR for e in plan.events):
            self.settled_states.changed()
        busy = bool(plan.actions) or bool(self.runner.busy()) or bool(unsettled(self.memory))
        settled = obs.haproxy and not busy and not self.memory.starting and not self.memory.draining
        self.recorder.guard("save-state", lambda: self.settled_states.tick(settled=settled))
        self.owned_states.save(self.memory, unsettled(self.memory), lapsed=self.observer.balancer_lapsed)
        self.ticks += 1
        self.write_state()
        if self.sources is not None:
            self.sources.refresh()  # a node started or stopped this tick: watch its new process
        return plan

    def in_charge(self) -> bool:
        """Whether this controller may act this tick (always, but beside a VM pair's balancer: acting.py);
        each change of the verdict or of its reason is journalled."""
        if self.charge is None:
            return True
        verdict = self.charge()
        if verdict != self.charge_seen:
            was = self.charge_seen
            self.recorder.record(
                Event(
                    kind=EventKind.CONTROLLER,
                    node="controller",
                    from_="starting" if was is None else _charge_word(was),
                    to=_charge_word(verdict),
                    reason=verdict.why,
                )
            )
            self.charge_seen = verdict
        return verdict.acts

    def observe(self, *, urgent: bool = False) -> Observation:
        self.wake.clear()
        heard = self.sources.heard() if self.sources is not None else []
        if heard or urgent:
            self.wake.set()  # something to act on at once: the probes' answers are not waited for
        sources = self.sources

        def hear() -> list[Heard]:
            return sources.heard() if sources is not None else []

        return self.observer.observe(heard=heard, hear=hear, busy=self.runner.busy(), urgent=urgent)

    def finished(self, done: Done) -> None:
        """An action ended: its outcome folded into the memory (a failure is retried after a backoff),
        and journalled."""
        action = done.action
        if done.error is not None:
            self.memory, events = note_failure(self.policy, self.memory, action, self.clock(), done.error)
            for event in events:
                self.recorder.record(event)
            return
        self.memory = note_success(self.memory, action)
        if action.kind is ActionKind.FREEZE:
            self.observer.froze(action.node, done.ended)
        elif action.kind is ActionKind.THAW:
            self.observer.thawed(action.node, done.ended)
        obs = self.observer.observation
        view = obs.nodes.get(action.node) if obs is not None else None
        self.recorder.done(action, took_s=done.ended - done.began, at=done.ended, view=view)

    # --- status ----------------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """The controller's view, for `relevo status` (written to controller-state.json every tick)."""
        seen = Seen(
            now=self.clock(),
            wall=self.wall_clock(),
            observation=self.observer.observation,
            health=self.observer.health,
            memory=self.memory,
            balancer=self.observer.balancer_seen,
            vip_holder=self.observer.vip_seen.holder,
        )
        return snapshot(
            self.topology,
            seen,
            started=self.started_at,
            ticks=self.ticks,
            events=self.events,
            provider_wait_s=self.provider_wait_s,
        )

    def write_state(self) -> None:
        self.last_snapshot = self.snapshot()
        if self.charge_seen is not None:
            self.last_snapshot["charge"] = {"acts": self.charge_seen.acts, "why": self.charge_seen.why}
        if self.state_file is None:
            return
        try:
            write_atomic(self.state_file, json.dumps(self.last_snapshot))
        except OSError as exc:
            self.recorder.log_error("state-file", f"cannot write {self.state_file}: {exc}")

    # --- the daemon ------------------------------------------------------------------------------------
    def reload(self, topology: Topology) -> list[str]:
        """Apply an edited topology (same nodes: the rest needs a new controller); return what changed."""
        changes = diff_settings(settings(self.topology), settings(topology))
        self.topology = topology
        self.policy = Policy.from_topology(topology)
        self.observer.reconfigure(topology, self.policy)
        self.recorder.record(
            Event(
                kind=EventKind.CONTROLLER,
                node="controller",
                from_="running",
                to="reloaded",
                reason="; ".join(changes) if changes else "topology re-read: nothing changed",
            )
        )
        return changes

    def run(self, stop: StopFlag, reload: Callable[[], Topology | None] | None = None) -> None:
        """Tick every `tick_s` until `stop` is set (by a signal handler: it does nothing else). `reload`,
        called between ticks, returns an edited topology to apply (None: nothing asked)."""
        tick_s = self.topology.controller.tick_s
        self.recorder.record(
            Event(
                kind=EventKind.CONTROLLER,
                node="controller",
                from_="stopped",
                to="running",
                reason=f"pid {os.getpid()}, tick {tick_s:g} s",
            )
        )
        if self.sources is not None:
            self.sources.start(self.wake.set)
        while not stop.is_set():
            began = self.clock()
            try:
                self.tick()
                self.recorder.resolved("tick")
            except Exception:  # the loop must outlive any one bad tick
                if not self.recorder.failing("tick"):
                    LOG.exception("a tick failed; the next one starts afresh")
                self.recorder.log_error("tick", "ticks keep failing (see the first traceback above)")
            if self.listener is not None:
                self.listener.on_tick(self.clock() - began, self.last_snapshot)
            if reload is not None and (edited := reload()) is not None:
                self.reload(edited)
            # Until the next tick is due, or at once on a death heard or a provider action done.
            left = began + self.next_tick_s() - self.clock()
            woken = lambda: stop.is_set() or self.wake.is_set()  # noqa: E731
            wait_until(woken, left, SLEEP_SLICE_S, clock=self.clock, sleep=self.wake.wait)
        self.runner.close()
        if self.sources is not None:
            self.sources.close()
        self.recorder.record(
            Event(
                kind=EventKind.CONTROLLER,
                node="controller",
                from_="running",
                to="stopped",
                reason="asked to stop",
            )
        )
        self.events.flush()

    def next_tick_s(self) -> float:
        """The tick, or FAST_TICK_S while a failover is under way (until the standby's first pass)."""
        now = self.clock()
        recent = any(now - since < self.policy.start_timeout_s for since in self.memory.outage.values())
        hurried = bool(self.memory.starting) or recent
        tick_s = self.topology.controller.tick_s
        return min(tick_s, FAST_TICK_S) if hurried else tick_s

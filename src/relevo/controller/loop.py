"""The reconcile loop: each tick observe (provider, own probes, HAProxy), decide (pure), act, record.

Nothing that goes wrong in a tick ends the loop: a provider or Runtime API that fails to answer is an
observation ("unknown"), a failed action is retried after a backoff (see `decide.note_failure`), a
journal that cannot be written keeps its events in memory, and any other exception is logged and the
next tick starts afresh from what it observes. Runtime API commands are bounded well below the tick;
provider actions (start, stop, restart) run off the tick (`actions.ActionRunner`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from relevo.controller import balancers
from relevo.controller.actions import ActionRunner, Done, Runner
from relevo.controller.decide import decide, note_failure, note_success, pending
from relevo.controller.events import Event, EventKind, EventLog
from relevo.controller.haproxy_view import Balancer, PolledBalancer
from relevo.controller.health import NodeHealth, ProbeResult, Status, observe
from relevo.controller.settled import SettledStates
from relevo.controller.sources import Heard
from relevo.controller.state import (
    Action,
    ActionKind,
    Busy,
    Memory,
    NodeView,
    Observation,
    Plan,
    Policy,
    ServerView,
    readonly,
)
from relevo.controller.vip import VipSeen, follow
from relevo.files import open_nofollow, write_atomic
from relevo.haproxy.runtime import AdminState
from relevo.model import Temperature, Topology
from relevo.polling import wait_until
from relevo.providers.base import BulkStatus, Fault, Nodes, NodeState

LOG = logging.getLogger("relevo.controller")
# The same error is logged again at most this often, so a long outage does not flood the log.
REPEAT_LOG_S = 30.0
# An answer slower than this share of the probe timeout marks the node `overloaded` (journalled only).
SLOW_SHARE = 0.5
# The loop sleeps in slices this long, so a stop request is noticed quickly whatever the tick.
SLEEP_SLICE_S = 0.05
# While a failover is under way (a standby starting or thawing, a pair without service), the next tick
# comes this soon: the standby's first passing probe is what puts it in service.
FAST_TICK_S = 0.02
# A standby frozen on purpose: how often the provider is asked whether it still is (see `observe`).
FROZEN_RECHECK_S = 1.0

CollectFn = Callable[[Sequence[str]], Mapping[str, ProbeResult]]


class StopFlag(Protocol):
    def is_set(self) -> bool: ...


class EventSources(Protocol):
    """Deaths heard beside the tick (`sources.Sources`, or a fake in unit tests)."""

    def start(self, wake: Callable[[], None]) -> None: ...

    def heard(self) -> list[Heard]: ...

    def refresh(self) -> None: ...

    def close(self) -> None: ...


class Observer(Protocol):
    """Told each journal record and each tick's duration (the metrics, `controller/metrics.py`)."""

    def on_event(self, record: Mapping[str, Any]) -> None: ...

    def on_tick(self, took_s: float, snapshot: Mapping[str, Any]) -> None: ...


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
        owned_file: Path | None = None,
        server_state_file: Path | None = None,
        housekeeping: Callable[[], None] = _nothing,
        runner: Runner | None = None,
        sources: EventSources | None = None,
        wake: threading.Event | None = None,
        observer: Observer | None = None,
        vip_holder: Callable[[], str | None] | None = None,
    ) -> None:
        self.topology = topology
        # A pair with a VIP: which balancer holds it, as the network says (providers' HoldsVip).
        self.vip_holder = vip_holder
        self.vip_seen = VipSeen()
        self.policy = Policy.from_topology(topology)
        self.nodes = nodes
        self.balancer = balancer
        self.collect = collect
        self.events = events
        self.clock = clock
        self.wall_clock = wall_clock
        self.state_file = state_file
        self.owned_file = owned_file
        self.settled_states = SettledStates(balancer.save, server_state_file)
        self.housekeeping = housekeeping
        self.sources = sources
        # Set by an event source or a finished provider action: the loop ticks at once.
        self.wake = wake or threading.Event()
        self.observer = observer
        self.last_snapshot: dict[str, Any] = {}
        self.runner: Runner = runner or ActionRunner(
            self.perform, timeout_s=topology.controller.action_timeout_s, clock=clock, done=self.wake.set
        )
        self.web = tuple(n.name for n in topology.nodes)
        self.health = {name: NodeHealth() for name in self.web}
        saved = self._owned_data()
        self.memory = Memory(
            owned=readonly(self._states(saved.get("owned"))),
            manual=self._manual(saved.get("manual")),
            inherited=readonly(self._states(saved.get("pending"))),
        )
        self._saved_owned: tuple[object, ...] = ()
        self.observation: Observation | None = None
        self.ticks = 0
        self.started_at = wall_clock()
        self.balancer_seen = "answering"
        # Seen hung or stopped since HAProxy last answered: it comes back restarted, with states read from
        # a file or its configuration. One that only stopped answering while it ran kept every state.
        self.balancer_lapsed = False
        self.peer_seen: dict[str, str] = {}
        self._overloaded: set[str] = set()
        self._logged: dict[str, tuple[str, float]] = {}
        # Standbys frozen on purpose: not probed (a frozen process never answers) and their health kept
        # from before the freeze, so that a thaw puts them in service without waiting for a probe.
        self.frozen: dict[str, float] = {}  # standby -> when it was frozen (monotonic)
        self._frozen_checked: dict[str, float] = {}  # standby -> when the provider was last asked
        self._thawed: dict[str, float] = {}  # standby -> when the controller last thawed it

    # --- one tick ------------------------------------------------------------------------------------
    def tick(self) -> Plan:
        self.housekeeping()
        self.events.flush()  # a journal that could not be written gets another try every tick
        thawed = False
        for done in self.runner.harvest():
            self.finished(done)
            thawed |= done.action.kind is ActionKind.THAW and done.error is None
        # A standby just thawed serves with the health it was frozen with: act now, not after probes.
        obs = self.observe(urgent=thawed)
        plan = decide(self.policy, obs, self.memory)
        self.memory = plan.memory
        for event in plan.events:
            self.record(event)
        self.save_owned({**self.unsettled(), **pending(plan.actions)})
        succeeded: set[str] = set()
        runtime_changed = False
        for action in plan.actions:
            if action.needs and action.needs not in succeeded:
                continue  # what it depends on failed this tick: the next tick decides again
            if not action.runtime:
                if self.runner.submit(action):
                    self.submitted(action, obs)
            elif self.execute(action, obs):
                succeeded.add(action.key)
                runtime_changed = True
        if runtime_changed or any(e.kind is EventKind.OPERATOR for e in plan.events):
            self.settled_states.changed()
        settled = obs.haproxy and not plan.actions and not self.runner.busy() and not self.unsettled()
        settled = settled and not self.memory.starting and not self.memory.draining
        self.guard("save-state", lambda: self.settled_states.tick(settled=settled))
        self.save_owned(self.unsettled())
        self.ticks += 1
        self.write_state()
        if self.sources is not None:
            self.sources.refresh()  # a node started or stopped this tick: watch its new process
        return plan

    def observe(self, *, urgent: bool = False) -> Observation:
        self.wake.clear()
        heard = self.sources.heard() if self.sources is not None else []
        if heard or urgent:
            self.wake.set()  # something to act on at once: the probes' answers are not waited for
        self.frozen = self.frozen_idle()
        busy = self.runner.busy()
        # Not probed, health kept: frozen on purpose, or being frozen or thawed (a probe caught by the
        # freeze would only time out, and count against a standby that is fine).
        resting = set(self.frozen) | {n for n, b in busy.items() if b in (Busy.FREEZING, Busy.THAWING)}
        probed = self.collect([name for name in self.web if name not in resting])
        # A death heard while the probes were out cuts their wait short, and counts in this tick.
        deaths = self.heard_deaths(heard + (self.sources.heard() if self.sources is not None else []))
        now = self.clock()
        # A node that just answered its probe is running: asking the provider too would cost a /proc
        # scan (local) or an API call (LXD) per node per tick for nothing.
        unsure = [name for name in self.web if not ((r := probed.get(name)) and r.ok)]
        # A standby frozen on purpose is asked about at most every FROZEN_RECHECK_S (a local status is a
        # /proc scan of its group): its death is heard at once anyway, where a source watches it.
        recheck = [n for n in unsure if n not in self.frozen or _recheck_due(self._frozen_checked, n, now)]
        known = self.processes(recheck)
        for name in unsure:
            if name not in recheck:
                known[name] = NodeState.PAUSED
            elif name in self.frozen:
                self._frozen_checked[name] = now
        processes: dict[str, NodeState | None] = {}
        for name in self.web:
            result = probed.get(name)
            state = NodeState.RUNNING if result and result.ok else known.get(name)
            if (death := deaths.get(name)) is not None and not _answered_since(result, death.at):
                state = death.event.state  # heard from the substrate: certain, whatever the provider said
                result = ProbeResult(
                    ok=False,
                    detail=f"{death.event.detail} (first heard by {death.event.source})",
                    certain=True,
                    sent_at=death.at,
                )
            processes[name] = state
            if name in resting and name not in deaths and state not in (NodeState.STOPPED, NodeState.MISSING):
                continue  # frozen on purpose (or on its way to or from it): nothing to judge yet
            if state in (NodeState.STOPPED, NodeState.MISSING, NodeState.PAUSED) and name not in deaths:
                # The provider knows: no probe can pass, and waiting for `fall` would only cost time.
                what = "hung (processes paused)" if state is NodeState.PAUSED else f"process {state}"
                sent = result.sent_at if result else None
                result = ProbeResult(ok=False, detail=what, certain=True, sent_at=sent)
            if result is not None:
                self.update_health(name, result, now)
        servers: Mapping[str, ServerView] = {}
        haproxy = True
        try:
            if isinstance(self.balancer, PolledBalancer) and (heard or urgent):
                servers = self.balancer.view(wait=False)  # act now on what was read a moment ago
            else:
                servers = self.balancer.view()
            self._logged.pop("haproxy", None)
        except Exception as exc:  # any failure to read HAProxy is "not answering"
            haproxy = False
            self.log_error("haproxy", f"HAProxy's Runtime API does not answer: {exc}")
        # HAProxy answering is proof enough that it runs; only a silent one is worth asking about.
        name = self.policy.balancer
        answering = balancers.answering(self.balancer, name, haproxy)
        if (death := deaths.get(name)) is not None:
            # Its view may be a moment old: the process it came from is gone.
            answering = {**answering, name: False}
            haproxy = haproxy and bool(self.policy.peers)  # alone, no HAProxy answers now
            self.log_error("haproxy", f"HAProxy {death.event.detail} (heard by {death.event.source})")
        silent = [n for n in (name, *self.policy.peers) if not answering[n]]
        known = self.processes(silent)
        states = {n: NodeState.RUNNING if answering[n] else known.get(n) for n in answering}
        if death is not None:
            states[name] = death.event.state
        balancer_state = states[name]
        returned = haproxy and self.balancer_lapsed
        self.note_balancer(answering[name], balancer_state)
        lapsed = self.balancer_seen in ("hung", "stopped")
        self.balancer_lapsed = lapsed or (self.balancer_lapsed and not haproxy)
        for peer in self.policy.peers:
            self.note_peer(peer, answering[peer], states[peer])
        for event in balancers.synced_events(self.balancer):
            self.record(event)
        self.follow_vip(answering, states, now)
        nodes = {
            name: NodeView(
                process=processes[name],
                health=self.health[name],
                server=servers.get(name),
                busy=busy.get(name),
            )
            for name in self.web
        }
        self.observation = Observation(
            now=now,
            nodes=nodes,
            balancer=balancer_state,
            haproxy=haproxy,
            haproxy_returned=returned,
            balancer_busy=busy.get(self.policy.balancer),
            peers=readonly({p: states[p] for p in self.policy.peers}),
            peers_busy=readonly({p: busy[p] for p in self.policy.peers if p in busy}),
        )
        return self.observation

    def frozen_idle(self) -> dict[str, float]:
        """Standbys the controller froze (or, restarted, found frozen in maint), with when: kept until an
        observation made after the freeze shows them running or gone."""
        if self.policy.temperature is not Temperature.FROZEN:
            return {}
        obs = self.observation
        found: dict[str, float] = {}
        if obs is None:
            # A controller just started: a standby already frozen is one at rest (a frozen standby that
            # serves is not one the controller freezes). Probed now, its probe would hang until its
            # timeout and count against it, and delay its first probe after a thaw.
            states = self.processes(self.policy.standbys)
            now = self.clock()
            return {name: now for name, state in states.items() if state is NodeState.PAUSED}
        for name in self.policy.standbys:
            view = obs.nodes.get(name) if obs else None
            process = view.process if view else None
            since = self.frozen.get(name)
            if since is not None:
                if obs is None or obs.now <= since or process in (None, NodeState.PAUSED):
                    found[name] = since
            elif self._thawed.get(name, float("-inf")) >= obs.now:
                continue  # thawed since that observation was made: it is not at rest any more
            elif view is not None and process is NodeState.PAUSED:
                server = view.server
                if server is not None and server.admin is AdminState.MAINT:
                    found[name] = obs.now  # a frozen standby at rest, found by a restarted controller
        return found

    @staticmethod
    def heard_deaths(heard: list[Heard]) -> dict[str, Heard]:
        """The latest death heard per node since the last tick (a start heard after it cancels it)."""
        deaths: dict[str, Heard] = {}
        for heard_one in heard:
            if heard_one.death:
                deaths[heard_one.event.node] = heard_one
            else:
                deaths.pop(heard_one.event.node, None)
        return deaths

    def processes(self, names: Sequence[str]) -> dict[str, NodeState | None]:
        """The provider's view of `names`: in one call where the provider can, else one by one."""
        if not names:
            return {}
        if isinstance(self.nodes, BulkStatus):
            try:
                found = self.nodes.statuses(names)
                self._logged.pop("status", None)
                return {name: found.get(name) for name in names}
            except Exception as exc:  # an unknown state this tick, never a dead loop
                self.log_error("status", f"cannot tell the nodes' states: {exc}")
                return {}
        return {name: self.process(name) for name in names}

    def process(self, name: str) -> NodeState | None:
        try:
            state = self.nodes.status(name)
        except Exception as exc:  # an unknown state this tick, never a dead loop
            self.log_error(f"status:{name}", f"cannot tell {name}'s state: {exc}")
            return None
        self._logged.pop(f"status:{name}", None)
        return state

    def follow_vip(
        self, answering: Mapping[str, bool], states: Mapping[str, NodeState | None], now: float
    ) -> None:
        """Journal the VIP's moves (`vip-moved ha1 → ha2`), timed from the first evidence (vip.py)."""
        if self.vip_holder is None:
            return
        try:
            holder = self.vip_holder()
            self._logged.pop("vip", None)
        except Exception as exc:  # an unknown holder this tick, never a dead loop
            self.log_error("vip", f"cannot tell which balancer holds the VIP: {exc}")
            holder = None
        # A balancer whose HAProxy does not answer, or whose container is not running, is unwell.
        well = {n: up and states.get(n) in (None, NodeState.RUNNING) for n, up in answering.items()}
        self.vip_seen, moved = follow(self.vip_seen, holder, well, now)
        for event in moved:
            self.record(event)

    def note_peer(self, name: str, haproxy: bool, state: NodeState | None) -> None:
        """`note_balancer` for a pair's other balancer."""
        first, before = self.policy.balancer, self.balancer_seen
        self.policy = replace(self.policy, balancer=name)
        self.balancer_seen = self.peer_seen.get(name, "answering")
        try:
            self.note_balancer(haproxy, state)
            self.peer_seen[name] = self.balancer_seen
        finally:
            self.policy = replace(self.policy, balancer=first)
            self.balancer_seen = before

    def note_balancer(self, haproxy: bool, state: NodeState | None) -> None:
        """Journal each change of HAProxy's condition: answering, not answering, hung, stopped."""
        if haproxy:
            seen = "answering"
        elif state is NodeState.PAUSED:
            seen = "hung"
        elif state in (NodeState.STOPPED, NodeState.MISSING):
            seen = "stopped"
        else:
            seen = "not answering"
        if seen != self.balancer_seen:
            reasons = {
                "answering": "the Runtime API answers",
                "hung": "its processes are paused (SIGSTOP): certain, restarted",
                "stopped": "its processes are gone: certain, restarted",
                "not answering": "the Runtime API does not answer, but it runs: waiting, not restarting",
            }
            self.record(
                Event(
                    kind=EventKind.HEALTH,
                    node=self.policy.balancer,
                    from_=self.balancer_seen,
                    to=seen,
                    reason=reasons[seen],
                )
            )
            self.balancer_seen = seen

    def update_health(self, name: str, result: ProbeResult, now: float) -> None:
        before = self.health[name]
        after = observe(
            before,
            result,
            now,
            rise=self.policy.rise,
            fall=self.policy.fall,
            slow_s=SLOW_SHARE * self.topology.probe_timeout_s,
        )
        self.health[name] = after
        self.note_overloaded(name, after, result)
        if after.status is before.status or before.status is Status.UNKNOWN:
            return  # a controller that just started learns the state: no transition to report
        durations = {}
        if after.status is Status.DOWN and after.fault_at is not None:
            durations["detection_s"] = now - after.fault_at
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

    def note_overloaded(self, name: str, health: NodeHealth, result: ProbeResult) -> None:
        """Slow but answering: journalled when it begins and when it ends, and nothing else done."""
        if health.overloaded and result.ok and name not in self._overloaded:
            self._overloaded.add(name)
            slow_s = SLOW_SHARE * self.topology.probe_timeout_s
            if result.took_s is not None and result.took_s >= slow_s:
                what = f"answered in {result.took_s:.3g} s"
            else:
                what = "answered after a probe that timed out"
            self.record(
                Event(
                    kind=EventKind.OVERLOADED,
                    node=name,
                    from_="up",
                    to="overloaded",
                    reason=f"{what} (probe timeout {self.topology.probe_timeout_s:g} s): "
                    "slow but answering, left in service",
                )
            )
        elif not health.overloaded and name in self._overloaded:
            self._overloaded.discard(name)
            self.record(
                Event(
                    kind=EventKind.OVERLOADED,
                    node=name,
                    from_="overloaded",
                    to=str(health.status),
                    reason=health.detail,
                )
            )

    # --- actions -------------------------------------------------------------------------------------
    def perform(self, action: Action) -> None:
        """A provider action, in a worker thread of the runner."""
        match action.kind:
            case ActionKind.START:
                self.nodes.start(action.node)
            case ActionKind.STOP:
                self.nodes.stop(action.node)
            case ActionKind.FREEZE:
                self.nodes.fault(action.node, Fault.HANG)  # SIGSTOP of the group; LXD freezes
            case ActionKind.THAW:
                self.nodes.fault(action.node, Fault.RESUME)  # SIGCONT; LXD unfreezes
            case ActionKind.RESTART:
                # Hung (paused) or dead: SIGKILL whatever is left (a stopped process takes it too),
                # then start; the new HAProxy reads the server states the controller last saved.
                with contextlib.suppress(Exception):
                    self.nodes.fault(action.node, Fault.CRASH)
                with contextlib.suppress(Exception):
                    # A pair: the other balancer's current states, for this one to start from.
                    balancers.save_for_restart(self.balancer, action.node)
                self.nodes.start(action.node)
                state = self.nodes.status(action.node)
                if state is not NodeState.RUNNING:
                    raise RuntimeError(f"{action.node} is {state} after its restart")
            case _:
                raise ValueError(f"not a provider action: {action}")

    def submitted(self, action: Action, obs: Observation) -> None:
        """A provider action began (off the tick): journalled now, from what is true now, so the journal
        reads stopped -> starting, then starting -> running once it returned (not `running -> running`
        when the node was seen up before the start's own return was)."""
        view = obs.nodes.get(action.node)
        process = view.process if view else obs.balancer
        self.record(
            Event(
                kind=EventKind.ACTION,
                node=action.node,
                from_=str(process or "unknown"),
                to=_UNDER_WAY[action.kind],
                reason=f"{action.kind}: {action.reason}" if action.reason else str(action.kind),
            )
        )

    def finished(self, done: Done) -> None:
        """A provider action ended: journal it, or its failure (retried after a backoff)."""
        if done.error is not None:
            self.failed(done.action, done.error)
        else:
            self.succeeded(done.action, took_s=done.ended - done.began, at=done.ended)

    def execute(self, action: Action, obs: Observation) -> bool:
        """A Runtime API command, inline (each is bounded by the socket timeout)."""
        view = obs.nodes.get(action.node)
        began = self.clock()
        try:
            match action.kind:
                case ActionKind.SET_STATE:
                    assert action.state is not None
                    self.balancer.set_state(action.node, action.state)
                case ActionKind.HEALTH_UP:
                    self.balancer.health_up(action.node)
                case _:
                    raise ValueError(f"not a Runtime API action: {action}")
        except Exception as exc:  # every failure is retried after a backoff, journalled
            self.failed(action, str(exc))
            return False
        ended = self.clock()
        self.succeeded(action, took_s=ended - began, at=ended, view=view)
        return True

    def failed(self, action: Action, error: str) -> None:
        self.memory, events = note_failure(self.policy, self.memory, action, self.clock(), error)
        for event in events:
            self.record(event)

    def succeeded(self, action: Action, *, took_s: float, at: float, view: NodeView | None = None) -> None:
        self.memory = note_success(self.memory, action)
        if action.kind is ActionKind.FREEZE:
            self.frozen[action.node] = at
        elif action.kind is ActionKind.THAW:
            self.frozen.pop(action.node, None)
            self._frozen_checked.pop(action.node, None)  # asked again at once: it runs now
            self._thawed[action.node] = at
        obs = self.observation
        if view is None and obs is not None:
            view = obs.nodes.get(action.node)
        before, after = _transition(action, view, obs.balancer if obs else None)
        self.record(
            Event(
                kind=EventKind.ACTION,
                node=action.node,
                from_=before,
                to=after,
                reason=f"{action.kind}: {action.reason}" if action.reason else str(action.kind),
                durations={"took_s": took_s},
            )
        )
        if action.then is not None:
            timed = {name: at - since for name, since in action.timed_from.items()}
            self.record(replace(action.then, durations=readonly({**action.then.durations, **timed})))

    # --- records -------------------------------------------------------------------------------------
    def record(self, event: Event) -> None:
        record = self.events.append(event)
        if self.observer is not None:
            self.observer.on_event(record)
        durations = "".join(f" {k}={v:g}" for k, v in record["durations"].items())
        if event.kind in (EventKind.ACTION_FAILED, EventKind.STANDBY_FAILED):
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

    # --- which admin states are the controller's (saved, so that a restart still knows) -------------
    def _states(self, saved: object) -> dict[str, AdminState]:
        if not isinstance(saved, dict):
            return {}
        values = {s.value for s in AdminState}
        return {
            name: AdminState(state) for name, state in saved.items() if name in self.web and state in values
        }

    def _manual(self, saved: object) -> frozenset[str]:
        return frozenset(n for n in saved if n in self.web) if isinstance(saved, list) else frozenset()

    def _owned_data(self) -> dict[str, Any]:
        if self.owned_file is None:
            return {}
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(open_nofollow(self.owned_file))
            if isinstance(data, dict):
                return data
        return {}

    def unsettled(self) -> dict[str, AdminState]:
        """States that may be in HAProxy without the controller knowing yet: inherited from the previous
        controller, or set by a command that went unanswered."""
        late = {name: action.state for name, (action, _) in self.memory.uncertain.items() if action.state}
        return {**self.memory.inherited, **late}

    def save_owned(self, about_to_set: dict[str, AdminState]) -> None:
        """The states the controller set (and those it is about to set), for the next controller."""
        owned = dict(self.memory.owned)
        if self.owned_file is None or (owned, about_to_set, self.memory.manual) == self._saved_owned:
            return
        text = json.dumps(
            {
                "owned": {k: str(v) for k, v in owned.items()},
                "pending": {k: str(v) for k, v in about_to_set.items()},
                "manual": sorted(self.memory.manual),
            }
        )
        try:
            write_atomic(self.owned_file, text, mode=0o600)
        except OSError as exc:
            self.log_error("owned-file", f"cannot write {self.owned_file}: {exc}")
            return
        self._saved_owned = (owned, about_to_set, self.memory.manual)

    # --- status ----------------------------------------------------------------------------------------
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
                "overloaded": health.overloaded,
                "admin": str(server.admin) if server else None,
                "haproxy_up": server.up if server else None,
                "sessions": server.sessions if server else None,
                "busy": str(view.busy) if view and view.busy else None,
                "starting": name in self.memory.starting,
                "draining": name in self.memory.draining,
                "maintenance": name in self.memory.manual,
                "failing_over_s": round(now - self.memory.outage[name], 3)
                if name in self.memory.outage
                else None,
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
            "balancer": self.balancer_seen,
            "vip_holder": self.vip_seen.holder,
            "journal": {
                "ok": self.events.error is None,
                "error": self.events.error,
                "pending": self.events.pending,
                "dropped": self.events.dropped,
            },
            "settings": settings(self.topology),
            "nodes": nodes,
        }

    def write_state(self) -> None:
        self.last_snapshot = self.snapshot()
        if self.state_file is None:
            return
        try:
            write_atomic(self.state_file, json.dumps(self.last_snapshot))
        except OSError as exc:
            self.log_error("state-file", f"cannot write {self.state_file}: {exc}")

    # --- the daemon ------------------------------------------------------------------------------------
    def reload(self, topology: Topology) -> list[str]:
        """Apply an edited topology (same nodes: the rest needs a new controller); return what changed."""
        changes = diff_settings(settings(self.topology), settings(topology))
        self.topology = topology
        self.policy = Policy.from_topology(topology)
        self.record(
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
        self.record(
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
                self._logged.pop("tick", None)
            except Exception:  # the loop must outlive any one bad tick
                if "tick" not in self._logged:
                    LOG.exception("a tick failed; the next one starts afresh")
                self.log_error("tick", "ticks keep failing (see the first traceback above)")
            if self.observer is not None:
                self.observer.on_tick(self.clock() - began, self.last_snapshot)
            if reload is not None and (edited := reload()) is not None:
                self.reload(edited)
            # Until the next tick is due, or at once on a death heard or a provider action done.
            left = began + self.next_tick_s() - self.clock()
            woken = lambda: stop.is_set() or self.wake.is_set()  # noqa: E731
            wait_until(woken, left, SLEEP_SLICE_S, clock=self.clock, sleep=self.wake.wait)
        self.runner.close()
        if self.sources is not None:
            self.sources.close()
        self.record(
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


def _recheck_due(checked: Mapping[str, float], name: str, now: float) -> bool:
    """Time to ask the provider again about a standby frozen on purpose."""
    return now - checked.get(name, float("-inf")) >= FROZEN_RECHECK_S


def _answered_since(result: ProbeResult | None, at: float) -> bool:
    """A probe sent after the death was heard passed: the node was started again meanwhile."""
    return result is not None and result.ok and result.sent_at is not None and result.sent_at > at


def settings(topology: Topology) -> dict[str, str]:
    """The settings a running controller applies, flat and comparable (what `relevo up` reports)."""
    out: dict[str, str] = {}
    for section, value in (
        ("health", topology.health),
        ("standby", topology.standby),
        ("controller", topology.controller),
    ):
        for field_name in value.__dataclass_fields__:
            out[f"{section}.{field_name.removesuffix('_s')}"] = str(getattr(value, field_name))
    balancer = topology.balancer
    out["balancer"] = f"{balancer.name} {balancer.provider} {balancer.frontend.url} {balancer.stats.url}"
    for node in topology.nodes:
        out[f"nodes.{node.name}"] = (
            f"{node.role} {node.provider} {node.endpoint.url} {node.standby_for or ''}"
        )
    return out


def diff_settings(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    return [
        f"{key} {before.get(key, '-')} -> {after.get(key, '-')}"
        for key in sorted(set(before) | set(after))
        if before.get(key) != after.get(key)
    ]


# What a provider action's node is while the action runs (the `to` of its first journal line).
_UNDER_WAY = {
    ActionKind.START: "starting",
    ActionKind.RESTART: "restarting",
    ActionKind.STOP: "stopping",
    ActionKind.FREEZE: "freezing",
    ActionKind.THAW: "thawing",
}
_DONE = {ActionKind.STOP: "stopped", ActionKind.FREEZE: "frozen"}


def _transition(action: Action, view: NodeView | None, balancer: NodeState | None) -> tuple[str, str]:
    """What an action changed, in the words `relevo events` shows: from -> to."""
    server = view.server if view else None
    match action.kind:
        case ActionKind.START | ActionKind.RESTART | ActionKind.STOP | ActionKind.FREEZE | ActionKind.THAW:
            # Provider actions: journalled as under way when submitted (see Controller.submitted).
            return _UNDER_WAY[action.kind], _DONE.get(action.kind, "running")
        case ActionKind.SET_STATE:
            return str(server.admin) if server else "unknown", str(action.state)
        case _:
            return ("up" if server and server.up else "down"), "up"

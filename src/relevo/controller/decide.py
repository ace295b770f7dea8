"""What to do this tick, given what was observed: pure, so every failover path is a unit test.

Paired mode keeps, per primary P and standby S, one invariant: S is `ready` in HAProxy exactly while
P is DOWN (or not yet healthy for the hold time after it was), and P is in `maint` exactly while S
serves in its place. Each tick moves the world one step towards that, from whatever state it is in,
which is what makes a controller restarted mid-failover converge: nothing here depends on having seen
the earlier steps (the memory only adds timings and backoffs).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from relevo.controller.events import Event, EventKind
from relevo.controller.health import NodeHealth, Status
from relevo.controller.state import (
    Action,
    ActionKind,
    Backoff,
    Memory,
    NodeView,
    Observation,
    Plan,
    Policy,
    health_up,
    readonly,
    set_state,
    start,
    stop,
)
from relevo.haproxy.runtime import AdminState
from relevo.model import RestartPolicy, StandbyMode, Temperature
from relevo.providers.base import NodeState

# A failed Runtime API command or provider call is retried after this, doubling up to the policy's max:
# short, because a failover waits on it.
GATE_BASE_S = 0.2

_UNSEEN = NodeView(process=None, health=NodeHealth())


def decide(policy: Policy, obs: Observation, memory: Memory) -> Plan:
    """The actions and events for one tick, and the memory to carry to the next."""
    tick = _Tick(
        policy=policy,
        obs=obs,
        starting=dict(memory.starting),
        draining=dict(memory.draining),
        failed=dict(memory.failed),
        restarts=dict(memory.restarts),
        gates=dict(memory.gates),
    )
    tick.balancer()
    for primary in policy.primaries:
        tick.restart_policy(primary)
    if policy.mode is StandbyMode.PAIRED:
        for primary, standby in policy.standby_of.items():
            tick.paired(primary, standby)
    else:
        downs = [tick.view(p).health.status is Status.DOWN for p in policy.primaries]
        stables = [tick.stable(p) for p in policy.primaries]
        for primary, standby in policy.standby_of.items():
            tick.pool(
                standby, needed=tick.view(primary).health.status is Status.DOWN, surplus=tick.stable(primary)
            )
        for standby in policy.unpaired:
            tick.pool(standby, needed=bool(downs) and all(downs), surplus=any(stables))
    return tick.plan()


def note_success(memory: Memory, action: Action) -> Memory:
    """An action worked: forget its retry backoff."""
    if action.key not in memory.gates:
        return memory
    return replace(memory, gates=readonly({k: v for k, v in memory.gates.items() if k != action.key}))


def note_failure(
    policy: Policy, memory: Memory, action: Action, now: float, error: str
) -> tuple[Memory, tuple[Event, ...]]:
    """An action failed: retry it after a backoff; a standby that could not be started has failed."""
    gates = dict(memory.gates)
    gate = gates.get(action.key, Backoff()).after(now, GATE_BASE_S, policy.backoff_max_s)
    gates[action.key] = gate
    events = [
        Event(
            kind=EventKind.ERROR,
            node=action.node,
            from_=str(action.kind),
            to="error",
            reason=f"{action} failed: {error}",
            durations={"retry_in_s": gate.next_at - now},
        )
    ]
    starting, failed = dict(memory.starting), dict(memory.failed)
    if action.kind is ActionKind.START and action.node in policy.standbys:
        starting.pop(action.node, None)
        backoff = failed.get(action.node, Backoff()).after(now, policy.backoff_s, policy.backoff_max_s)
        failed[action.node] = backoff
        events.append(
            Event(
                kind=EventKind.STANDBY_FAILED,
                node=action.node,
                from_="stopped",
                to="failed",
                reason=f"could not be started: {error}",
                durations={"retry_in_s": backoff.next_at - now},
            )
        )
    memory = replace(memory, gates=readonly(gates), starting=readonly(starting), failed=readonly(failed))
    return memory, tuple(events)


@dataclass(slots=True, kw_only=True)
class _Tick:
    """The working state of one `decide` call: mutable inside it, never outside."""

    policy: Policy
    obs: Observation
    starting: dict[str, float]
    draining: dict[str, float]
    failed: dict[str, Backoff]
    restarts: dict[str, Backoff]
    gates: dict[str, Backoff]
    actions: list[Action] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    @property
    def now(self) -> float:
        return self.obs.now

    def plan(self) -> Plan:
        memory = Memory(
            starting=readonly(self.starting),
            draining=readonly(self.draining),
            failed=readonly(self.failed),
            restarts=readonly(self.restarts),
            gates=readonly(self.gates),
        )
        return Plan(actions=tuple(self.actions), events=tuple(self.events), memory=memory)

    def view(self, name: str) -> NodeView:
        return self.obs.nodes.get(name, _UNSEEN)

    def stable(self, name: str) -> bool:
        return self.view(name).health.stable_up(self.now, self.policy.hold_s)

    def act(self, action: Action) -> bool:
        """Plan an action unless it is waiting out a backoff or needs an HAProxy that is not answering."""
        gate = self.gates.get(action.key)
        if (gate is not None and not gate.ready(self.now)) or (action.runtime and not self.obs.haproxy):
            return False
        self.actions.append(action)
        return True

    def emit(self, kind: EventKind, node: str, from_: str, to: str, reason: str, **durations: float) -> None:
        self.events.append(
            Event(kind=kind, node=node, from_=from_, to=to, reason=reason, durations=readonly(durations))
        )

    # --- the standby's own condition -------------------------------------------------------------
    def ok(self, view: NodeView) -> bool:
        """Running, and its latest probe passed: ready to serve now (no `rise` wait, on purpose)."""
        return view.process is NodeState.RUNNING and view.health.last_probe_ok

    def failing(self, name: str, view: NodeView) -> bool:
        """Should be serving or ready to, but is hung, gone, or failed `fall` probes in a row."""
        if name in self.starting:
            return False  # `check_start` judges a standby that is still coming up
        return view.process in (NodeState.PAUSED, NodeState.STOPPED, NodeState.MISSING) or (
            view.health.failures >= self.policy.fall
        )

    def blocked(self, standby: str) -> bool:
        backoff = self.failed.get(standby)
        return backoff is not None and not backoff.ready(self.now)

    def check_start(self, standby: str, view: NodeView, primary: str | None) -> bool:
        """A standby we started that died or never answered has failed. True when it just did."""
        began = self.starting.get(standby)
        if began is None or self.ok(view):
            return False
        if view.absent:
            self.fail(standby, view, primary, "its processes exited right after it was started")
            return True
        if self.now - began >= self.policy.start_timeout_s:
            self.fail(
                standby,
                view,
                primary,
                f"no passing probe {self.policy.start_timeout_s:g} s after it was started",
            )
            return True
        return False

    def fail(self, standby: str, view: NodeView, primary: str | None, reason: str) -> None:
        """Report the standby, take it out of HAProxy, stop it, and retry only after a backoff."""
        backoff = self.failed.get(standby, Backoff()).after(
            self.now, self.policy.backoff_s, self.policy.backoff_max_s
        )
        self.failed[standby] = backoff
        self.starting.pop(standby, None)
        self.draining.pop(standby, None)
        self.emit(
            EventKind.STANDBY_FAILED,
            standby,
            str(view.process or "unknown"),
            "failed",
            f"{reason}; attempt {backoff.attempts}",
            retry_in_s=backoff.next_at - self.now,
        )
        if self.policy.mode is StandbyMode.PAIRED:
            if view.server is not None and view.server.admin is not AdminState.MAINT:
                self.act(set_state(standby, AdminState.MAINT, "the standby failed"))
            self.release_primary(primary, "its standby failed: HAProxy's own checks decide")
        if view.alive:
            self.act(stop(standby, "the standby failed: stopped before a retry"))

    def start_standby(self, standby: str, view: NodeView, reason: str) -> None:
        startable = view.absent and standby not in self.starting and not self.blocked(standby)
        if startable and self.act(start(standby, reason)):
            self.starting[standby] = self.now

    # --- HAProxy and the restart policy ----------------------------------------------------------
    def balancer(self) -> None:
        name = self.policy.balancer
        backoff = self.restarts.get(name, Backoff())
        if self.obs.haproxy and backoff.ready(self.now):
            self.restarts.pop(name, None)  # answering past its backoff window: not crash-looping
        elif self.obs.balancer is NodeState.STOPPED and backoff.ready(self.now):
            attempt = backoff.attempts + 1
            if self.act(
                start(
                    name,
                    f"HAProxy is not running: restart it with the saved server state (attempt {attempt})",
                )
            ):
                self.restarts[name] = backoff.after(
                    self.now, self.policy.backoff_s, self.policy.backoff_max_s
                )

    def restart_policy(self, primary: str) -> None:
        if self.policy.restart is not RestartPolicy.ON_FAILURE:
            return
        if self.stable(primary):
            self.restarts.pop(primary, None)
        backoff = self.restarts.get(primary, Backoff())
        if self.view(primary).process is NodeState.STOPPED and backoff.ready(self.now):
            attempt = backoff.attempts + 1
            if self.act(start(primary, f"restart policy on-failure (attempt {attempt})")):
                self.restarts[primary] = backoff.after(
                    self.now, self.policy.backoff_s, self.policy.backoff_max_s
                )

    # --- paired mode -------------------------------------------------------------------------------
    def paired(self, primary: str, standby: str) -> None:
        pv, sv = self.view(primary), self.view(standby)
        if self.check_start(standby, sv, primary):
            return
        if pv.health.status is Status.DOWN:
            self.failover(primary, pv, standby, sv)
            return
        if self.stable(primary):
            self.failback(primary, pv, standby, sv)
        elif self.draining_behind(pv, sv):
            self.drain(primary, standby, sv, stop_after=False)
        elif pv.health.last_probe_ok and not self.serving(sv):
            self.release_primary(primary, "it answers and its standby is not serving")
        if self.ok(sv) and standby in self.starting:
            self.starting.pop(standby)  # came up after its primary recovered: stays in maint
        if self.policy.temperature is Temperature.WARM:
            self.keep_warm(standby, sv, primary)

    def draining_behind(self, pv: NodeView, sv: NodeView) -> bool:
        """The standby drains while HAProxy has the primary up: finish the drain, leave the stop for
        when the primary is stable."""
        hp, hs = pv.server, sv.server
        return (
            hs is not None
            and hs.admin is AdminState.DRAIN
            and hp is not None
            and hp.admin is AdminState.READY
            and hp.up
        )

    def serving(self, view: NodeView) -> bool:
        return view.server is not None and view.server.admin is AdminState.READY

    def release_primary(self, primary: str | None, reason: str) -> None:
        """A primary must not stay in maint while nothing serves in its place."""
        if primary is None:
            return
        server = self.view(primary).server
        if server is not None and server.admin is AdminState.MAINT:
            self.act(set_state(primary, AdminState.READY, reason))

    def failover(self, primary: str, pv: NodeView, standby: str, sv: NodeView) -> None:
        if self.serving(sv) and self.failing(standby, sv):
            self.fail(standby, sv, primary, "it stopped answering while serving")
            return
        if self.blocked(standby):
            self.release_primary(primary, "its standby is waiting out a failure backoff")
            return
        if self.ok(sv):
            self.take_over(primary, pv, standby, sv)
        elif sv.absent:
            self.start_standby(standby, sv, f"{primary} is down: {pv.health.detail}")
        elif sv.process is not None and self.failing(standby, sv):
            self.fail(standby, sv, primary, f"it is {sv.process} and not answering")

    def take_over(self, primary: str, pv: NodeView, standby: str, sv: NodeView) -> None:
        """The standby answers: into HAProxy at once (ready + health up), the primary into maint."""
        hs, hp = sv.server, pv.server
        if hs is None:
            return  # HAProxy is not answering: the standby is ready the moment it does
        if hs.admin is not AdminState.READY:
            reason = f"{primary} is down: {pv.health.detail}"
            if not self.act(set_state(standby, AdminState.READY, reason)):
                return
            self.act(health_up(standby, "its own probe passed: no need to wait for HAProxy's rise"))
            durations: dict[str, float] = {}
            if (last_ok := pv.health.last_ok_at) is not None:
                durations["detection_s"] = pv.health.since - last_ok
                durations["until_served_s"] = self.now - last_ok
            if (began := self.starting.pop(standby, None)) is not None:
                durations["standby_start_s"] = self.now - began
            self.draining.pop(standby, None)
            self.emit(EventKind.FAILOVER, standby, str(hs.admin), "ready", reason, **durations)
        elif not hs.up:
            self.act(health_up(standby, "HAProxy has it down but its own probe passes"))
        if hp is not None and hp.admin is not AdminState.MAINT:
            self.act(set_state(primary, AdminState.MAINT, f"{standby} serves in its place"))

    def failback(self, primary: str, pv: NodeView, standby: str, sv: NodeView) -> None:
        hp = pv.server
        if hp is None or sv.server is None:
            return  # without HAProxy's view a standby cannot be drained safely: wait
        if hp.admin is not AdminState.READY:
            reason = f"healthy for {self.policy.hold_s:g} s"
            if self.act(set_state(primary, AdminState.READY, reason)):
                self.act(health_up(primary, "its own probes passed: no need to wait for HAProxy's rise"))
                self.emit(EventKind.FAILBACK, primary, str(hp.admin), "ready", reason)
            return  # the standby is drained once HAProxy has the primary up (next tick)
        if not hp.up:
            return  # HAProxy's checks disagree with ours: keep the standby until they agree
        self.drain(primary, standby, sv, stop_after=self.policy.temperature is Temperature.COLD)

    def drain(self, primary: str, standby: str, sv: NodeView, *, stop_after: bool) -> None:
        """ready -> drain -> (sessions at 0, or the bounded wait ran out) -> maint -> stopped."""
        hs = sv.server
        if hs is None:
            return
        if hs.admin is AdminState.READY:
            if self.act(set_state(standby, AdminState.DRAIN, f"{primary} serves again")):
                self.draining[standby] = self.now
            return
        if hs.admin is AdminState.DRAIN:
            began = self.draining.setdefault(standby, self.now)
            timed_out = self.now - began >= self.policy.drain_timeout_s
            if hs.sessions > 0 and not timed_out:
                return
            why = f"gave up waiting for {hs.sessions} sessions" if hs.sessions else "no sessions left"
            if not self.act(set_state(standby, AdminState.MAINT, why)):
                return
            self.draining.pop(standby)
            self.emit(EventKind.DRAINED, standby, "drain", "maint", why, drain_s=self.now - began)
        if not stop_after:
            return
        self.failed.pop(standby, None)  # the pair is back to normal: a later failure starts afresh
        if sv.alive:
            self.act(stop(standby, f"{primary} serves again and the standby is drained"))

    def keep_warm(self, standby: str, sv: NodeView, primary: str | None) -> None:
        """A warm standby runs all the time (in maint when idle): start it, and report it if broken."""
        if sv.absent:
            self.start_standby(standby, sv, "warm standby: kept running")
        elif sv.process is not None and not self.blocked(standby) and self.failing(standby, sv):
            self.fail(standby, sv, primary, f"warm standby is {sv.process} and not answering")

    # --- pool mode: HAProxy's `backup` routes; the controller only runs the processes ---------------
    def pool(self, standby: str, *, needed: bool, surplus: bool) -> None:
        sv = self.view(standby)
        if self.check_start(standby, sv, None):
            return
        if self.ok(sv):
            self.starting.pop(standby, None)
        if self.policy.temperature is Temperature.WARM:
            self.keep_warm(standby, sv, None)
            return
        if needed:
            self.draining.pop(standby, None)
            if sv.absent:
                self.start_standby(standby, sv, "its primary is down: ready as a backup")
            elif sv.process is not None and not self.blocked(standby) and self.failing(standby, sv):
                self.fail(standby, sv, None, f"it is {sv.process} and not answering")
        elif surplus and sv.alive and sv.server is not None:
            # HAProxy sends a backup nothing new once a primary is up: wait for its last sessions.
            began = self.draining.setdefault(standby, self.now)
            idle = sv.server.sessions == 0 or self.now - began >= self.policy.drain_timeout_s
            if idle and self.act(stop(standby, "a primary serves again and the backup is idle")):
                self.draining.pop(standby)
                self.failed.pop(standby, None)

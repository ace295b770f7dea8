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
    ActionKind,
    Backoff,
    Busy,
    ControlAction,
    Decision,
    Memory,
    NodeView,
    Observation,
    Policy,
    freeze,
    health_up,
    readonly,
    restart,
    set_state,
    start,
    stop,
    thaw,
)
from relevo.haproxy.runtime import AdminState
from relevo.model import Failback, RestartPolicy, StandbyMode, Temperature
from relevo.providers.base import NodeState

# A failed Runtime API command or provider call is retried after this, doubling up to the policy's max:
# short, because a failover waits on it.
GATE_BASE_S = 0.2
# A command that failed may still be applied by a busy HAProxy for this long (its socket timeout is 1 s).
UNCERTAIN_S = 3.0

_UNSEEN = NodeView(process=None, health=NodeHealth())


def decide(policy: Policy, obs: Observation, memory: Memory) -> Decision:
    """The actions and events for one tick, and the memory to carry to the next."""
    tick = _Tick(
        policy=policy,
        obs=obs,
        starting=dict(memory.starting),
        draining=dict(memory.draining),
        failed=dict(memory.failed),
        restarts=dict(memory.restarts),
        gates=dict(memory.gates),
        outage=dict(memory.outage),
        owned=dict(memory.owned),
        manual=set(memory.manual),
        uncertain=dict(memory.uncertain),
        inherited=dict(memory.inherited),
    )
    if policy.mode is StandbyMode.PAIRED:
        if obs.haproxy_returned:
            tick.reassert()
        else:
            tick.operators()
    tick.balancer(policy.balancer, obs.balancer)
    for peer in policy.peers:
        tick.balancer(peer, obs.peers.get(peer))
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


def note_success(memory: Memory, action: ControlAction) -> Memory:
    """An action worked: forget its retry backoff; a state the controller set is its own."""
    if action.kind is ActionKind.SET_STATE and action.state is not None:
        uncertain = {k: v for k, v in memory.uncertain.items() if k != action.node}
        owned = {**memory.owned, action.node: action.state}
        memory = replace(memory, owned=readonly(owned), uncertain=readonly(uncertain))
    if action.key not in memory.gates:
        return memory
    return replace(memory, gates=readonly({k: v for k, v in memory.gates.items() if k != action.key}))


def pending(actions: tuple[ControlAction, ...]) -> dict[str, AdminState]:
    """The admin states `actions` are about to set: saved before they run, so that a controller killed in
    between takes neither its own change, applied or not, for a person's."""
    return {
        action.node: action.state
        for action in actions
        if action.kind is ActionKind.SET_STATE and action.state is not None
    }


def note_failure(
    policy: Policy, memory: Memory, action: ControlAction, now: float, error: str
) -> tuple[Memory, tuple[Event, ...]]:
    """An action failed: retry it after a backoff; a standby that could not be started has failed."""
    gates = dict(memory.gates)
    gate = gates.get(action.key, Backoff()).after(now, GATE_BASE_S, policy.backoff_max_s)
    gates[action.key] = gate
    events = [
        Event(
            kind=EventKind.ACTION_FAILED,
            node=action.node,
            from_=str(action.kind),
            to="failed",
            reason=f"{action} failed: {error}",
            durations={"retry_in_s": gate.next_at - now},
        )
    ]
    if action.kind is ActionKind.SET_STATE:
        uncertain = {**memory.uncertain, action.node: (action, now + UNCERTAIN_S)}
        memory = replace(memory, uncertain=readonly(uncertain))
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
    outage: dict[str, float]
    owned: dict[str, AdminState]
    manual: set[str]
    uncertain: dict[str, tuple[ControlAction, float]]
    inherited: dict[str, AdminState]
    actions: list[ControlAction] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    @property
    def now(self) -> float:
        return self.obs.now

    def plan(self) -> Decision:
        memory = Memory(
            starting=readonly(self.starting),
            draining=readonly(self.draining),
            failed=readonly(self.failed),
            restarts=readonly(self.restarts),
            gates=readonly(self.gates),
            outage=readonly(self.outage),
            owned=readonly(self.owned),
            manual=frozenset(self.manual),
            uncertain=readonly(self.uncertain),
            inherited=readonly(self.inherited),
        )
        return Decision(actions=tuple(self.actions), events=tuple(self.events), memory=memory)

    def view(self, name: str) -> NodeView:
        return self.obs.nodes.get(name, _UNSEEN)

    def stable(self, name: str) -> bool:
        return self.view(name).health.stable_up(self.now, self.policy.hold_s)

    def act(self, action: ControlAction) -> bool:
        """Plan an action unless it is waiting out a backoff, needs an HAProxy that is not answering, or
        is a provider action for a node whose previous one still runs."""
        gate = self.gates.get(action.key)
        if (gate is not None and not gate.ready(self.now)) or (action.runtime and not self.obs.haproxy):
            return False
        if not action.runtime and self.busy(action.node) is not None:
            return False
        self.actions.append(action)
        return True

    def busy(self, name: str) -> Busy | None:
        if name == self.policy.balancer:
            return self.obs.balancer_busy
        if name in self.policy.peers:
            return self.obs.peers_busy.get(name)
        return self.view(name).busy

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
        if name in self.starting or view.busy is not None:
            return False  # `check_start` judges a standby that is still coming up; a stop is wanted
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
        if view.absent and view.busy is None:
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
            f"{reason}{_evidence(view)}; attempt {backoff.attempts}",
            retry_in_s=backoff.next_at - self.now,
        )
        if self.policy.mode is StandbyMode.PAIRED:
            if view.server is not None and view.server.admin is not AdminState.MAINT:
                self.act(set_state(standby, AdminState.MAINT, "the standby failed"))
            self.release_primary(primary, "its standby failed: HAProxy's own checks decide")
        if view.alive:
            self.act(stop(standby, "the standby failed: stopped before a retry"))

    def start_standby(self, standby: str, view: NodeView, reason: str, *, began: Event | None = None) -> None:
        """Start the standby (unless it is starting or backing off); `began` is journalled as the start is
        decided, before the start itself and so before any failover it leads to."""
        startable = view.absent and standby not in self.starting and not self.blocked(standby)
        if startable and self.act(start(standby, reason)):
            self.starting[standby] = self.now
            if began is not None:
                self.events.append(began)

    # --- what people do --------------------------------------------------------------------------
    def operators(self) -> None:
        """A server whose admin state is not the one the controller set was changed by a person: their
        maint or drain is planned maintenance (the standby serves, nothing is put back); their ready
        ends it."""
        for name in (*self.policy.primaries, *self.policy.standbys):
            server = self.view(name).server
            if server is None:
                continue
            if self.inherited.pop(name, None) is server.admin:
                self.owned[name] = server.admin  # the previous controller's command did take effect
                continue
            expected = self.owned.get(name, self.configured(name))
            late, until = self.uncertain.pop(name, (None, 0.0))
            if late is not None and self.now <= until:
                if server.admin is late.state:
                    self.applied_late(name, late)
                    continue
                self.uncertain[name] = (late, until)
            if server.admin is expected:
                continue
            self.owned[name] = server.admin
            if server.admin is AdminState.READY:
                self.manual.discard(name)
                reason = "put back in service by hand: the controller manages it again"
            else:
                self.manual.add(name)
                reason = f"set to {server.admin} by hand: planned maintenance, left so until put back"
            self.emit(EventKind.OPERATOR, name, str(expected), str(server.admin), reason)

    def reassert(self) -> None:
        """HAProxy answers again (restarted, from its configuration or a server-state file): what differs
        from what the controller set is no one's doing, never a person's. Every state the controller
        holds (its own, and a person's maint or drain it respects) is put back; the pairs' own logic goes
        on from there in the same tick."""
        for name in (*self.policy.primaries, *self.policy.standbys):
            server, wanted = self.view(name).server, self.owned.get(name, self.configured(name))
            if server is None or server.admin is wanted:
                continue
            if name in self.manual:
                reason = "HAProxy came back without it: a person's state, put back"
            else:
                reason = "HAProxy came back with a state no one holds: the controller's own put back"
            self.act(set_state(name, wanted, reason))

    def applied_late(self, name: str, action: ControlAction) -> None:
        """A command whose answer never came was applied after all: the controller's own change, with
        the event it was to have, timed to now."""
        assert action.state is not None
        self.owned[name] = action.state
        if action.then is not None:
            timed = {key: self.now - since for key, since in action.timed_from.items()}
            self.events.append(replace(action.then, durations=readonly({**action.then.durations, **timed})))

    def configured(self, name: str) -> AdminState:
        """The admin state HAProxy's configuration gives a server (paired standbys start `disabled`)."""
        return AdminState.READY if name in self.policy.primaries else AdminState.MAINT

    # --- HAProxy and the restart policy ----------------------------------------------------------
    def balancer(self, name: str, state: NodeState | None) -> None:
        """A dead or hung balancer (either of a pair) is restarted with the saved server states."""
        backoff = self.restarts.get(name, Backoff())
        broken = state in (NodeState.STOPPED, NodeState.PAUSED)
        if self.obs.haproxy and not broken and backoff.ready(self.now):
            self.restarts.pop(name, None)  # answering past its backoff window: not crash-looping
        elif broken and backoff.ready(self.now):
            what = "hung (its processes are paused)" if state is NodeState.PAUSED else "not running"
            attempt = backoff.attempts + 1
            reason = f"HAProxy is {what}: restart it with the saved server states (attempt {attempt})"
            if self.act(restart(name, reason)):
                self.restarts[name] = backoff.after(
                    self.now, self.policy.backoff_s, self.policy.backoff_max_s
                )

    def restart_policy(self, primary: str) -> None:
        if self.policy.restart is not RestartPolicy.ON_FAILURE:
            return
        if self.stable(primary):
            self.restarts.pop(primary, None)
        backoff = self.restarts.get(primary, Backoff())
        if primary in self.manual:
            return  # a person took it out: starting it again is theirs to do
        if self.view(primary).process is NodeState.STOPPED and backoff.ready(self.now):
            attempt = backoff.attempts + 1
            if self.act(start(primary, f"restart policy on-failure (attempt {attempt})")):
                self.restarts[primary] = backoff.after(
                    self.now, self.policy.backoff_s, self.policy.backoff_max_s
                )

    # --- paired mode -------------------------------------------------------------------------------
    def paired(self, primary: str, standby: str) -> None:
        pv, sv = self.view(primary), self.view(standby)
        if standby in self.manual:
            return  # a person holds the standby: the pair is theirs until they put it back
        if self.check_start(standby, sv, primary):
            return
        planned = primary in self.manual
        if pv.health.status is Status.DOWN or planned:
            self.failover(primary, pv, standby, sv, planned=planned)
            return
        self.outage.pop(primary, None)
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
        elif self.policy.temperature is Temperature.FROZEN:
            self.keep_frozen(standby, sv, primary)

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
        """A primary must not stay in maint while nothing serves in its place (unless a person put it
        there)."""
        if primary is None or primary in self.manual:
            return
        server = self.view(primary).server
        if server is not None and server.admin is AdminState.MAINT:
            self.act(set_state(primary, AdminState.READY, reason))

    def failover(self, primary: str, pv: NodeView, standby: str, sv: NodeView, *, planned: bool) -> None:
        fault_at = pv.health.fault_at if not planned and pv.health.fault_at is not None else self.now
        self.outage.setdefault(primary, fault_at)
        if sv.busy is Busy.STOPPING:
            return  # the standby's stop (a failback, a failure) ends first; then it is started again
        if self.serving(sv) and self.failing(standby, sv):
            # Service is lost again, from the standby's fault on: what the next takeover counts from.
            self.outage[primary] = sv.health.fault_at if sv.health.fault_at is not None else self.now
            self.fail(standby, sv, primary, "it stopped answering while serving")
            return
        if self.blocked(standby):
            self.release_primary(primary, "its standby is waiting out a failure backoff")
            return
        if self.ok(sv):
            self.take_over(primary, pv, standby, sv, planned=planned)
        elif self.thawable(sv):
            why = f"planned maintenance of {primary}" if planned else f"{primary} is down: {pv.health.detail}"
            began = Event(
                kind=EventKind.FAILOVER_STARTED,
                node=primary,
                from_="maintenance" if planned else "down",
                to="failing-over",
                reason=f"{why}; thawing {standby}",
            )
            if self.act(thaw(standby, why, then=began)):
                self.starting.setdefault(standby, self.now)
        elif sv.absent:
            why = f"planned maintenance of {primary}" if planned else f"{primary} is down: {pv.health.detail}"
            began = Event(
                kind=EventKind.FAILOVER_STARTED,
                node=primary,
                from_="maintenance" if planned else "down",
                to="failing-over",
                reason=f"{why}; starting {standby}",
            )
            self.start_standby(standby, sv, why, began=began)
        elif sv.process is not None and self.failing(standby, sv):
            self.fail(standby, sv, primary, f"it is {sv.process} and not answering")

    def take_over(self, primary: str, pv: NodeView, standby: str, sv: NodeView, *, planned: bool) -> None:
        """The standby answers: into HAProxy at once (ready + health up), the primary into maint (left as
        a person set it, in planned maintenance). Journalled once HAProxy has taken it."""
        hs, hp = sv.server, pv.server
        if hs is None:
            return  # HAProxy is not answering: the standby is ready the moment it does
        needs = ""
        if hs.admin is not AdminState.READY:
            if planned:
                reason = f"planned maintenance: {primary} set to {hp.admin if hp else 'maint'} by hand"
            else:
                reason = f"{primary} is down: {pv.health.detail}"
            durations: dict[str, float] = {}
            if not planned and pv.health.fault_at is not None and pv.health.status is Status.DOWN:
                durations["detection_s"] = pv.health.since - pv.health.fault_at
            timed = {"until_served_s": self.outage.get(primary, self.now)}
            if (began := self.starting.get(standby)) is not None:
                timed["standby_start_s"] = began
            event = Event(
                kind=EventKind.FAILOVER,
                node=standby,
                from_=str(hs.admin),
                to="ready",
                reason=reason,
                durations=readonly(durations),
            )
            ready = set_state(standby, AdminState.READY, reason, then=event, timed_from=timed)
            if not self.act(ready):
                return
            needs = ready.key
            self.act(
                health_up(standby, "its own probe passed: no need to wait for HAProxy's rise", needs=needs)
            )
            self.draining.pop(standby, None)
        else:
            # Seen serving: the failover is complete.
            self.starting.pop(standby, None)
            self.outage.pop(primary, None)
            if not hs.up:
                self.act(health_up(standby, "HAProxy has it down but its own probe passes"))
        if not planned and hp is not None and hp.admin is not AdminState.MAINT:
            maint = set_state(primary, AdminState.MAINT, f"{standby} serves in its place")
            self.act(replace(maint, needs=needs))

    def failback(self, primary: str, pv: NodeView, standby: str, sv: NodeView) -> None:
        hp = pv.server
        if hp is None or sv.server is None:
            return  # without HAProxy's view a standby cannot be drained safely: wait
        if hp.admin is not AdminState.READY:
            reason = f"healthy for {self.policy.hold_s:g} s"
            event = Event(
                kind=EventKind.FAILBACK, node=primary, from_=str(hp.admin), to="ready", reason=reason
            )
            ready = set_state(primary, AdminState.READY, reason, then=event)
            if self.act(ready):
                self.act(
                    health_up(
                        primary, "its own probes passed: no need to wait for HAProxy's rise", needs=ready.key
                    )
                )
            return  # the standby is drained once HAProxy has the primary up (next tick)
        if not hp.up:
            return  # HAProxy's checks disagree with ours: keep the standby until they agree
        # A frozen standby with `failback: stop` is stopped once, right after its drain; started again
        # and frozen by `keep_frozen`, it is not stopped again at the next tick.
        stop_after = self.policy.temperature is Temperature.COLD or (
            self.policy.temperature is Temperature.FROZEN
            and self.policy.failback is Failback.STOP
            and standby in self.draining
        )
        self.drain(primary, standby, sv, stop_after=stop_after)

    def drain(self, primary: str, standby: str, sv: NodeView, *, stop_after: bool) -> None:
        """ready -> drain -> (sessions at 0, or the bounded wait ran out) -> maint -> stopped."""
        hs = sv.server
        if hs is None:
            return
        needs = ""
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
            event = Event(kind=EventKind.DRAINED, node=standby, from_="drain", to="maint", reason=why)
            maint = set_state(standby, AdminState.MAINT, why, then=event, timed_from={"drain_s": began})
            if not self.act(maint):
                return
            needs = maint.key
        else:
            self.draining.pop(standby, None)
        if not stop_after:
            return
        self.failed.pop(standby, None)  # the pair is back to normal: a later failure starts afresh
        if sv.alive:
            action = stop(standby, f"{primary} serves again and the standby is drained")
            self.act(replace(action, needs=needs))

    def keep_warm(self, standby: str, sv: NodeView, primary: str | None) -> None:
        """A warm standby runs all the time (in maint when idle): start it, and report it if broken."""
        if sv.absent:
            self.start_standby(standby, sv, "warm standby: kept running")
        elif sv.process is not None and not self.blocked(standby) and self.failing(standby, sv):
            self.fail(standby, sv, primary, f"warm standby is {sv.process} and not answering")

    def thawable(self, sv: NodeView) -> bool:
        """A frozen standby (on purpose, or a hang: either way resuming it is the quickest service)."""
        return self.policy.temperature is Temperature.FROZEN and sv.process is NodeState.PAUSED

    def keep_frozen(self, standby: str, sv: NodeView, primary: str | None) -> None:
        """A frozen standby is started ahead of time and frozen once it answers and idles in maint: it
        then costs memory and no CPU, and a failover only thaws it."""
        if sv.absent:
            self.start_standby(standby, sv, "frozen standby: started ahead of time, frozen once ready")
            return
        server = sv.server
        idle = server is not None and server.admin is AdminState.MAINT and standby not in self.draining
        if sv.process is not NodeState.RUNNING or not idle or sv.busy is not None:
            return
        if self.ok(sv):
            self.starting.pop(standby, None)
            self.act(freeze(standby, "ready and idle in maint: frozen until its primary fails"))
        elif not self.blocked(standby) and self.failing(standby, sv):
            self.fail(standby, sv, primary, "frozen standby is running and not answering")

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


def _evidence(view: NodeView) -> str:
    """What was last seen of a failed standby, when it names a source that heard it (pidfd, LXD's
    events): the journal says which source saw it first."""
    detail = view.health.detail
    return f" ({detail})" if "heard by" in detail else ""

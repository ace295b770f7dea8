"""Observing, once per tick: the provider's view of each node, the controller's own probes, deaths heard
beside the tick, and HAProxy's view of its servers, folded into one `Observation` for `decide()`.

It also keeps what observing needs from one tick to the next: each node's health (rise/fall), how
HAProxy was last seen (answering, hung, stopped), the VIP's holder, and the standbys frozen on purpose
(not probed: a frozen process never answers, and their health is kept from before the freeze so that a
thaw puts them in service without waiting for a probe).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from relevo.controller import balancers
from relevo.controller.events import Event, EventKind
from relevo.controller.haproxy_view import BalancerControl, PolledBalancer
from relevo.controller.health import NodeHealth, ProbeResult, Status, observe
from relevo.controller.recorder import Recorder
from relevo.controller.sources import Heard
from relevo.controller.state import Busy, NodeView, Observation, Policy, ServerView, readonly
from relevo.controller.vip import VipSeen, follow
from relevo.haproxy.runtime import AdminState
from relevo.model import Temperature, Topology
from relevo.providers.base import BulkStatus, Nodes, NodeState

# An answer slower than this share of the probe timeout marks the node `overloaded` (journalled only).
SLOW_SHARE = 0.5
# A standby frozen on purpose: how often the provider is asked whether it still is (see `observe`).
FROZEN_RECHECK_S = 1.0

CollectFn = Callable[[Sequence[str]], Mapping[str, ProbeResult]]


class Observer:
    def __init__(
        self,
        topology: Topology,
        *,
        nodes: Nodes,
        balancer: BalancerControl,
        collect: CollectFn,
        recorder: Recorder,
        clock: Callable[[], float],
        vip_holder: Callable[[], str | None] | None = None,
    ) -> None:
        self.topology = topology
        self.policy = Policy.from_topology(topology)
        self.nodes = nodes
        self.balancer = balancer
        self.collect = collect
        self.recorder = recorder
        self.clock = clock
        # A pair with a VIP: which balancer holds it, as the network says (providers' HoldsVip).
        self.vip_holder = vip_holder
        self.vip_seen = VipSeen()
        self.web = tuple(n.name for n in topology.nodes)
        self.health = {name: NodeHealth() for name in self.web}
        self.observation: Observation | None = None
        self.balancer_seen = "answering"
        # Seen hung or stopped since HAProxy last answered: it comes back restarted, with states read from
        # a file or its configuration. One that only stopped answering while it ran kept every state.
        self.balancer_lapsed = False
        self.peer_seen: dict[str, str] = {}
        self._overloaded: set[str] = set()
        # Standbys frozen on purpose: not probed (a frozen process never answers) and their health kept
        # from before the freeze, so that a thaw puts them in service without waiting for a probe.
        self.frozen: dict[str, float] = {}  # standby -> when it was frozen (monotonic)
        self._frozen_checked: dict[str, float] = {}  # standby -> when the provider was last asked
        self._thawed: dict[str, float] = {}  # standby -> when the controller last thawed it

    def reconfigure(self, topology: Topology, policy: Policy) -> None:
        """An edited topology (same nodes): its timeouts and policy from the next tick on."""
        self.topology, self.policy = topology, policy

    def froze(self, name: str, at: float) -> None:
        """The controller froze `name` (a standby at rest): not probed from now on."""
        self.frozen[name] = at

    def thawed(self, name: str, at: float) -> None:
        """The controller thawed `name`: probed again, and its provider asked again at once."""
        self.frozen.pop(name, None)
        self._frozen_checked.pop(name, None)
        self._thawed[name] = at

    def observe(
        self,
        *,
        heard: list[Heard],
        hear: Callable[[], list[Heard]],
        busy: Mapping[str, Busy],
        urgent: bool = False,
    ) -> Observation:
        """This tick's observation. `heard`: deaths heard before it began; `hear` gives those heard
        while the probes were out; `urgent`: act now on HAProxy's view as last read (not a fresh one)."""
        self.frozen = self.frozen_idle()
        # Not probed, health kept: frozen on purpose, or being frozen or thawed (a probe caught by the
        # freeze would only time out, and count against a standby that is fine).
        resting = set(self.frozen) | {n for n, b in busy.items() if b in (Busy.FREEZING, Busy.THAWING)}
        probed = self.collect([name for name in self.web if name not in resting])
        # A death heard while the probes were out cuts their wait short, and counts in this tick.
        deaths = self.heard_deaths(heard + hear())
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
            self.recorder.resolved("haproxy")
        except Exception as exc:  # any failure to read HAProxy is "not answering"
            haproxy = False
            self.recorder.log_error("haproxy", f"HAProxy's Runtime API does not answer: {exc}")
        # HAProxy answering is proof enough that it runs; only a silent one is worth asking about.
        name = self.policy.balancer
        answering = balancers.answering(self.balancer, name, haproxy)
        if (death := deaths.get(name)) is not None:
            # Its view may be a moment old: the process it came from is gone.
            answering = {**answering, name: False}
            haproxy = haproxy and bool(self.policy.peers)  # alone, no HAProxy answers now
            self.recorder.log_error(
                "haproxy", f"HAProxy {death.event.detail} (heard by {death.event.source})"
            )
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
            self.recorder.record(event)
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
                self.recorder.resolved("status")
                return {name: found.get(name) for name in names}
            except Exception as exc:  # an unknown state this tick, never a dead loop
                self.recorder.log_error("status", f"cannot tell the nodes' states: {exc}")
                return {}
        return {name: self.process(name) for name in names}

    def process(self, name: str) -> NodeState | None:
        try:
            state = self.nodes.status(name)
        except Exception as exc:  # an unknown state this tick, never a dead loop
            self.recorder.log_error(f"status:{name}", f"cannot tell {name}'s state: {exc}")
            return None
        self.recorder.resolved(f"status:{name}")
        return state

    def follow_vip(
        self, answering: Mapping[str, bool], states: Mapping[str, NodeState | None], now: float
    ) -> None:
        """Journal the VIP's moves (`vip-moved ha1 → ha2`), timed from the first evidence (vip.py)."""
        if self.vip_holder is None:
            return
        try:
            holder = self.vip_holder()
            self.recorder.resolved("vip")
        except Exception as exc:  # an unknown holder this tick, never a dead loop
            self.recorder.log_error("vip", f"cannot tell which balancer holds the VIP: {exc}")
            holder = None
        # A balancer whose HAProxy does not answer, or whose container is not running, is unwell.
        well = {n: up and states.get(n) in (None, NodeState.RUNNING) for n, up in answering.items()}
        self.vip_seen, moved = follow(self.vip_seen, holder, well, now)
        for event in moved:
            self.recorder.record(event)

    def note_peer(self, name: str, haproxy: bool, state: NodeState | None) -> None:
        """`note_balancer` for a pair's other balancer."""
        before = self.peer_seen.get(name, "answering")
        self.peer_seen[name] = self._note_condition(name, before, haproxy, state)

    def note_balancer(self, haproxy: bool, state: NodeState | None) -> None:
        """Journal each change of HAProxy's condition: answering, not answering, hung, stopped."""
        self.balancer_seen = self._note_condition(self.policy.balancer, self.balancer_seen, haproxy, state)

    def _note_condition(self, balancer: str, before: str, haproxy: bool, state: NodeState | None) -> str:
        """The condition `balancer` is in now, journalled when it is not `before`."""
        if haproxy:
            seen = "answering"
        elif state is NodeState.PAUSED:
            seen = "hung"
        elif state in (NodeState.STOPPED, NodeState.MISSING):
            seen = "stopped"
        else:
            seen = "not answering"
        if seen != before:
            reasons = {
                "answering": "the Runtime API answers",
                "hung": "its processes are paused (SIGSTOP): certain, restarted",
                "stopped": "its processes are gone: certain, restarted",
                "not answering": "the Runtime API does not answer, but it runs: waiting, not restarting",
            }
            self.recorder.record(
                Event(kind=EventKind.HEALTH, node=balancer, from_=before, to=seen, reason=reasons[seen])
            )
        return seen

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
        self.recorder.record(
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
            self.recorder.record(
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
            self.recorder.record(
                Event(
                    kind=EventKind.OVERLOADED,
                    node=name,
                    from_="overloaded",
                    to=str(health.status),
                    reason=health.detail,
                )
            )


def _recheck_due(checked: Mapping[str, float], name: str, now: float) -> bool:
    """Time to ask the provider again about a standby frozen on purpose."""
    return now - checked.get(name, float("-inf")) >= FROZEN_RECHECK_S


def _answered_since(result: ProbeResult | None, at: float) -> bool:
    """A probe sent after the death was heard passed: the node was started again meanwhile."""
    return result is not None and result.ok and result.sent_at is not None and result.sent_at > at

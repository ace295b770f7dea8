"""The data `decide` works on: the policy, one tick's observation, the controller's memory, the plan.

All of it frozen and free of I/O, so that decisions are tested with plain values and a fake clock.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeVar

from relevo.controller.events import Event
from relevo.controller.health import NodeHealth
from relevo.haproxy.runtime import AdminState
from relevo.model import Failback, RestartPolicy, StandbyMode, Temperature, Topology
from relevo.providers.base import NodeState

# A standby that was started but never answered is given up on after this long (Apache answers in
# ~50 ms here, an LXD container in well under a second): reported, then retried after a backoff.
START_TIMEOUT_S = 10.0


K = TypeVar("K")
V = TypeVar("V")


def readonly(mapping: Mapping[K, V] | None = None) -> Mapping[K, V]:
    """A read-only copy: memory and policy are values, never shared mutable state."""
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    """Everything `decide` needs from the topology, flattened."""

    primaries: tuple[str, ...]
    standby_of: Mapping[str, str]  # primary -> its standby
    unpaired: tuple[str, ...] = ()  # standbys without a primary (pool mode only)
    balancer: str = "ha1"
    peers: tuple[str, ...] = ()  # the other balancer of a pair: restarted as the first one is
    mode: StandbyMode = StandbyMode.PAIRED
    temperature: Temperature = Temperature.COLD
    failback: Failback = Failback.FREEZE
    restart: RestartPolicy = RestartPolicy.NEVER
    rise: int = 2
    fall: int = 2
    hold_s: float = 3.0
    drain_timeout_s: float = 10.0
    start_timeout_s: float = START_TIMEOUT_S
    backoff_s: float = 1.0
    backoff_max_s: float = 30.0

    @classmethod
    def from_topology(cls, topology: Topology) -> Policy:
        standby_of = {n.standby_for: n.name for n in topology.standbys if n.standby_for is not None}
        return cls(
            primaries=tuple(n.name for n in topology.primaries),
            standby_of=readonly(standby_of),
            unpaired=tuple(n.name for n in topology.standbys if n.standby_for is None),
            balancer=topology.balancer.name,
            peers=tuple(b.name for b in topology.balancers[1:]),
            mode=topology.standby.mode,
            temperature=topology.standby.temperature,
            failback=topology.standby.failback,
            restart=topology.standby.restart,
            rise=topology.health.rise,
            fall=topology.health.fall,
            hold_s=topology.standby.hold_s,
            drain_timeout_s=topology.controller.drain_timeout_s,
            start_timeout_s=topology.controller.start_timeout_s,
            backoff_s=topology.controller.restart_backoff_s,
            backoff_max_s=topology.controller.restart_backoff_max_s,
        )

    @property
    def standbys(self) -> tuple[str, ...]:
        return (*self.standby_of.values(), *self.unpaired)

    def primary_of(self, standby: str) -> str | None:
        return next((p for p, s in self.standby_of.items() if s == standby), None)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerView:
    """How HAProxy sees one server (from `show servers state` and `show stat`)."""

    admin: AdminState
    up: bool  # operational state: HAProxy would send it traffic if it were ready
    sessions: int = 0  # current sessions (scur): what a drain waits for


class Busy(enum.StrEnum):
    """A provider action under way for a node (they run off the tick, one at a time per node)."""

    STARTING = "starting"
    STOPPING = "stopping"
    RESTARTING = "restarting"
    FREEZING = "freezing"
    THAWING = "thawing"


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeView:
    process: NodeState | None  # None: the provider could not tell this tick
    health: NodeHealth
    server: ServerView | None = None  # None: HAProxy did not answer, or has no such server
    busy: Busy | None = None  # a start or stop of it is still running

    @property
    def alive(self) -> bool:
        """Its processes exist (running or hung)."""
        return self.process in (NodeState.RUNNING, NodeState.PAUSED)

    @property
    def absent(self) -> bool:
        """Certainly not running: something to start."""
        return self.process in (NodeState.STOPPED, NodeState.MISSING)


@dataclass(frozen=True, slots=True, kw_only=True)
class Observation:
    now: float  # monotonic seconds
    nodes: Mapping[str, NodeView]
    balancer: NodeState | None = NodeState.RUNNING
    haproxy: bool = True  # the Runtime API answered this tick
    # ... after it was seen hung or stopped: a restarted HAProxy may have come back with other states than
    # the controller set (a lost or stale server-state file), and those differences are nobody's decision.
    # One that only did not answer for a while ran throughout: what changed meanwhile is a person's.
    haproxy_returned: bool = False
    balancer_busy: Busy | None = None
    # A pair's other balancer: its provider state and its provider action in progress.
    peers: Mapping[str, NodeState | None] = field(default_factory=readonly)
    peers_busy: Mapping[str, Busy] = field(default_factory=readonly)


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    """Exponential backoff: how many attempts failed, and when the next one may happen."""

    attempts: int = 0
    next_at: float = 0.0

    def ready(self, now: float) -> bool:
        return now >= self.next_at

    def after(self, now: float, base_s: float, max_s: float) -> Backoff:
        """One more attempt made now: the following one waits base, 2 x base, 4 x base ... up to max."""
        return Backoff(attempts=self.attempts + 1, next_at=now + min(max_s, base_s * 2**self.attempts))


@dataclass(frozen=True, slots=True, kw_only=True)
class Memory:
    """What the controller remembers between ticks; losing it (a restart) only costs time, never safety:
    everything here is either re-derived from what is observed or a backoff that starts again."""

    starting: Mapping[str, float] = field(default_factory=readonly)  # node -> when we started it
    draining: Mapping[str, float] = field(default_factory=readonly)  # standby -> when its drain began
    failed: Mapping[str, Backoff] = field(default_factory=readonly)  # standby -> failures, next retry
    restarts: Mapping[str, Backoff] = field(default_factory=readonly)  # primary/balancer -> restarts
    gates: Mapping[str, Backoff] = field(default_factory=readonly)  # action key -> after it failed
    # primary -> when its pair lost service (the first evidence of the primary's fault, or of its
    # serving standby's): what `until_served_s` counts from. Kept until the standby is seen serving.
    outage: Mapping[str, float] = field(default_factory=readonly)
    # server -> the admin state the controller last set (or the configured one): a different one seen
    # in HAProxy was set by a person. Saved to disk, so a restarted controller still tells them apart.
    owned: Mapping[str, AdminState] = field(default_factory=readonly)
    # Servers a person put in maint or drain: planned maintenance, left alone until they put it back.
    manual: frozenset[str] = frozenset()
    # server -> a `set-state` that failed without an answer, and until when: HAProxy may still apply it
    # (a busy one answers late), and then it is the controller's own change (with its event).
    uncertain: Mapping[str, tuple[ControlAction, float]] = field(default_factory=readonly)
    # server -> a state the previous controller was setting when it stopped (saved before the command,
    # confirmed after it). Seen in HAProxy it is the controller's own; not seen, it was never applied.
    # Either way not a person's doing. Settled at the first sight of each server.
    inherited: Mapping[str, AdminState] = field(default_factory=readonly)


class ActionKind(enum.StrEnum):
    START = "start"
    STOP = "stop"
    RESTART = "restart"  # the balancer: hung or dead, killed and started again (saved server states)
    SET_STATE = "set-state"  # `set server BE/SRV state ready|drain|maint`
    HEALTH_UP = "health-up"  # `set server BE/SRV health up`: skip HAProxy's `rise` wait
    FREEZE = "freeze"  # a frozen standby, ready and idle: its processes stopped (SIGSTOP; LXD freeze)
    THAW = "thaw"  # the frozen standby is needed: its processes resumed (SIGCONT; LXD unfreeze)


@dataclass(frozen=True, slots=True, kw_only=True)
class ControlAction:
    """One thing the controller does: a provider action (start, stop, restart, freeze, thaw: off the
    tick) or a Runtime API command (set-state, health-up: inline). Not a scenario's `Action` (what a
    fault does to a node)."""

    kind: ActionKind
    node: str
    state: AdminState | None = None
    reason: str = ""
    # Journalled when, and only when, the action succeeded, with `timed_from`'s durations measured then
    # (name -> the monotonic time it counts from).
    then: Event | None = None
    timed_from: Mapping[str, float] = field(default_factory=readonly)
    needs: str = ""  # the key of an earlier action of the same plan that must have succeeded

    @property
    def key(self) -> str:
        """Identifies the action across ticks, for its retry backoff."""
        return f"{self.kind}:{self.node}:{self.state or ''}"

    @property
    def runtime(self) -> bool:
        """Done through HAProxy's Runtime API (not the provider)."""
        return self.kind in (ActionKind.SET_STATE, ActionKind.HEALTH_UP)

    @property
    def busy(self) -> Busy:
        """What a provider action makes its node while it runs."""
        return {
            ActionKind.START: Busy.STARTING,
            ActionKind.STOP: Busy.STOPPING,
            ActionKind.FREEZE: Busy.FREEZING,
            ActionKind.THAW: Busy.THAWING,
        }.get(self.kind, Busy.RESTARTING)

    def __str__(self) -> str:
        what = f"{self.kind} {self.node}" + (f" {self.state}" if self.state else "")
        return f"{what} ({self.reason})" if self.reason else what


def start(node: str, reason: str, *, then: Event | None = None) -> ControlAction:
    return ControlAction(kind=ActionKind.START, node=node, reason=reason, then=then)


def stop(node: str, reason: str) -> ControlAction:
    return ControlAction(kind=ActionKind.STOP, node=node, reason=reason)


def freeze(node: str, reason: str) -> ControlAction:
    return ControlAction(kind=ActionKind.FREEZE, node=node, reason=reason)


def thaw(node: str, reason: str, *, then: Event | None = None) -> ControlAction:
    return ControlAction(kind=ActionKind.THAW, node=node, reason=reason, then=then)


def restart(node: str, reason: str) -> ControlAction:
    return ControlAction(kind=ActionKind.RESTART, node=node, reason=reason)


def set_state(
    node: str,
    state: AdminState,
    reason: str = "",
    *,
    then: Event | None = None,
    timed_from: Mapping[str, float] | None = None,
) -> ControlAction:
    return ControlAction(
        kind=ActionKind.SET_STATE,
        node=node,
        state=state,
        reason=reason,
        then=then,
        timed_from=readonly(timed_from),
    )


def health_up(node: str, reason: str = "", *, needs: str = "") -> ControlAction:
    return ControlAction(kind=ActionKind.HEALTH_UP, node=node, reason=reason, needs=needs)


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """What `decide()` makes of one tick: the actions to take, the events to journal, the memory to
    carry to the next tick. Not loadgen's `Plan` (a load test's thread groups)."""

    actions: tuple[ControlAction, ...]
    events: tuple[Event, ...]
    memory: Memory

"""A scenario as data: how the cluster starts, what load runs, and which faults happen when.

A scenario is a timeline. Its `setup` says which nodes run and whether standbys are in HAProxy's
rotation before the load starts; its `load` is a JMeter-like thread group (closed model) or a fixed
arrival rate (open model); its `faults` are actions at offsets from the load's start (`at: 3s`). The
runner puts the cluster back as the topology wants it before each scenario, so no scenario inherits
another's damage. Everything here is frozen and validated once, by `catalogue` or `loader`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from relevo.providers.base import Fault, Impairment

# The seed's JMeter plan: 1000 threads, ramp-up 1 s, 50 loops (50,000 GETs).
SEED_THREADS = 1000
SEED_LOOPS = 50
SEED_RAMP_UP_S = 1.0
# Fault scenarios run in open loop by default: this rate for this long, the faults inside it.
OPEN_RATE_RPS = 2000.0
OPEN_DURATION_S = 8.0
OPEN_CONNECTIONS = 1000


class Model(enum.StrEnum):
    CLOSED = "closed"  # virtual users, each waiting for its answer (JMeter's thread group)
    OPEN = "open"  # requests leave at a fixed rate whatever the answers do (wrk2, k6 arrival rate)


class Action(enum.StrEnum):
    """What a fault does to a node (or to the controller). The user file's vocabulary."""

    KILL = "kill"  # SIGKILL every process of the node: a crash
    KILL_SERVICE = "kill-service"  # SIGKILL the node's HAProxy or Apache; its container or VM lives
    HANG = "hang"  # SIGSTOP every process: the node is alive but answers nothing
    HANG_WORKERS = "hang-workers"  # SIGSTOP Apache's workers only: its parent lives, nobody answers
    RESUME = "resume"  # SIGCONT: a hung node (or its workers) carries on
    START = "start"  # start the node's processes
    STOP = "stop"  # stop the node gracefully (as `relevo stop`)
    MAINTENANCE = "maintenance"  # an operator puts the server in MAINT through HAProxy's Runtime API
    READY = "ready"  # an operator puts the server back in service (end of maintenance)
    RELOAD = "reload"  # the node re-reads its configuration without dropping connections
    KILL_CONTROLLER = "kill-controller"  # SIGKILL the failover controller
    START_CONTROLLER = "start-controller"  # start the failover controller again
    # Lasting faults, healed at the end of their span (`for:`) or of the load, and on any exit.
    DELAY = "delay"  # every round trip to the node `ms` longer (+- `jitter`)
    LOSS = "loss"  # `pct` % of the node's packets dropped
    BANDWIDTH = "bandwidth"  # the node's answers at `kbit` kbit/s at most
    PARTITION = "partition"  # the balancer and the controller cannot reach the node; it keeps running
    SLOW = "slow"  # every answer of the node starts `ms` later
    CPU_STARVE = "cpu-starve"  # the node's CPU quota cut to `pct` % of one core
    DISK_FULL = "disk-full"  # the file system of the node's logs and state has no space left


# Actions that name no node.
CONTROLLER_ACTIONS = frozenset({Action.KILL_CONTROLLER, Action.START_CONTROLLER})
# Actions that last: each is one of the provider's lasting faults.
LASTING_ACTIONS = {
    Action.DELAY: Fault.DELAY,
    Action.LOSS: Fault.LOSS,
    Action.BANDWIDTH: Fault.BANDWIDTH,
    Action.PARTITION: Fault.PARTITION,
    Action.SLOW: Fault.SLOW,
    Action.CPU_STARVE: Fault.CPU_STARVE,
    Action.DISK_FULL: Fault.DISK_FULL,
}
# Actions that may have a span (`for:`): the lasting ones, and the hangs (healed by a resume).
SPANNED_ACTIONS = frozenset({*LASTING_ACTIONS, Action.HANG, Action.HANG_WORKERS})


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultStep:
    at_s: float  # seconds after the load started
    action: Action
    node: str | None = None  # None only for the controller's actions
    # And not before the controller has journalled this kind of event in the run (`failover`: a standby
    # serves): a fault that follows the controller, however long the provider takes to start a standby.
    after: str | None = None
    # How long it lasts (SPANNED_ACTIONS only): healed at at_s + for_s. None: a lasting fault lasts
    # until the load ends; a hang until a `resume`.
    for_s: float | None = None
    # A lasting fault's amount (ms, jitter_ms, pct, kbit: see providers.base.Impairment).
    amount: Impairment | None = None
    line: int | None = None  # where a scenario file wrote it (errors found later point there)
    # On a pair: done to the balancer in charge when the scenario's first such fault is applied (the VIP's
    # holder), and every later one of the scenario to that same balancer (a failback starts the one it
    # stopped). `node` names the topology's first balancer until then (its provider's `cannot` is asked).
    in_charge: bool = False

    @property
    def label(self) -> str:
        node = "the balancer in charge" if self.in_charge else self.node
        if self.amount is not None and node:
            text = self.amount.describe().replace(str(self.amount.fault), f"{self.action} {node}", 1)
        else:
            text = f"{self.action} {node}" if node else str(self.action)
        return text + (f" for {self.for_s:g} s" if self.for_s is not None else "")

    @property
    def heal_at_s(self) -> float | None:
        return None if self.for_s is None else self.at_s + self.for_s


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadSettings:
    """One thread group. Closed: `threads` users x `loops` (or for `duration_s`). Open: `rate_rps` for
    `duration_s`, with at most `threads` connections."""

    model: Model = Model.CLOSED
    threads: int = SEED_THREADS
    loops: int | None = SEED_LOOPS
    ramp_up_s: float = SEED_RAMP_UP_S
    duration_s: float | None = None
    rate_rps: float | None = None
    timeout_s: float = 10.0

    @classmethod
    def seed(cls) -> LoadSettings:
        return cls()

    @classmethod
    def open_loop(cls) -> LoadSettings:
        return cls(
            model=Model.OPEN,
            threads=OPEN_CONNECTIONS,
            loops=None,
            ramp_up_s=0.0,
            duration_s=OPEN_DURATION_S,
            rate_rps=OPEN_RATE_RPS,
        )

    def describe(self) -> str:
        if self.model is Model.OPEN:
            return f"open loop, {self.rate_rps:g} req/s for {self.duration_s:g} s"
        amount = f"{self.loops} loops" if self.loops else f"{self.duration_s:g} s"
        return f"closed loop, {self.threads} threads x {amount}, ramp-up {self.ramp_up_s:g} s"


@dataclass(frozen=True, slots=True, kw_only=True)
class Setup:
    """The cluster as the load finds it. None: as the topology says (primaries running, standbys
    cold or warm, the controller on)."""

    running: tuple[str, ...] | None = None  # web nodes running; the others stopped
    in_rotation: tuple[str, ...] = ()  # standbys put in HAProxy's rotation beside the primaries
    controller: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class Expectation:
    """What must hold for the scenario to pass, whatever thresholds the user adds."""

    max_failed: int | None = None  # failed requests at the client
    min_error_pct: float | None = None  # e.g. no servers: every request must fail (100)
    error_codes: tuple[str, ...] = ()  # the only response codes failures may have (503: the custom page)
    served_by: tuple[str, ...] = ()  # each of these must answer some requests
    events: tuple[str, ...] = ()  # event kinds the controller must have journalled during the run
    no_events: tuple[str, ...] = ()  # event kinds it must not have journalled (no failover: slow-web2)
    # A pair with a VIP, once its faults are over and both balancers answer again: the address back on the
    # balancer the faults hit (True: `failback: true`) or still on the other one (False: nopreempt).
    vip_back: bool | None = None

    def describe(self) -> str:
        parts = []
        if self.max_failed is not None:
            parts.append(f"at most {self.max_failed} failed requests")
        if self.min_error_pct is not None:
            parts.append(f"at least {self.min_error_pct:g}% errors")
        if self.error_codes:
            parts.append("errors only " + "/".join(self.error_codes))
        if self.served_by:
            parts.append("served by " + ", ".join(self.served_by))
        if self.events:
            parts.append("events " + ", ".join(self.events))
        if self.no_events:
            parts.append("no " + ", ".join(self.no_events))
        if self.vip_back is not None:
            parts.append("the VIP " + ("back on the balancer hit" if self.vip_back else "stays on the other"))
        return "; ".join(parts) or "measured, nothing expected"


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    name: str
    description: str
    load: LoadSettings
    setup: Setup = Setup()
    faults: tuple[FaultStep, ...] = ()
    expect: Expectation = Expectation()
    # The seed's published row this scenario reproduces (a key of `seed.SEED_ROWS`), if any.
    seed_row: str | None = None

    @property
    def nodes(self) -> frozenset[str]:
        """Every node the scenario names (checked against the topology before anything runs)."""
        named = {f.node for f in self.faults if f.node}
        named.update(self.setup.running or ())
        named.update(self.setup.in_rotation)
        named.update(self.expect.served_by)
        return frozenset(named)

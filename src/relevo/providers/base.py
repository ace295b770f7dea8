"""What a provider is (a small Protocol) and how one is found by name (a lazy registry)."""

from __future__ import annotations

import enum
import importlib
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from relevo.errors import RelevoError

if TYPE_CHECKING:
    from relevo.model import Endpoint, Topology


class NodeState(enum.StrEnum):
    RUNNING = "running"
    PAUSED = "paused"  # every process stopped by SIGSTOP: a hung server
    STOPPED = "stopped"
    MISSING = "missing"  # not created yet


class Fault(enum.StrEnum):
    """Everything relevo can do to a node, in words every provider maps to its own means (the local
    provider: signals, iptables rules and a delaying proxy; LXD: force-stop, freeze, `exec` in the
    container, rules in the container's own network namespace). A provider says which it cannot do here
    (`Provider.cannot`) and why; a scenario needing one is skipped with that reason."""

    CRASH = "crash"  # gone at once, no cleanup (SIGKILL; a forced container stop)
    # The node's service SIGKILLed while its host lives (HAProxy or Apache in a container that runs on;
    # locally the same as crash: the node is its processes).
    CRASH_SERVICE = "crash-service"
    HANG = "hang"  # alive but never answering (SIGSTOP; a frozen container)
    RESUME = "resume"  # undo a hang or a workers' hang (SIGCONT; unfreeze)
    STOP = "stop"  # asked to end (SIGTERM; a clean container stop)
    HANG_WORKERS = "hang-workers"  # the daemon's parent lives, its workers answer nothing
    RELOAD = "reload"  # the daemon's graceful reload: new workers, no connection dropped
    # Lasting faults: applied with their `Impairment`, undone by `Impairing.heal`.
    DELAY = "delay"  # every round trip to the node takes `ms` (+- `jitter_ms`) longer
    LOSS = "loss"  # `pct` % of the packets to and from the node are dropped
    BANDWIDTH = "bandwidth"  # the node's answers flow at `kbit` kbit/s at most
    PARTITION = "partition"  # the balancer and the controller cannot reach the node; it keeps running
    SLOW = "slow"  # every answer of the node starts `ms` later (a slow server, not a slow network)
    CPU_STARVE = "cpu-starve"  # the node's CPU quota cut to `pct` % of one core
    DISK_FULL = "disk-full"  # the node's log and state paths have no space left


# Faults that last until healed, each taking the parameters its `Impairment` carries.
LASTING = frozenset(
    {
        Fault.DELAY,
        Fault.LOSS,
        Fault.BANDWIDTH,
        Fault.PARTITION,
        Fault.SLOW,
        Fault.CPU_STARVE,
        Fault.DISK_FULL,
    }
)
NETWORK = frozenset({Fault.DELAY, Fault.LOSS, Fault.BANDWIDTH, Fault.PARTITION, Fault.SLOW})


@dataclass(frozen=True, slots=True, kw_only=True)
class Impairment:
    """A lasting fault and its amount. Which fields a kind reads: delay `ms` and `jitter_ms`; loss `pct`;
    bandwidth `kbit`; slow `ms`; cpu-starve `pct`; partition and disk-full none."""

    fault: Fault
    ms: float = 0.0
    jitter_ms: float = 0.0
    pct: float = 0.0
    kbit: int = 0

    def describe(self) -> str:
        amounts = {
            Fault.DELAY: f"{self.ms:g} ms" + (f" +- {self.jitter_ms:g} ms" if self.jitter_ms else ""),
            Fault.LOSS: f"{self.pct:g} %",
            Fault.BANDWIDTH: f"{self.kbit} kbit/s",
            Fault.SLOW: f"{self.ms:g} ms",
            Fault.CPU_STARVE: f"{self.pct:g} % of a core",
        }
        amount = amounts.get(self.fault)
        return f"{self.fault} {amount}" if amount else str(self.fault)


# `relevo kill --signal` speaks in signals: the fault each one means.
SIGNAL_FAULTS: dict[signal.Signals, Fault] = {
    signal.SIGKILL: Fault.CRASH,
    signal.SIGSTOP: Fault.HANG,
    signal.SIGCONT: Fault.RESUME,
    signal.SIGTERM: Fault.STOP,
}


def as_fault(sig: signal.Signals) -> Fault:
    try:
        return SIGNAL_FAULTS[sig]
    except KeyError:
        known = ", ".join(s.name for s in SIGNAL_FAULTS)
        raise ValueError(f"no fault for {sig.name}; expected one of {known}") from None


@dataclass(frozen=True, slots=True)
class Problem:
    """A topology a provider cannot run: `where` is the key path the loader points at (`balancer`,
    `nodes.web1`, `providers.lxd`), `message` says what was expected."""

    where: str
    message: str


@dataclass(frozen=True, slots=True)
class OptionsSpec:
    """The options a provider reads: its `providers.<name>:` section and each node's `options:`.
    Each maps a key to its type (str, int, bool); unknown keys are errors, like unknown keys anywhere."""

    section: Mapping[str, type] = field(default_factory=dict)
    node: Mapping[str, type] = field(default_factory=dict)


@runtime_checkable
class Nodes(Protocol):
    """The verbs that act on a node by name: what the controller's loop and its `LockedNodes`
    need, and what a `Cluster` and every provider offer. Idempotent where that makes sense: starting a
    running node or stopping a stopped one does nothing."""

    def start(self, node: str) -> None:
        """Start the node's processes; returns once they exist (not necessarily serving)."""

    def stop(self, node: str) -> None:
        """Stop the node gracefully, bounded in time; falls back to a forced stop."""

    def fault(self, node: str, fault: Fault) -> None:
        """Inflict `fault` (not a lasting one) on the node; returns once it has taken effect (status then
        tells it). ProviderError when the node cannot take it now (not running)."""

    def status(self, node: str) -> NodeState:
        """What the node's processes are doing now, as the provider sees them."""


@runtime_checkable
class Provider(Nodes, Protocol):
    """Makes the nodes of one topology real: the `Nodes` verbs, plus create, address, and which faults it
    cannot inflict here."""

    name: str

    def create(self, node: str) -> None:
        """Prepare the node so that `start` is quick (configs, pages, a container)."""

    def address(self, node: str) -> Endpoint:
        """Where the node serves HTTP."""

    def cannot(self, node: str, fault: Fault) -> str | None:
        """Why this provider cannot inflict `fault` on `node` here (not root, a tool or kernel feature
        missing, no such means): a sentence a person can act on. None when it can."""


# -- optional abilities: each a Protocol checked with isinstance ---------------------------------------
@runtime_checkable
class Impairing(Protocol):
    """Lasting faults (`LASTING`): each recorded in the state directory before it is applied, so that a
    relevo that dies mid-span leaves a record the next `scenarios`, `up` or `down` heals (`heal_all`).
    Only what the record names is ever removed: rules, chains and processes relevo made for this cluster."""

    def impair(self, node: str, impairment: Impairment) -> str:
        """Apply it; returns the means used (`iptables statistic`, `delaying proxy`, `netem`, ...)."""

    def heal(self, node: str) -> None:
        """Undo every lasting fault on `node` (nothing to undo: nothing done)."""

    def heal_all(self) -> list[str]:
        """Undo every lasting fault recorded for this cluster, whoever applied it; what was undone."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """One of a provider's own checks of a topology on this host (`relevo doctor`): what, whether it holds,
    and the command or the edit that fixes it."""

    name: str
    ok: bool
    detail: str
    fix: str = ""


@runtime_checkable
class Doctoring(Protocol):
    """An optional ability: checks of its own for `nodes` before they are made (a bridge subnet that
    clashes, names or addresses other instances hold); `where` names the topology file for the fixes.
    Only looks."""

    def doctor_checks(self, nodes: Sequence[str], where: str) -> list[Finding]: ...


@runtime_checkable
class Destroyable(Protocol):
    """An optional ability: remove everything `create` made for the cluster (containers, networks,
    profiles), and nothing else; returns what it removed."""

    def destroy(self) -> list[str]: ...


@runtime_checkable
class BulkStatus(Protocol):
    """An optional ability: every node's state in one call (LXD lists all its instances at once)."""

    def statuses(self, nodes: Sequence[str]) -> Mapping[str, NodeState]: ...


@runtime_checkable
class BoundedStatus(Protocol):
    """An optional ability of a provider that answers `status`/`statuses` through an API (LXD's): how long
    one look at `nodes` may block at most, so that a controller whose tick waits on it is known for alive,
    not stuck. A provider without it answers from this process (local: /proc) and adds nothing."""

    def status_bound_s(self, nodes: Sequence[str]) -> float: ...


class BulkNodes(Nodes, BulkStatus, Protocol):
    """The verbs and every node's state in one call: what a `Cluster` offers the controller's lock."""


@runtime_checkable
class Recording(Protocol):
    """An optional ability: the provider keeps records of what it started in the state directory, and
    can answer for (and stop) a recorded node the topology no longer names."""

    def recorded(self) -> list[str]: ...

    def running_recorded(self, node: str) -> bool: ...

    def adopt_intents(self) -> None:
        """Adopt each node whose start was cut short (only its intent recorded), or clear its stale
        intent; leave full records as they are."""

    def stop(self, node: str) -> None: ...


@runtime_checkable
class HoldsVip(Protocol):
    """An optional ability of a provider that runs a pair with a VIP: which balancer holds it now, as
    this host's network sees it (None: not known yet)."""

    def vip_holder(self) -> str | None: ...


@runtime_checkable
class HostListeners(Protocol):
    """An optional ability: what listens on this host for a node, when that is not simply the node's own
    address (a container is reached through proxy devices: its balancer's, none for a web node)."""

    def host_listeners(self, node: str) -> list[tuple[str, Endpoint]]: ...


# Abilities of the provider's class, asked before any provider exists (while the topology is read).
@runtime_checkable
class DeclaresOptions(Protocol):
    """The class declares the options it reads (its `providers.<name>:` section, each node's `options:`)."""

    options: OptionsSpec


@runtime_checkable
class ChecksTopology(Protocol):
    """The class has rules of its own for a topology (loopback only, a subnet, ...)."""

    @staticmethod
    def check_topology(topology: Topology) -> Sequence[Problem]: ...


@runtime_checkable
class MapsHostAddress(Protocol):
    """The class maps a node's listener address to where this host reaches it (a proxy device)."""

    @staticmethod
    def host_address(address: str) -> str: ...


# --- event streams: hearing a node's state change as it happens (beside the controller's tick) ---------
@dataclass(frozen=True, slots=True, kw_only=True)
class NodeEvent:
    """A change of a node's processes, heard from the substrate itself (a pidfd, LXD's lifecycle events):
    certain evidence, as the provider's own `status` is."""

    node: str
    state: NodeState  # STOPPED: its processes ended; PAUSED: frozen; RUNNING: started or thawed
    source: str  # what heard it: "pidfd", "lxd-events"
    detail: str = ""


class Watch(Protocol):
    """One stream of node events, read by a thread the controller owns."""

    def wait(self, timeout_s: float) -> list[NodeEvent]:
        """Block up to `timeout_s`; the events heard meanwhile ([] on a timeout). A lost connection is not
        an error: the watch reconnects on a later call, and the tick covers the gap meanwhile."""
        ...

    def refresh(self) -> None:
        """Follow nodes started or stopped since the last call (thread-safe; called after each tick)."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class Watching(Protocol):
    """An optional ability: watches that report `nodes`' deaths (and freezes, starts) as they happen."""

    def watches(self, nodes: Sequence[str]) -> list[Watch]: ...


# Lazy "module:Class" strings: `import relevo` imports no provider's dependencies.
PROVIDERS: dict[str, str] = {
    "local": "relevo.providers.local:LocalProvider",
    "lxd": "relevo.providers.lxd:LXDProvider",
}


class UnknownProviderError(RelevoError):
    exit_status = 2


def known_providers() -> dict[str, str]:
    """Built-in providers plus those that third-party packages register under `relevo.providers`."""
    found = dict(PROVIDERS)
    for entry in entry_points(group="relevo.providers"):
        found.setdefault(entry.name, entry.value)
    return found


def provider_class(name: str) -> Any:
    registry = known_providers()
    try:
        target = registry[name]
    except KeyError:
        known = ", ".join(sorted(registry))
        raise UnknownProviderError(f"unknown provider {name!r}; known providers: {known}") from None
    module_name, _, class_name = target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def options_spec(name: str) -> OptionsSpec | None:
    """The options provider `name` declares (None: a provider that declares none, checked by itself)."""
    cls = provider_class(name)
    return cls.options if isinstance(cls, DeclaresOptions) else None


def topology_problems(name: str, topology: Topology) -> list[Problem]:
    """What provider `name` finds wrong with a topology (its own rules: loopback only, a subnet...)."""
    cls = provider_class(name)
    return list(cls.check_topology(topology)) if isinstance(cls, ChecksTopology) else []


def host_address(name: str, address: str) -> str:
    """Where this host reaches a listener at `address` on a node of provider `name` (the same address,
    unless the provider maps it: a container's proxy device on loopback)."""
    cls = provider_class(name)
    return cls.host_address(address) if isinstance(cls, MapsHostAddress) else address


def load_provider(name: str, topology: Topology) -> Provider:
    provider: Provider = provider_class(name)(topology)
    return provider

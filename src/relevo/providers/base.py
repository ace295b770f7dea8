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
    """What can be done to a node, in words every provider maps to its own means."""

    CRASH = "crash"  # gone at once, no cleanup (SIGKILL; a forced container stop)
    HANG = "hang"  # alive but never answering (SIGSTOP; a frozen container)
    RESUME = "resume"  # undo a hang (SIGCONT; unfreeze)
    STOP = "stop"  # asked to end (SIGTERM; a clean container stop)


# `relevo kill --signal` and callers that speak in signals: the fault each signal means.
SIGNAL_FAULTS: dict[signal.Signals, Fault] = {
    signal.SIGKILL: Fault.CRASH,
    signal.SIGSTOP: Fault.HANG,
    signal.SIGCONT: Fault.RESUME,
    signal.SIGTERM: Fault.STOP,
}


def as_fault(what: Fault | signal.Signals) -> Fault:
    if isinstance(what, Fault):
        return what
    try:
        return SIGNAL_FAULTS[what]
    except KeyError:
        known = ", ".join(s.name for s in SIGNAL_FAULTS)
        raise ValueError(f"no fault for {what.name}; expected one of {known}") from None


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
class Provider(Protocol):
    """Makes the nodes of one topology real. Every verb takes a node name (balancer included) and is
    idempotent where that makes sense: starting a running node or stopping a stopped one does nothing."""

    name: str

    def create(self, node: str) -> None:
        """Prepare the node so that `start` is quick (configs, pages, a container)."""

    def start(self, node: str) -> None:
        """Start the node's processes; returns once they exist (not necessarily serving)."""

    def stop(self, node: str) -> None:
        """Stop the node gracefully, bounded in time; falls back to SIGKILL."""

    def fault(self, node: str, fault: Fault) -> None:
        """Inflict `fault` on the node; returns once it has taken effect (status then tells it)."""

    def status(self, node: str) -> NodeState:
        """What the node's processes are doing now, as the provider sees them."""

    def address(self, node: str) -> Endpoint:
        """Where the node serves HTTP."""


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
class Recording(Protocol):
    """An optional ability: the provider keeps records of what it started in the state directory, and
    can answer for (and stop) a recorded node the topology no longer names."""

    def recorded(self) -> list[str]: ...

    def running_recorded(self, node: str) -> bool: ...

    def stop(self, node: str) -> None: ...


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
    spec = getattr(provider_class(name), "options", None)
    return spec if isinstance(spec, OptionsSpec) else None


def topology_problems(name: str, topology: Topology) -> list[Problem]:
    """What provider `name` finds wrong with a topology (its own rules: loopback only, a subnet...)."""
    check = getattr(provider_class(name), "check_topology", None)
    return list(check(topology)) if check is not None else []


def host_address(name: str, address: str) -> str:
    """Where this host reaches a listener at `address` on a node of provider `name` (the same address,
    unless the provider maps it: a container's proxy device on loopback)."""
    mapping = getattr(provider_class(name), "host_address", None)
    return str(mapping(address)) if mapping is not None else address


def load_provider(name: str, topology: Topology) -> Provider:
    provider: Provider = provider_class(name)(topology)
    return provider

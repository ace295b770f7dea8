"""What a provider is (a small Protocol) and how one is found by name (a lazy registry)."""

from __future__ import annotations

import enum
import importlib
import signal
from collections.abc import Mapping, Sequence
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from relevo.errors import RelevoError

if TYPE_CHECKING:
    from relevo.model import Endpoint, Topology


class NodeState(enum.StrEnum):
    RUNNING = "running"
    PAUSED = "paused"  # every process stopped by SIGSTOP: a hung server
    STOPPED = "stopped"
    MISSING = "missing"  # not created yet


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

    def kill(self, node: str, sig: signal.Signals) -> None:
        """Send `sig` to every process of the node (KILL: a crash, STOP: a hang, CONT: a resume)."""

    def status(self, node: str) -> NodeState:
        """What the node's processes are doing now, as the provider sees them."""

    def address(self, node: str) -> Endpoint:
        """Where the node serves HTTP."""


@runtime_checkable
class Destroyable(Protocol):
    """An optional ability: remove what `create` made (a container, an image)."""

    def destroy(self, node: str) -> None: ...


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
}


class UnknownProviderError(RelevoError):
    exit_status = 2


def known_providers() -> dict[str, str]:
    """Built-in providers plus those that third-party packages register under `relevo.providers`."""
    found = dict(PROVIDERS)
    for entry in entry_points(group="relevo.providers"):
        found.setdefault(entry.name, entry.value)
    return found


def load_provider(name: str, topology: Topology) -> Provider:
    registry = known_providers()
    try:
        target = registry[name]
    except KeyError:
        known = ", ".join(sorted(registry))
        raise UnknownProviderError(f"unknown provider {name!r}; known providers: {known}") from None
    module_name, _, class_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    provider: Provider = cls(topology)
    return provider

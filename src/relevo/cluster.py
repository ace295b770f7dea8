"""A whole cluster: the Provider verbs for every node name, dispatched to each node's provider."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from relevo.errors import ProviderError, RuntimeAPIError
from relevo.files import claim_state_dir
from relevo.haproxy.runtime import RuntimeAPI, ServerStat
from relevo.model import Endpoint, Role, Topology
from relevo.paths import StatePaths
from relevo.providers.base import (
    LASTING,
    BulkStatus,
    Destroyable,
    Fault,
    HostListeners,
    Impairing,
    Impairment,
    NodeState,
    Provider,
    Recording,
    load_provider,
)
from relevo.providers.in_charge import InCharge, balancer_in_charge
from relevo.services.haproxy import runtime_sockets, save_server_state


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeStatus:
    name: str
    role: Role
    provider: str
    state: NodeState
    health: str  # as HAProxy sees it: UP, DOWN, MAINT, DRAIN, ... or "-" when HAProxy does not answer
    address: str
    current_sessions: int | None
    total_requests: int | None
    standby_for: str | None = None


class Cluster:
    """The provider verbs (`Nodes`, and more) for the balancer and every web node of one topology."""

    name = "cluster"

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.paths = StatePaths(topology.state_dir)
        claim_state_dir(self.paths.root, create=False)  # an unsafe one is refused by every command
        self._providers: dict[str, Provider] = {}

    @property
    def runtime(self) -> RuntimeAPI:
        """The first balancer's Runtime API, reached through the held state directory (see anchor)."""
        return RuntimeAPI(self.paths.held().runtime_socket)

    @property
    def runtimes(self) -> dict[str, RuntimeAPI]:
        """Every balancer's Runtime API (a pair has two), the first balancer's first."""
        return {name: RuntimeAPI(path) for name, path in runtime_sockets(self.topology).items()}

    def provider_for(self, node: str) -> Provider:
        if self.topology.is_balancer(node):
            kind = self.topology.balancer_named(node).provider
        else:
            try:
                kind = self.topology.node(node).provider
            except KeyError:
                known = ", ".join(self.topology.node_names)
                raise ProviderError(f"no node named {node!r}; nodes: {known}") from None
        if kind not in self._providers:
            self._providers[kind] = load_provider(kind, self.topology)
        return self._providers[kind]

    # -- the Provider verbs, by node name --------------------------------------------------------------
    def create(self, node: str) -> None:
        self.provider_for(node).create(node)

    def start(self, node: str) -> None:
        self.provider_for(node).start(node)

    def stop(self, node: str) -> None:
        if self.topology.is_balancer(node) and self.status(node) is NodeState.RUNNING:
            # Its own states first: a balancer stopped on purpose saves what it served with.
            save_server_state(self.paths.held(), [runtime_sockets(self.topology)[node]])
        self.provider_for(node).stop(node)

    def fault(self, node: str, fault: Fault) -> None:
        """Inflict a fault; the node's provider maps it to its own means (ProviderError when it cannot:
        `cannot` says why beforehand). A reloaded balancer reads the server states saved just before."""
        if fault is Fault.RELOAD and self.topology.is_balancer(node):
            self.save_server_state()
        self.provider_for(node).fault(node, fault)

    def cannot(self, node: str, fault: Fault) -> str | None:
        """Why the node's provider cannot inflict `fault` on it here; None when it can."""
        provider = self.provider_for(node)
        if fault in LASTING and not isinstance(provider, Impairing):
            return f"the {provider.name} provider has no lasting faults"
        return provider.cannot(node, fault)

    # -- lasting faults: recorded before applied, healed at the end of their span or by the next run ------
    def impair(self, node: str, impairment: Impairment) -> str:
        """Apply a lasting fault; returns the means the provider used (said in the scenario's result)."""
        provider = self.provider_for(node)
        reason = self.cannot(node, impairment.fault)
        if reason is not None or not isinstance(provider, Impairing):
            raise ProviderError(reason or f"{impairment.fault}: not supported")
        return provider.impair(node, impairment)

    def heal(self, node: str) -> None:
        provider = self.provider_for(node)
        if isinstance(provider, Impairing):
            provider.heal(node)

    def heal_all(self) -> list[str]:
        """Undo every lasting fault any provider of this cluster recorded (a relevo that died mid-span)."""
        healed: list[str] = []
        kinds = {self.topology.balancer.provider, *(n.provider for n in self.topology.nodes)}
        for kind in sorted(kinds):
            provider = self._providers.get(kind) or load_provider(kind, self.topology)
            self._providers[kind] = provider
            if isinstance(provider, Impairing):
                healed += provider.heal_all()
        return healed

    def status(self, node: str) -> NodeState:
        return self.provider_for(node).status(node)

    def statuses(self, nodes: Sequence[str]) -> dict[str, NodeState]:
        """Every node's state, one call per provider that can (`BulkStatus`), one per node otherwise."""
        by_provider: dict[int, tuple[Provider, list[str]]] = {}
        for node in nodes:
            provider = self.provider_for(node)
            by_provider.setdefault(id(provider), (provider, []))[1].append(node)
        found: dict[str, NodeState] = {}
        for provider, names in by_provider.values():
            if isinstance(provider, BulkStatus):
                found.update(provider.statuses(names))
            else:
                found.update({name: provider.status(name) for name in names})
        return found

    def address(self, node: str) -> Endpoint:
        return self.provider_for(node).address(node)

    def balancer_in_charge(self) -> InCharge:
        """The balancer a fault meant for "the balancer" hits now: a pair's VIP holder, or locally the first
        running one (providers/in_charge.py says why)."""
        provider = self.provider_for(self.topology.balancer.name)
        return balancer_in_charge(self.topology, provider, self.status)

    def host_listeners(self, node: str) -> list[tuple[str, Endpoint]]:
        """What must be free on this host for the node to start (checked before anything starts): the
        provider says, when it can (a container listens on this host only through proxy devices)."""
        provider = self.provider_for(node)
        if isinstance(provider, HostListeners):
            return list(provider.host_listeners(node))
        if self.topology.is_balancer(node):
            balancer = self.topology.balancer_named(node)
            if node != self.topology.balancer.name:
                return [(f"{node} stats", balancer.stats)]  # the frontend is shared (SO_REUSEPORT)
            return [(f"{node} frontend", balancer.frontend), (f"{node} stats", balancer.stats)]
        return [(node, self.topology.node(node).endpoint)]

    def destroy(self) -> list[str]:
        """Remove what every provider created for this cluster (`Destroyable`), nothing else."""
        removed: list[str] = []
        kinds = {self.topology.balancer.provider, *(n.provider for n in self.topology.nodes)}
        for kind in sorted(kinds):
            provider = self._providers.get(kind) or load_provider(kind, self.topology)
            self._providers[kind] = provider
            if isinstance(provider, Destroyable):
                removed += provider.destroy()
        return removed

    # -- what the state directory records, whatever the topology says now ------------------------------
    def recording_providers(self) -> list[Recording]:
        kinds = {self.topology.balancer.provider, *(n.provider for n in self.topology.nodes)}
        found: list[Recording] = []
        for kind in sorted(kinds):
            if kind not in self._providers:
                self._providers[kind] = load_provider(kind, self.topology)
            provider = self._providers[kind]
            if isinstance(provider, Recording):
                found.append(provider)
        return found

    def adopt_orphans(self) -> None:
        """A node whose start was cut short (only its intent recorded) is adopted from its daemon's pid
        file, or its stale intent cleared (the controller's every tick, `up` and `down`)."""
        for provider in self.recording_providers():
            provider.adopt_intents()

    def strays(self) -> list[str]:
        """Recorded nodes the topology no longer names whose processes still run."""
        names = set(self.topology.node_names)
        return [
            name
            for provider in self.recording_providers()
            for name in provider.recorded()
            if name not in names and provider.running_recorded(name)
        ]

    def lingers(self, node: str) -> bool:
        """Something a record names still runs for `node` (a leader gone, but members of its group left)."""
        return any(
            node in provider.recorded() and provider.running_recorded(node)
            for provider in self.recording_providers()
        )

    def stop_recorded(self, node: str) -> None:
        """Stop a recorded node, in the topology or not."""
        for provider in self.recording_providers():
            if node in provider.recorded():
                provider.stop(node)

    # -- HAProxy's view --------------------------------------------------------------------------------------
    def save_server_state(self) -> None:
        save_server_state(self.paths.held(), runtime_sockets(self.topology).values())

    def haproxy_servers(self, balancer: str | None = None) -> dict[str, ServerStat]:
        """HAProxy's view of the backend's servers (the first balancer of a pair that answers, or the
        one named); empty when none answers."""
        names = [balancer] if balancer else list(self.runtimes)
        for name in names:
            try:
                return self.runtimes[name].servers(self.topology.balancer.BACKEND)
            except RuntimeAPIError:
                continue
        return {}

    def node_statuses(self) -> list[NodeStatus]:
        answers = {b.name: self.haproxy_servers(b.name) for b in self.topology.balancers}
        seen = next((found for found in answers.values() if found), {})
        statuses = [
            NodeStatus(
                name=balancer.name,
                role=Role.BALANCER,
                provider=balancer.provider,
                state=self.status(balancer.name),
                health="UP" if answers[balancer.name] else "-",
                address=f"{balancer.frontend.address}:{balancer.frontend.port}",
                current_sessions=None,
                total_requests=None,
            )
            for balancer in self.topology.balancers
        ]
        for node in self.topology.nodes:
            stat = seen.get(node.name)
            statuses.append(
                NodeStatus(
                    name=node.name,
                    role=node.role,
                    provider=node.provider,
                    state=self.status(node.name),
                    health=stat.health if stat else "-",
                    address=f"{node.address}:{node.port}",
                    current_sessions=stat.current_sessions if stat else None,
                    total_requests=stat.total_requests if stat else None,
                    standby_for=node.standby_for,
                )
            )
        return statuses

"""The `lxd` provider: every node is a system container from the base image, on a bridge relevo
creates (NAT, routing and firewall off, no uplink) or on a network the user names.

This module is the node lifecycle (the Provider verbs, and `destroy`); where each container lives is
lxd_placement, what it is made with lxd_setup, the services in it lxd_guest, the topology's rules
lxd_rules. From the host the balancer is reached through proxy devices on loopback: its frontend, its
stats page, and its Runtime API socket mapped into the state directory, so RuntimeAPI and the controller
are the same as locally. Faults: crash = forced stop, hang = freeze, resume = unfreeze, stop = clean stop.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import threading
from collections.abc import Callable, Mapping, Sequence

from relevo.errors import ProviderError
from relevo.files import claim_state_dir, ensure_dir, read_or_empty
from relevo.lxd.build import DEFAULT_ALIAS
from relevo.lxd.client import Instance, LXDClient
from relevo.lxd.errors import LXDConflictError, LXDError, LXDNotFoundError, LXDOperationError
from relevo.model import Endpoint, Temperature, Topology
from relevo.paths import StatePaths
from relevo.providers import lxd_doctor, lxd_rules
from relevo.providers.base import Fault, Finding, Impairment, NodeState, OptionsSpec, Problem, Watch
from relevo.providers.lxd_events import LifecycleWatch
from relevo.providers.lxd_guest import GuestServices
from relevo.providers.lxd_host import Created, LXDHost, interfaces_file
from relevo.providers.lxd_impair import ContainerImpairments
from relevo.providers.lxd_placement import Placement, qualified, split_record
from relevo.providers.lxd_setup import (
    ACCESS_LOG_DEVICE,
    CPU_PERIOD_MS,
    NIC,
    OWNER_KEY,
    access_log_device,
    balancer_nic,
    balancer_proxies,
    base_devices,
    bridge_prefix,
    cpu_limits,
    ensure_bridge,
    network_of,
)
from relevo.providers.lxd_vip import VipHolder
from relevo.render.haproxy import HAProxyLayout
from relevo.services.haproxy import runtime_sockets

__all__ = ["OWNER_KEY", "LXDProvider", "cluster_tag", "network_of"]

STOP_TIMEOUT_S = 10.0
STATES = {
    "Running": NodeState.RUNNING,
    "Frozen": NodeState.PAUSED,
    "Freezing": NodeState.PAUSED,
    "Stopped": NodeState.STOPPED,
}
# Any other status is not evidence of a death: "Starting"/"Stopping" pass, and LXD gives up on a state
# from the container's lxc monitor after 5 s (driver_lxc.go getLxcState, "Monitor is unresponsive"). On
# an emulated 1-vCPU VM saturated by a balancer's reload, a listing without "Running" was once taken for
# "stopped" and a serving balancer restarted (895 of 1,200 requests lost; which status LXD listed was not
# recorded). The processes are taken as running and the probes and the Runtime API decide, as for any
# silent node; a real stop is "Stopped" in the next listing, and LXD's lifecycle event says it at once.
NOT_CERTAIN = NodeState.RUNNING

# The container's CFS quota: what capacity.cpu sets and cpu-starve cuts for a span.
ALLOWANCE = "limits.cpu.allowance"


class LXDProvider:
    name = "lxd"
    options = OptionsSpec(
        section={
            "remote": str,
            "project": str,
            "image": str,
            "profile": str,
            "network": str,
            "storage_pool": str,
            "provisioned": bool,
        },
        node={"remote": str, "target": str, "network": str},
    )

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.paths = StatePaths(topology.state_dir)
        self.placement = Placement(topology)
        self.settings = self.placement.settings
        self.created = Created(self.paths)
        self.host = LXDHost(self.placement.resolve)
        self.guest = GuestServices(topology, self.host)
        # Running nodes whose configs `create` rewrote: the units `start` reloads.
        self._config_changed: dict[str, list[str]] = {}
        # Nodes whose config was written while their container was stopped: checked once started.
        self._unchecked: set[str] = set()
        # Containers are created side by side (`relevo up`): one of them makes the bridge.
        self._bridge_lock = threading.Lock()
        self.owner = cluster_tag(topology)
        # Containers made and configured by provisioning (`relevo export vagrant`): started, stopped,
        # frozen and watched here, never created or rewritten.
        self.provisioned = self.settings.get("provisioned") is True
        self.impairments = ContainerImpairments(self.paths, NIC)
        self._vip: VipHolder | None = None

    # -- the topology's rules for this provider --------------------------------------------------------
    @staticmethod
    def host_address(address: str) -> str:
        return lxd_rules.host_address(address)

    @staticmethod
    def check_topology(topology: Topology) -> list[Problem]:
        return lxd_rules.check_topology(topology)

    # -- the Provider verbs --------------------------------------------------------------------------
    def create(self, node: str) -> None:
        claim_state_dir(self.paths.root)
        client, name = self.placement.resolve(node)
        instance = self._instance(client, name)
        if instance is None and self.provisioned:
            raise ProviderError(
                f"{node} has no container {name!r}: provisioning makes it (providers.lxd.provisioned)"
            )
        if instance is None:
            self._create_instance(node, client, name)
            return
        if instance.config.get(OWNER_KEY) != self.owner:
            raise ProviderError(
                f"LXD already has an instance named {name!r} that this cluster did not create"
            )
        if self.provisioned:
            return  # its files are the provisioning's
        if self.guest.is_balancer(node) and ACCESS_LOG_DEVICE not in instance.devices:
            # Made before relevo carried HAProxy's request log: the device is added (live, if running).
            client.add_device(name, ACCESS_LOG_DEVICE, access_log_device(self.topology))
        running = instance.status == "Running"
        changed = self.guest.install(node, check=running)
        if changed and running:
            self._config_changed[node] = changed
        elif changed:
            self._unchecked.add(node)

    def start(self, node: str) -> None:
        client, name = self.placement.resolve(node)
        state = self.status(node)
        if state is NodeState.RUNNING:
            changed = self._config_changed.pop(node, None)
            if changed:
                self.guest.reload(node, changed)
            return
        if state is NodeState.MISSING:
            self.create(node)
        if self.guest.is_balancer(node):
            self._before_balancer_start(node)
            # The server states the controller saved (in the state directory) are read at start.
            saved = read_or_empty(self.paths.held().server_state)
            path = str(HAProxyLayout.in_guest().server_state)
            client.push_file(name, path, saved.encode(), mode=0o600)
        if state is NodeState.PAUSED:
            client.unfreeze(name)
            return
        client.start(name)
        self._config_changed.pop(node, None)
        self._check_config_once(node)

    def _check_config_once(self, node: str) -> None:
        """A config pushed while the guest was stopped is checked in it once it runs (`install`)."""
        if node in self._unchecked:
            self.guest.check_config(node)
            self._unchecked.discard(node)

    def stop(self, node: str) -> None:
        client, name = self.placement.resolve(node)
        instance = self._instance(client, name)
        if instance is not None and instance.status != "Stopped":
            if instance.status in ("Frozen", "Freezing"):
                client.unfreeze(name)
            try:
                client.stop(name, timeout_s=STOP_TIMEOUT_S)
            except LXDError:
                client.stop(name, force=True)
        self._after_stop(node)

    def fault(self, node: str, fault: Fault) -> None:
        reason = self.cannot(node, fault)
        if reason is not None:
            raise ProviderError(reason)
        client, name = self.placement.resolve(node)
        instance = self._instance(client, name)
        if instance is None:
            raise ProviderError(f"{node} has no container")
        if fault is Fault.CRASH:
            client.stop(name, force=True)
            self._after_stop(node)
        elif fault is Fault.CRASH_SERVICE:
            if instance.status != "Running":
                raise ProviderError(f"{node} is not running")
            self.guest.kill_service(node)
        elif fault is Fault.HANG:
            try:
                client.freeze(name)
            except LXDOperationError:
                # Seen under load average 19 on a balancer of a pair: "freezing the container failed"
                # after ~13 s (meanwhile the controller saw it Freezing, a hang, and restarted it). Tried
                # once more while it still runs; a container stopped meanwhile is an error.
                if self.status(node) is not NodeState.RUNNING:
                    raise
                client.freeze(name)
        elif fault is Fault.RESUME:
            # Like SIGCONT, nothing to a running container (LXD refuses to unfreeze one).
            if instance.status in ("Frozen", "Freezing"):
                client.unfreeze(name)
            if not self.guest.is_balancer(node) and instance.status != "Stopped":
                self.guest.resume_workers(node)
        elif fault is Fault.HANG_WORKERS:
            if instance.status != "Running":
                raise ProviderError(f"{node} is not running")
            self.guest.hang_workers(node)
        elif fault is Fault.RELOAD:
            if instance.status != "Running":
                raise ProviderError(f"{node} is not running")
            if self.guest.is_balancer(node):
                # The new workers read the server states the cluster saved just before (on the host).
                saved = read_or_empty(self.paths.held().server_state)
                path = str(HAProxyLayout.in_guest().server_state)
                client.push_file(name, path, saved.encode(), mode=0o600)
            self.guest.reload(node)
        else:
            self.stop(node)

    def cannot(self, node: str, fault: Fault) -> str | None:
        if fault in (Fault.CRASH, Fault.CRASH_SERVICE, Fault.HANG, Fault.RESUME, Fault.STOP, Fault.RELOAD):
            return None
        if fault is Fault.HANG_WORKERS:
            if self.guest.is_balancer(node):
                return "hang-workers stops Apache's workers: a web node's fault, not the balancer's"
            return None
        client = self.placement.resolve(node)[0]
        return self.impairments.cannot(fault, local_daemon=client.endpoint.socket_path is not None)

    # -- lasting faults (Impairing), in the container's own network namespace -----------------------------
    def impair(self, node: str, impairment: Impairment) -> str:
        reason = self.cannot(node, impairment.fault)
        if reason is not None:
            raise ProviderError(reason)
        client, name = self.placement.resolve(node)
        instance = self._instance(client, name)
        if instance is None or instance.status != "Running":
            raise ProviderError(f"{node} is not running")
        if impairment.fault is Fault.CPU_STARVE:
            self.heal(node)
            quota_ms = max(1, round(impairment.pct / 100 * CPU_PERIOD_MS))
            allowance = f"{quota_ms}ms/{CPU_PERIOD_MS}ms"
            self.impairments.record_starve(node, instance.pid, instance.config.get(ALLOWANCE))
            client.set_config(name, {ALLOWANCE: allowance})
            return f"{ALLOWANCE} {allowance}"
        port = (
            self.topology.balancer.frontend.port
            if self.guest.is_balancer(node)
            else self.topology.node(node).port
        )
        return self.impairments.impair(node, instance.pid, self.node_address(node), port, impairment)

    def heal(self, node: str) -> None:
        client, name = self.placement.resolve(node)
        instance = self._instance(client, name)
        starved, previous = self.impairments.starved(node)
        if starved and instance is not None:
            client.set_config(name, {ALLOWANCE: previous})  # the capacity's allowance back, or none
        self.impairments.heal(node, instance.pid if instance is not None else 0)

    def doctor_checks(self, nodes: Sequence[str], where: str) -> list[Finding]:
        """`relevo doctor`: the bridge's subnet, the nodes' names and addresses (providers.lxd_doctor)."""
        return lxd_doctor.checks(self, list(nodes), where)

    def heal_all(self) -> list[str]:
        healed = []
        for node in self.impairments.recorded():
            with contextlib.suppress(ProviderError, LXDError):
                self.heal(node)
                healed.append(node)
        return healed

    def status(self, node: str) -> NodeState:
        client, name = self.placement.resolve(node)
        instance = self._instance(client, name)
        return NodeState.MISSING if instance is None else STATES.get(instance.status, NOT_CERTAIN)

    def statuses(self, nodes: Sequence[str]) -> Mapping[str, NodeState]:
        """Every node's state from one listing per daemon (the controller's tick)."""
        by_client: dict[int, tuple[LXDClient, dict[str, str]]] = {}
        for node in nodes:
            client, name = self.placement.resolve(node)
            by_client.setdefault(id(client), (client, {}))[1][name] = node
        found: dict[str, NodeState] = {}
        for client, names in by_client.values():
            seen = {i.name: i.status for i in client.instances()}
            for name, node in names.items():
                status = seen.get(name)
                found[node] = NodeState.MISSING if status is None else STATES.get(status, NOT_CERTAIN)
        return found

    def status_bound_s(self, nodes: Sequence[str]) -> float:
        """`statuses(nodes)` lists each daemon holding some of them in turn, each within its API's timeout."""
        clients = {id(client): client for client, _ in (self.placement.resolve(node) for node in nodes)}
        return sum(client.endpoint.timeout_s for client in clients.values())

    def watches(self, nodes: Sequence[str]) -> list[Watch]:
        """One lifecycle event stream per daemon holding some of `nodes` (Watching)."""
        by_daemon: dict[int, tuple[LXDClient, dict[str, str]]] = {}
        for node in nodes:
            client, name = self.placement.resolve(node)
            by_daemon.setdefault(id(client), (client, {}))[1][name] = node
        return [LifecycleWatch(client.endpoint, names) for client, names in by_daemon.values()]

    def address(self, node: str) -> Endpoint:
        """Where HAProxy and the probes reach the node: the address the topology gives it."""
        if self.topology.is_balancer(node):
            return self.topology.balancer_named(node).frontend
        return self.topology.node(node).endpoint

    def host_listeners(self, node: str) -> list[tuple[str, Endpoint]]:
        """What listens on this host for the node: the balancer's proxy devices, nothing for a web node
        (nor for a pair's frontend: the VIP is on the bridge, not a listener of this host)."""
        if not self.topology.is_balancer(node):
            return []
        balancer = self.topology.balancer_named(node)
        if self.topology.pair is not None:
            return [(f"{node} stats", balancer.stats)]
        return [(f"{node} frontend", balancer.frontend), (f"{node} stats", balancer.stats)]

    def vip_holder(self) -> str | None:
        """The balancer holding the pair's VIP, from the host's neighbour table (lxd_vip)."""
        if (
            self.topology.pair is None
            or self.topology.pair.vip is None
            or self.placement.away(self.topology.balancer.name)
        ):
            return None
        if self._vip is None:
            self._vip = VipHolder(self.topology, self.network_name, self._balancer_macs)
        return self._vip.holder()

    def _balancer_macs(self) -> dict[str, str]:
        macs = {}
        for balancer in self.topology.balancers:
            client, name = self.placement.resolve(balancer.name)
            instance = self._instance(client, name)
            if instance is not None:
                macs[balancer.name] = instance.config.get(f"volatile.{NIC}.hwaddr", "")
        return macs

    # -- names, for doctor and the tests --------------------------------------------------------------
    def container_name(self, node: str) -> str:
        return self.placement.container_name(node)

    def client_of(self, node: str) -> LXDClient:
        """The client of the daemon that holds (or will hold) the node's container."""
        return self.placement.resolve(node)[0]

    def node_address(self, node: str) -> str:
        """The address the node's container has on its network."""
        if self.topology.is_balancer(node):
            return self.topology.balancer_named(node).address
        return self.topology.node(node).address

    @property
    def network_name(self) -> str:
        """The network of the nodes on the home daemon: the user's, else the bridge relevo makes."""
        return self.placement.named_network(self.topology.balancer.name) or f"rlv{self.owner[:8]}"

    def network_of_node(self, node: str) -> str:
        return self.placement.named_network(node) or f"rlv{self.owner[:8]}"

    # -- destroy: what relevo created, and nothing else ---------------------------------------------------
    def destroy(self) -> list[str]:
        """Remove every container, profile and network the state directory records as created by relevo,
        each on the daemon that holds it (containers first: a network in use cannot go). Profiles are
        those an earlier relevo made. Returns what was removed."""
        removed: list[str] = []
        recorded = self.created.load()
        for entry in recorded["instances"]:
            remote, name = split_record(entry)
            client = self.placement.client(remote)
            instance = self._instance(client, name)
            if instance is not None and instance.config.get(OWNER_KEY) == self.owner:
                if instance.status != "Stopped":
                    client.stop(name, force=True)
                client.delete_instance(name)
                removed.append(f"instance {entry}")
            self.created.remove("instances", entry)
        for kind in ("profiles", "networks"):
            for entry in recorded[kind]:
                remote, name = split_record(entry)
                client = self.placement.client(remote)
                delete = client.delete_profile if kind == "profiles" else client.delete_network
                # Recorded before it was made: LXD may have refused to make it. Only what went is said.
                if _unless_missing(functools.partial(delete, name)):
                    removed.append(f"{kind[:-1]} {entry}")
                self.created.remove(kind, entry)
        for socket in runtime_sockets(self.topology).values():
            socket.unlink(missing_ok=True)
        return removed

    # -- a new container ------------------------------------------------------------------------------
    @staticmethod
    def _instance(client: LXDClient, name: str) -> Instance | None:
        try:
            return client.instance(name)
        except LXDNotFoundError:
            return None

    def _create_instance(self, node: str, client: LXDClient, name: str) -> None:
        """A new container: created with its devices and limits, its NIC, files and units written while it
        is stopped, so that `up` starts it once, ready; its config is checked once it runs (`start`)."""
        image = str(self.settings.get("image", DEFAULT_ALIAS))
        if client.alias_target(image) is None:
            raise ProviderError(
                f"LXD has no image {image!r}: run `relevo image build` (or name one in providers.lxd.image)"
            )
        network = self.network_of_node(node)
        prefix = network_of(self.topology).prefixlen
        if self.placement.named_network(node) is None:
            home = self.placement.home
            with self._bridge_lock:
                ensure_bridge(client, self.created, qualified(home, network), network, self.topology)
        else:
            prefix = bridge_prefix(client, network, prefix)
        devices = base_devices(str(self.settings.get("storage_pool", "default")), network)
        config = {OWNER_KEY: self.owner, "user.relevo.node": node}
        if self.guest.is_balancer(node):
            devices |= balancer_proxies(self.topology, self.paths, node)
            if self.topology.pair is not None:
                devices[NIC] = balancer_nic(network)
        else:
            config |= cpu_limits(self.topology.node(node).capacity)
        self.created.add("instances", self.placement.record(node))  # recorded before it exists
        try:
            client.create_instance(
                name,
                image=image,
                profiles=[str(self.settings["profile"])] if "profile" in self.settings else [],
                devices=devices,
                config=config,
                target=self.placement.target_of(node),
            )
        except LXDConflictError as exc:
            raise ProviderError(f"LXD already has an instance named {name!r}: {exc.lxd_error}") from None
        interfaces = interfaces_file(self.node_address(node), prefix, NIC)
        client.push_file(name, f"/etc/network/interfaces.d/{NIC}", interfaces.encode())
        self.guest.prepare(node)
        self._unchecked.add(node)
        if self._cold_standby(node):
            self._first_start(node, client, name)

    def _cold_standby(self, node: str) -> bool:
        """A node `up` leaves stopped, whose first start would come in a failover."""
        return node in {n.name for n in self.topology.standbys} and (
            self.topology.standby.temperature is Temperature.COLD
        )

    def _first_start(self, node: str, client: LXDClient, name: str) -> None:
        """A cold standby started once at `create` (its config checked meanwhile) and stopped: LXD's first
        start of a new container does once-only work (on btrfs it shifts the files to the container's
        ids). Measured under load ~22: first start 8.2-11.6 s and the next 1.1-6.5 s on btrfs, 4.9-10.6 s
        and 1.3-4.9 s on `dir`; so the start a failover pays is never a first one."""
        client.start(name)
        self._check_config_once(node)
        client.stop(name, force=True)

    def _before_balancer_start(self, node: str) -> None:
        # The proxy device listens at the socket's path on the host: a file left from before blocks it.
        socket = runtime_sockets(self.topology)[node]
        ensure_dir(self.paths.held().haproxy_dir)
        ensure_dir(socket.parent)
        socket.unlink(missing_ok=True)

    def _after_stop(self, node: str) -> None:
        if self.guest.is_balancer(node):
            runtime_sockets(self.topology)[node].unlink(missing_ok=True)  # LXD leaves the proxy's socket


def cluster_tag(topology: Topology) -> str:
    """What marks LXD objects as this cluster's: its name and state directory, hashed."""
    text = f"{topology.name}\0{topology.state_dir.resolve()}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _unless_missing(action: Callable[[], None]) -> bool:
    """Runs `action`; False when LXD says what it acts on does not exist."""
    try:
        action()
    except LXDNotFoundError:
        return False
    return True

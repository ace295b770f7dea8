"""The `lxd` provider: every node is a system container from the base image, on a bridge relevo
creates (NAT, routing and firewall off, no uplink) or on a network the user names.

The same HAProxy and Apache services as the local provider render the files; they are pushed through
the API into Debian's places (HAProxy) and relevo's own (Apache, run by its own unit). From the host the
balancer is reached through proxy devices on loopback: its frontend, its stats page, and its Runtime API
socket mapped into the state directory, so RuntimeAPI and the controller are the same as locally.
Faults: crash = forced stop, hang = freeze, resume = unfreeze, stop = clean stop.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import ipaddress
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import PurePosixPath

from relevo.errors import ProviderError
from relevo.files import claim_state_dir, ensure_dir, read_or_empty
from relevo.lxd.build import DEFAULT_ALIAS
from relevo.lxd.client import Instance, LXDClient, proxy_device
from relevo.lxd.errors import LXDConflictError, LXDError, LXDNotFoundError
from relevo.lxd.network import isolated_bridge
from relevo.lxd.remotes import endpoint_for
from relevo.model import Endpoint, OptionValue, Topology
from relevo.paths import StatePaths
from relevo.providers.base import Fault, NodeState, OptionsSpec, Problem
from relevo.providers.host import install
from relevo.providers.lxd_host import HAPROXY_DROPIN, Created, LXDHost, apache_unit, interfaces_file
from relevo.render.haproxy import Binds, HAProxyLayout
from relevo.services import NodeFile
from relevo.services.apache import ApacheService, guest_layout
from relevo.services.haproxy import HAProxyService

STOP_TIMEOUT_S = 10.0
MAX_SOCKET_PATH = 100
APACHE_UNIT = "relevo-apache.service"
STATES = {
    "Running": NodeState.RUNNING,
    "Frozen": NodeState.PAUSED,
    "Freezing": NodeState.PAUSED,
    "Stopped": NodeState.STOPPED,
}
OWNER_KEY = "user.relevo.cluster"


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
        },
        node={"remote": str, "target": str},
    )

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.paths = StatePaths(topology.state_dir)
        self.settings = topology.provider_options("lxd")
        self.created = Created(self.paths)
        self.host = LXDHost(self._resolve)
        self._clients: dict[str, LXDClient] = {}
        self._config_changed: set[str] = set()
        self.owner = cluster_tag(topology)

    # -- the topology's rules for this provider --------------------------------------------------------
    @staticmethod
    def host_address(address: str) -> str:
        """Where the host reaches a container's listener through a proxy device: the container's
        address with 127 as its first byte (a loopback address unique to the bridge's subnet)."""
        parts = ipaddress.IPv4Address(address).packed
        return str(ipaddress.IPv4Address(bytes([127, *parts[1:]])))

    @staticmethod
    def check_topology(topology: Topology) -> list[Problem]:
        problems: list[Problem] = []
        balancer = topology.balancer
        names = [topology.name, *(n.name for n in topology.nodes if n.provider == "lxd")]
        if balancer.provider == "lxd":
            names.append(balancer.name)
            for where, endpoint in (("frontend", balancer.frontend), ("stats", balancer.stats)):
                if not ipaddress.ip_address(endpoint.address).is_loopback:
                    problems.append(
                        Problem(
                            "balancer",
                            f"balancer.{where}.address: the host reaches an LXD balancer through a proxy "
                            f"device on loopback (127.0.0.0/8), got {endpoint.address}",
                        )
                    )
        for name in names:
            if "_" in name:
                problems.append(
                    Problem(
                        "providers", f"{name!r}: LXD instance names take letters, digits and '-', not '_'"
                    )
                )
        addresses = [(balancer.name, balancer.address)] if balancer.provider == "lxd" else []
        addresses += [(n.name, n.address) for n in topology.nodes if n.provider == "lxd"]
        for name, address in addresses:
            ip = ipaddress.ip_address(address)
            if ip.version != 4 or ip.is_loopback:
                where = "balancer" if name == balancer.name else f"nodes.{name}"
                problems.append(
                    Problem(
                        where,
                        f"{where}.address: an LXD container needs an IPv4 address on its bridge, got "
                        f"{address}; set `network:` to a private subnet such as 10.213.0.0/24",
                    )
                )
        return problems

    # -- the Provider verbs --------------------------------------------------------------------------
    def create(self, node: str) -> None:
        claim_state_dir(self.paths.root)
        client, name = self._resolve(node)
        instance = self._instance(client, name)
        if instance is None:
            self._ensure_network(client)
            self._ensure_profile(client)
            self._create_instance(node, client, name)
            return
        if instance.config.get(OWNER_KEY) != self.owner:
            raise ProviderError(
                f"LXD already has an instance named {name!r} that this cluster did not create"
            )
        if self._install(node, check=instance.status == "Running"):
            self._config_changed.add(node)

    def start(self, node: str) -> None:
        client, name = self._resolve(node)
        state = self.status(node)
        if state is NodeState.RUNNING:
            if node in self._config_changed:
                self._reload(node)
            return
        if state is NodeState.MISSING:
            self.create(node)
        if node == self.topology.balancer.name:
            self._before_balancer_start()
            # The server states the controller saved (in the state directory) are read at start.
            saved = read_or_empty(self.paths.server_state)
            path = str(HAProxyLayout.in_guest().server_state)
            client.push_file(name, path, saved.encode(), mode=0o600)
        if state is NodeState.PAUSED:
            client.unfreeze(name)
            return
        client.start(name)
        self._config_changed.discard(node)

    def stop(self, node: str) -> None:
        client, name = self._resolve(node)
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
        client, name = self._resolve(node)
        if self._instance(client, name) is None:
            raise ProviderError(f"{node} has no container")
        if fault is Fault.CRASH:
            client.stop(name, force=True)
            self._after_stop(node)
        elif fault is Fault.HANG:
            client.freeze(name)
        elif fault is Fault.RESUME:
            client.unfreeze(name)
        else:
            self.stop(node)

    def status(self, node: str) -> NodeState:
        client, name = self._resolve(node)
        instance = self._instance(client, name)
        return NodeState.MISSING if instance is None else STATES.get(instance.status, NodeState.STOPPED)

    def statuses(self, nodes: Sequence[str]) -> Mapping[str, NodeState]:
        """Every node's state from one listing per daemon (the controller's tick)."""
        by_client: dict[int, tuple[LXDClient, dict[str, str]]] = {}
        for node in nodes:
            client, name = self._resolve(node)
            by_client.setdefault(id(client), (client, {}))[1][name] = node
        found: dict[str, NodeState] = {}
        for client, names in by_client.values():
            seen = {i.name: i.status for i in client.instances()}
            for name, node in names.items():
                status = seen.get(name)
                found[node] = NodeState.MISSING if status is None else STATES.get(status, NodeState.STOPPED)
        return found

    def address(self, node: str) -> Endpoint:
        if node == self.topology.balancer.name:
            return self.topology.balancer.frontend
        return self.topology.node(node).endpoint

    def host_listeners(self, node: str) -> list[tuple[str, Endpoint]]:
        """What listens on this host for the node: the balancer's proxy devices, nothing for a web node."""
        balancer = self.topology.balancer
        if node != balancer.name:
            return []
        return [(f"{node} frontend", balancer.frontend), (f"{node} stats", balancer.stats)]

    # -- destroy: what relevo created, and nothing else ---------------------------------------------------
    def destroy(self) -> list[str]:
        """Remove every container, profile and network the state directory records as created by relevo
        (containers first: a profile or network in use cannot go). Returns what was removed."""
        removed: list[str] = []
        recorded = self.created.load()
        client = self._client(None)
        for name in recorded["instances"]:
            target = self._client_holding(name)
            instance = self._instance(target, name)
            if instance is not None and instance.config.get(OWNER_KEY) == self.owner:
                if instance.status != "Stopped":
                    target.stop(name, force=True)
                target.delete_instance(name)
                removed.append(f"instance {name}")
            self.created.remove("instances", name)
        for name in recorded["profiles"]:
            _ignore_missing(functools.partial(client.delete_profile, name))
            self.created.remove("profiles", name)
            removed.append(f"profile {name}")
        for name in recorded["networks"]:
            _ignore_missing(functools.partial(client.delete_network, name))
            self.created.remove("networks", name)
            removed.append(f"network {name}")
        self.paths.runtime_socket.unlink(missing_ok=True)
        return removed

    # -- names and clients ---------------------------------------------------------------------------------
    def _resolve(self, node: str) -> tuple[LXDClient, str]:
        if node != self.topology.balancer.name and node not in self.topology.node_names:
            known = ", ".join(self.topology.node_names)
            raise ProviderError(f"no node named {node!r}; nodes: {known}")
        return self._client(self._remote_of(node)), self.container_name(node)

    def container_name(self, node: str) -> str:
        return f"{self.topology.name}-{node}"

    def client_of(self, node: str) -> LXDClient:
        """The client of the daemon that holds (or will hold) the node's container."""
        return self._resolve(node)[0]

    def _options(self, node: str) -> Mapping[str, OptionValue]:
        if node == self.topology.balancer.name:
            return self.topology.balancer.options
        return self.topology.node(node).options

    def _remote_of(self, node: str) -> str | None:
        """The node's own `remote`, else the provider's, else None (this host's daemon)."""
        remote = self._options(node).get("remote", self.settings.get("remote"))
        return remote if isinstance(remote, str) else None

    def _target_of(self, node: str) -> str | None:
        """The LXD cluster member the node is placed on, when the topology names one."""
        target = self._options(node).get("target")
        return target if isinstance(target, str) else None

    def _client(self, remote: str | None) -> LXDClient:
        key = remote or "local"
        if key not in self._clients:
            project = self.settings.get("project")
            self._clients[key] = LXDClient(
                endpoint_for(remote, project if isinstance(project, str) else None)
            )
        return self._clients[key]

    def _client_holding(self, name: str) -> LXDClient:
        for node in self.topology.node_names:
            if f"{self.topology.name}-{node}" == name:
                return self._resolve(node)[0]
        return self._client(None)

    @staticmethod
    def _instance(client: LXDClient, name: str) -> Instance | None:
        try:
            return client.instance(name)
        except LXDNotFoundError:
            return None

    # -- network, profile, instances --------------------------------------------------------------------
    @property
    def network_name(self) -> str:
        named = self.settings.get("network")
        return named if isinstance(named, str) else f"rlv{self.owner[:8]}"

    @property
    def profile_name(self) -> str:
        return f"relevo-{self.owner[:8]}"

    def _ensure_network(self, client: LXDClient) -> None:
        if "network" in self.settings:
            return  # the user's own network: used as it is, never changed or removed
        if any(n["name"] == self.network_name for n in client.networks()):
            return
        subnet = network_of(self.topology)
        gateway = next(subnet.hosts())
        self.created.add("networks", self.network_name)  # recorded before it exists
        client.create_network(
            self.network_name,
            isolated_bridge(ipaddress.IPv4Interface(f"{gateway}/{subnet.prefixlen}")),
            description=f"relevo cluster {self.topology.name} (no uplink)",
        )

    def _ensure_profile(self, client: LXDClient) -> None:
        if any(p["name"] == self.profile_name for p in client.profiles()):
            return
        pool = self.settings.get("storage_pool", "default")
        self.created.add("profiles", self.profile_name)
        client.create_profile(
            self.profile_name,
            devices={
                "root": {"type": "disk", "path": "/", "pool": str(pool)},
                "eth0": {"type": "nic", "nictype": "bridged", "parent": self.network_name, "name": "eth0"},
            },
            description=f"relevo cluster {self.topology.name}",
        )

    def _create_instance(self, node: str, client: LXDClient, name: str) -> None:
        """A new container: created, its NIC configured before the first start, started to install and
        check its service, then stopped (`up` starts what should run)."""
        image = str(self.settings.get("image", DEFAULT_ALIAS))
        if client.alias_target(image) is None:
            raise ProviderError(
                f"LXD has no image {image!r}: run `relevo image build` (or name one in providers.lxd.image)"
            )
        profiles = [str(self.settings["profile"])] if "profile" in self.settings else []
        devices = self._proxy_devices() if node == self.topology.balancer.name else {}
        self.created.add("instances", name)  # recorded before it exists
        try:
            client.create_instance(
                name,
                image=image,
                profiles=[*profiles, self.profile_name],
                devices=devices,
                config={OWNER_KEY: self.owner, "user.relevo.node": node},
                target=self._target_of(node),
            )
        except LXDConflictError as exc:
            raise ProviderError(f"LXD already has an instance named {name!r}: {exc.lxd_error}") from None
        address = self.node_address(node)
        prefix = network_of(self.topology).prefixlen
        client.push_file(name, "/etc/network/interfaces.d/eth0", interfaces_file(address, prefix).encode())
        if node == self.topology.balancer.name:
            self._before_balancer_start()
        client.start(name)
        try:
            self._install(node, check=True)
            self._enable_units(node)
        finally:
            client.stop(name, force=True)
            self._after_stop(node)

    def node_address(self, node: str) -> str:
        if node == self.topology.balancer.name:
            return self.topology.balancer.address
        return self.topology.node(node).address

    def _proxy_devices(self) -> dict[str, dict[str, str]]:
        balancer = self.topology.balancer
        if len(str(self.paths.runtime_socket)) > MAX_SOCKET_PATH:
            raise ProviderError(
                f"the state directory's path is too long for HAProxy's Runtime API socket "
                f"({self.paths.runtime_socket}); move the topology file to a shorter path"
            )
        devices = {
            f"relevo-{what}": proxy_device(
                f"tcp:{endpoint.address}:{endpoint.port}", f"tcp:{balancer.address}:{endpoint.port}"
            )
            for what, endpoint in (("frontend", balancer.frontend), ("stats", balancer.stats))
        }
        devices["relevo-runtime"] = proxy_device(
            f"unix:{self.paths.runtime_socket}",
            f"unix:{HAProxyLayout.in_guest().runtime_socket}",
            mode="0600",
            uid=str(os.geteuid()),
            gid=str(os.getegid()),
        )
        return devices

    # -- services in the guest ---------------------------------------------------------------------------
    def _service(self, node: str) -> HAProxyService | ApacheService:
        if node == self.topology.balancer.name:
            return HAProxyService(self.topology, HAProxyLayout.in_guest())
        web = self.topology.node(node)
        return ApacheService(self.topology, web, guest_layout(web), run_as=("www-data", "www-data"))

    def _install(self, node: str, *, check: bool) -> bool:
        """Push the node's files; check the config (in the running guest) when it changed. A stopped
        guest gets the files only (its directories exist since `create`); its unit checks at start."""
        service = self._service(node)
        if isinstance(service, HAProxyService):
            files = service.files(self._guest_binds())
            files.append(
                NodeFile(PurePosixPath("/etc/systemd/system/haproxy.service.d/relevo.conf"), HAPROXY_DROPIN)
            )
        else:
            files = service.files()
            unit = apache_unit(node, service.foreground_argv(), service.graceful_argv())
            files.append(NodeFile(PurePosixPath(f"/etc/systemd/system/{APACHE_UNIT}"), unit))
        if not check:
            self.host.put_files(node, files)
            return False
        return install(self.host, node, service, files, what=f"{node}'s configuration was rejected")

    def _guest_binds(self) -> Binds:
        balancer = self.topology.balancer
        return Binds(
            frontend=Endpoint(address=balancer.address, port=balancer.frontend.port),
            stats=Endpoint(address=balancer.address, port=balancer.stats.port),
            servers={n.name: n.endpoint for n in self.topology.nodes},
        )

    def _enable_units(self, node: str) -> None:
        """One image, two roles: HAProxy only on the balancer, relevo's Apache only on web nodes. The
        links systemctl would make, made directly: effective from the next boot, with no wait on the
        guest's systemd (which may still be booting)."""
        wants = PurePosixPath("/etc/systemd/system/multi-user.target.wants")
        if node == self.topology.balancer.name:
            off, on = ["apache2.service"], PurePosixPath("/lib/systemd/system/haproxy.service")
        else:
            off, on = (
                ["apache2.service", "haproxy.service"],
                PurePosixPath(f"/etc/systemd/system/{APACHE_UNIT}"),
            )
        what = f"set {node}'s services"
        self.host.run(node, ["rm", "-f", *(str(wants / unit) for unit in off)], what=what)
        self.host.run(node, ["ln", "-sf", str(on), str(wants / on.name)], what=what)

    def _reload(self, node: str) -> None:
        unit = "haproxy.service" if node == self.topology.balancer.name else APACHE_UNIT
        self.host.run(node, ["systemctl", "reload", unit], what=f"reload {unit} in {node}")
        self._config_changed.discard(node)

    def _before_balancer_start(self) -> None:
        # The proxy device listens at the socket's path on the host: a file left from before blocks it.
        ensure_dir(self.paths.haproxy_dir)
        self.paths.runtime_socket.unlink(missing_ok=True)

    def _after_stop(self, node: str) -> None:
        if node == self.topology.balancer.name:
            self.paths.runtime_socket.unlink(missing_ok=True)  # LXD leaves the proxy's socket file


def cluster_tag(topology: Topology) -> str:
    """What marks LXD objects as this cluster's: its name and state directory, hashed."""
    text = f"{topology.name}\0{topology.state_dir.resolve()}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def network_of(topology: Topology) -> ipaddress.IPv4Network:
    """The bridge's subnet: the topology's `network:` (the seed's .2-.6 layout is handed out from it)."""
    return ipaddress.IPv4Network(topology.network, strict=False)


def _ignore_missing(action: Callable[[], None]) -> None:
    with contextlib.suppress(LXDNotFoundError):
        action()

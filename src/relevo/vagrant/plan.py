"""Which VM each node gets: its name, its address on the private network, its LXD bridge's subnet, its
memory (a balancer's more), and the settings every VM shares (box, CPUs, provider)."""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass

from relevo.errors import RelevoError
from relevo.model import Role, Topology

# The seed's private network: servidorHa1 .2, servidorweb1 .3, servidorweb2 .4, web1bck .5, web2bck .6.
DEFAULT_NETWORK = "192.168.100.0/24"
# Each VM's LXD bridge gets the next /24 of this network (the balancer's first): distinct subnets, so a
# web VM can route the balancer container's replies back through the balancer's VM (NAT is off).
DEFAULT_CONTAINER_NETWORK = "10.210.0.0/16"
DEFAULT_BOX = "debian/bookworm64"
DEFAULT_IMAGE_ALIAS = "relevo/bookworm"
# A balancer's VM runs more than a web node's: LXD and HAProxy's container, the controller, a pair's
# keepalived and its checker, and `relevo scenarios` there (the load generator and its report beside a
# second controller). At 768 MiB (706 visible) ha1 ran out during recover-web1 on 2026-12-07: 142 MiB
# available and falling a minute before it stopped answering ssh for 8 min, its vCPU at 100 % (no swap).
BALANCER_MEMORY_MIB = 1536


class ExportSettingsError(RelevoError):
    """An export option is wrong (exit status 2, nothing written)."""

    exit_status = 2


class VagrantProvider(enum.StrEnum):
    VIRTUALBOX = "virtualbox"  # as the seed ran it
    LIBVIRT = "libvirt"


@dataclass(frozen=True, slots=True, kw_only=True)
class VagrantSettings:
    provider: VagrantProvider = VagrantProvider.VIRTUALBOX
    box: str = DEFAULT_BOX
    memory_mib: int = 1024
    balancer_memory_mib: int = BALANCER_MEMORY_MIB  # a balancer's VM gets at least this
    cpus: int = 1
    network: str = DEFAULT_NETWORK
    container_network: str = DEFAULT_CONTAINER_NETWORK
    # Emulation, for hosts whose /dev/kvm cannot run a guest kernel; `kvm` and a host CPU model elsewhere.
    libvirt_driver: str = "qemu"
    cpu_model: str = "qemu64"
    image_alias: str = DEFAULT_IMAGE_ALIAS
    # libvirt only: vagrant-libvirt's management network (ssh, DHCP) made isolated at this subnet, and its
    # networks named `<prefix>-mgmt` and `<prefix>-private` (None: vagrant-libvirt's NAT default).
    management_network: str | None = None
    libvirt_network_prefix: str = "relevo"


@dataclass(frozen=True, slots=True, kw_only=True)
class VirtualMachine:
    """One node's VM. The VM, its hostname and its container are all named after the node."""

    node: str
    role: Role
    address: str  # on the private network: where the node's service is exposed
    port: int  # the node's port (the balancer's frontend), the same inside the container and on the VM
    bridge_address: str  # the VM's end of its LXD bridge (the container's gateway)
    container_address: str
    prefix: int  # of the bridge's subnet
    network: str  # the private network the VMs share
    memory_mib: int
    standby: bool = False

    @property
    def bridge_subnet(self) -> str:
        return str(ipaddress.ip_interface(f"{self.bridge_address}/{self.prefix}").network)


def plan_vms(topology: Topology, settings: VagrantSettings) -> tuple[VirtualMachine, ...]:
    """One VM per node, in the topology's order (the balancer first), addresses from .2 on; a pair's
    second balancer last (the seed's five keep their addresses: ha2 is .7)."""
    network = _ipv4_network(settings.network, "--network")
    containers = _ipv4_network(settings.container_network, "--container-network")
    if network.overlaps(containers):
        raise ExportSettingsError(f"--network {network} overlaps --container-network {containers}")
    if settings.management_network is not None:
        management = _ipv4_network(settings.management_network, "--management-network")
        for other, option in ((network, "--network"), (containers, "--container-network")):
            if management.overlaps(other):
                raise ExportSettingsError(f"--management-network {management} overlaps {option} {other}")
    names = [topology.balancer.name, *(n.name for n in topology.nodes)]
    if topology.pair is not None:
        names.append(topology.pair.peer.name)
    hosts = list(network.hosts())
    if len(hosts) < len(names) + 1:  # .1 is left to the host
        raise ExportSettingsError(f"--network {network} has too few addresses for {len(names)} VMs")
    if containers.prefixlen > 24 or 2 ** (24 - containers.prefixlen) < len(names):
        raise ExportSettingsError(
            f"--container-network {containers} has too few /24 subnets for {len(names)} VMs"
        )
    subnets = containers.subnets(new_prefix=24)
    vms = []
    for index, name in enumerate(names):
        subnet = next(subnets)
        gateway, container = list(subnet.hosts())[:2]
        memory = settings.memory_mib
        if topology.is_balancer(name):
            role, port, standby = Role.BALANCER, topology.balancer.frontend.port, False
            memory = max(memory, settings.balancer_memory_mib)
        else:
            node = topology.node(name)
            role, port, standby = node.role, node.port, node.role is Role.STANDBY
        vms.append(
            VirtualMachine(
                node=name,
                role=role,
                address=str(hosts[index + 1]),
                port=port,
                bridge_address=str(gateway),
                container_address=str(container),
                prefix=subnet.prefixlen,
                network=str(network),
                memory_mib=memory,
                standby=standby,
            )
        )
    return tuple(vms)


def balancer_vms(vms: tuple[VirtualMachine, ...]) -> tuple[VirtualMachine, ...]:
    """The balancers' VMs: the first balancer's, then a pair's second."""
    return tuple(vm for vm in vms if vm.role is Role.BALANCER)


def web_vms(vms: tuple[VirtualMachine, ...]) -> tuple[VirtualMachine, ...]:
    """The web nodes' VMs (primaries and standbys), which every balancer VM's controller drives through
    their LXD remotes."""
    return tuple(vm for vm in vms if vm.role is not Role.BALANCER)


def _ipv4_network(text: str, option: str) -> ipaddress.IPv4Network:
    try:
        network = ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise ExportSettingsError(
            f"{option} {text!r}: {exc} (expected an IPv4 network such as 10.0.0.0/24)"
        ) from None
    if not isinstance(network, ipaddress.IPv4Network):
        raise ExportSettingsError(f"{option} {text}: an IPv4 network is needed (Vagrant's private networks)")
    return network

"""What goes inside each VM's container: the same HAProxy and Apache services, layouts and units as the
LXD provider's containers (Debian's haproxy.service with relevo's drop-in on the balancer, relevo's own
Apache unit on a web node), rendered on the host; plus the container's static network interface."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import PurePosixPath

from relevo.model import Endpoint, Role, Topology
from relevo.providers.lxd_guest import APACHE_UNIT
from relevo.providers.lxd_host import HAPROXY_DROPIN, apache_unit, interfaces_file
from relevo.render.haproxy import GUEST_ACCOUNT, Binds, HAProxyLayout
from relevo.secrets import Secrets
from relevo.services import NodeFile
from relevo.services.apache import ApacheService, guest_layout
from relevo.services.haproxy import HAProxyService
from relevo.vagrant.pair import export_vip, vms_pair
from relevo.vagrant.plan import VirtualMachine, web_vms

# Not eth0: a container NIC named like the VM's took the VM's network down when the container stopped.
CONTAINER_NIC = "cnet0"
# The proxy devices connect here, inside the container.
LOOPBACK = "127.0.0.1"
APACHE_WORKERS = ("www-data", "www-data")
HAPROXY_LAYOUT = HAProxyLayout.in_guest()


@dataclass(frozen=True, slots=True)
class GuestService:
    """The node's service in its container: the unit to enable (the image's others disabled), the argv
    that checks its configuration, and the directories that check needs."""

    unit: str
    disable: tuple[str, ...]
    check: tuple[str, ...]
    directories: tuple[str, ...] = ()


def container_name(topology: Topology, node: str) -> str:
    """The LXD provider's name for the node's container, so its controller finds it on the VM."""
    return f"{topology.name}-{node}"


def guest_service(topology: Topology, vm: VirtualMachine) -> GuestService:
    service = _service(topology, vm)
    directories = tuple(str(d) for d in service.directories)
    if isinstance(service, HAProxyService):
        return GuestService("haproxy.service", ("apache2.service",), tuple(service.check_argv()), directories)
    return GuestService(
        APACHE_UNIT, ("apache2.service", "haproxy.service"), tuple(service.check_argv()), directories
    )


def guest_files(
    topology: Topology, vm: VirtualMachine, vms: tuple[VirtualMachine, ...], secrets: Secrets
) -> list[NodeFile]:
    """Every file the VM's container needs, in the order they are pushed."""
    nic = interfaces_file(vm.container_address, vm.prefix, CONTAINER_NIC)
    if vm.role is Role.BALANCER:
        # HAProxy reaches the web nodes on the other VMs through the VM's end of the bridge.
        nic += f"    gateway {vm.bridge_address}\n"
    files = [NodeFile(PurePosixPath(f"/etc/network/interfaces.d/{CONTAINER_NIC}"), nic)]
    service = _service(topology, vm)
    if isinstance(service, HAProxyService) and topology.pair is not None:
        # A pair's HAProxy answers keepalived's checker (/relevo-alive), as a pair with a VIP's does.
        vip = export_vip(topology, vms)
        assert vip is not None
        service = HAProxyService(vms_pair(topology, vms, vip), HAPROXY_LAYOUT, run_as=GUEST_ACCOUNT)
    if isinstance(service, HAProxyService):
        at_vm = {other.node: Endpoint(address=other.address, port=other.port) for other in web_vms(vms)}
        balancer = topology.balancer
        binds = Binds(
            frontend=Endpoint(address=LOOPBACK, port=balancer.frontend.port),
            stats=Endpoint(address=LOOPBACK, port=balancer.stats.port),
            servers=at_vm,
        )
        rendered = service.files(binds, secrets=secrets)
        # The server states are the controller's on the VM (read by HAProxy at start), not this host's.
        rendered = [f for f in rendered if f.path != HAPROXY_LAYOUT.server_state]
        dropin = PurePosixPath("/etc/systemd/system/haproxy.service.d/relevo.conf")
        return files + rendered + [NodeFile(dropin, HAPROXY_DROPIN)]
    unit = apache_unit(vm.node, service.foreground_argv(), service.graceful_argv())
    return files + service.files() + [NodeFile(PurePosixPath(f"/etc/systemd/system/{APACHE_UNIT}"), unit)]


def _service(topology: Topology, vm: VirtualMachine) -> HAProxyService | ApacheService:
    if vm.role is Role.BALANCER:
        return HAProxyService(topology, HAPROXY_LAYOUT, run_as=GUEST_ACCOUNT)
    # Apache listens on the container's loopback; the VM's proxy device connects there.
    node = dataclasses.replace(topology.node(vm.node), address=LOOPBACK)
    return ApacheService(topology, node, guest_layout(node), run_as=APACHE_WORKERS)

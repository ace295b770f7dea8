"""A pair of balancers exported to Vagrant (`balancer: {peer: ha2}`): the second balancer's VM beside the
first, the VIP on the VMs' private network, and keepalived on each balancer VM (Debian's package, as in
the LXD containers: the same keepalived.conf template and the same track_file checker of HAProxy).

Which controller acts: each balancer VM runs its own (its HAProxy, the web nodes through their VMs' LXD
remotes), and keepalived says which one runs. Its notify script writes the instance's state and starts
the controller's unit when it becomes MASTER, stops it on BACKUP, FAULT or STOP: the controller runs only
on the VM holding the VIP, and a controller started there converges from what it observes, as any
restarted controller does (controller/decide.py). The unit is enabled all the same (relevo on the VM
drives it through systemd; one started at boot stands by until its balancer is in charge).
`controller/acting.py` is the rule the controller itself checks each tick before it acts (the
hand-over's overlap, a split brain), fed by `controller/charge.py` from CHARGE_FILE, which the VM's
relevo wrapper names.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path, PurePosixPath

from relevo.controller.charge import ChargeSettings
from relevo.errors import TopologyError
from relevo.model import Topology
from relevo.providers.lxd_guest import CHECKER_UNIT_PATH, KEEPALIVED_DROPIN, checker_unit
from relevo.render.keepalived import KeepalivedLayout, render_checker, render_keepalived
from relevo.services import NodeFile
from relevo.vagrant.plan import VirtualMachine, balancer_vms

# Vagrant's first `private_network` is a VM's second NIC; both boxes boot with net.ifnames=0 (eth0 is the
# management network's). Provisioning checks that this NIC carries the VM's private address.
PRIVATE_NIC = "eth1"
# The VIP by default: the private network's .10 (the seed's VMs are .2-.6, ha2 .7).
VIP_HOST = 10
NOTIFY = PurePosixPath("/usr/local/sbin/relevo-vrrp-notify")
# Where the notify script leaves keepalived's last word (MASTER, BACKUP, FAULT, STOP) for the controller.
VRRP_STATE = PurePosixPath("/run/relevo/vrrp-state")
# What the controller looks at before each tick's actions (controller/charge.py), named by the VM's wrapper.
CHARGE_FILE = PurePosixPath("/var/lib/relevo-controller/vrrp-charge.json")
KEEPALIVED_DROPIN_PATH = PurePosixPath("/etc/systemd/system/keepalived.service.d/relevo.conf")
# The controller's unit allows AF_UNIX, AF_INET and AF_INET6 sockets and no capability
# (relevo-watch.service.j2). On a pair's VM its charge check reads the private NIC's addresses over netlink
# and probes the VIP with ARP on a packet socket (CAP_NET_RAW): without them every tick failed with errno
# 97 (EAFNOSUPPORT) and the controller stood by while keepalived said MASTER, so web1's death was never
# failed over (the six-VM vagrant tier, 2026-12-07 22:15). Lists merge with the unit's own.
CHARGE_DROPIN = """[Service]
# controller/charge.py: the NIC's addresses (netlink) and an ARP probe for the VIP (a packet socket).
RestrictAddressFamilies=AF_NETLINK AF_PACKET
CapabilityBoundingSet=CAP_NET_RAW
"""


def export_vip(topology: Topology, vms: tuple[VirtualMachine, ...]) -> str | None:
    """A pair's VIP on the VMs' private network (None: no pair): the topology's `vip:` where the file
    wrote one, else the network's .10. One outside that network, or a VM's own address, is an error at
    its line (exit 2), before anything is written."""
    pair = topology.pair
    if pair is None:
        return None
    network = ipaddress.ip_network(vms[0].network)
    taken = {vm.address: vm.node for vm in vms}
    if pair.vip_at is None:
        vip = str(network[VIP_HOST]) if network.num_addresses > VIP_HOST + 1 else None
        at, key = pair.peer_at, "balancer.peer"
        if vip is None or vip in taken:
            whose = f" is {taken[vip]}'s VM's address" if vip in taken else " does not exist"
            raise _error(
                topology,
                at,
                f"{key}: the pair's VIP on the VMs' network {network} (its .{VIP_HOST} by default){whose}; "
                f"set balancer.vip to a free address of {network}",
            )
        return vip
    assert pair.vip is not None
    vip_address = ipaddress.ip_address(pair.vip)
    if vip_address not in network or vip_address in (network.network_address, network.broadcast_address):
        raise _error(
            topology,
            pair.vip_at,
            f"balancer.vip: {pair.vip} is outside the VMs' private network {network} (--network); "
            f"expected a free host address of it, such as {network[VIP_HOST]}",
        )
    if pair.vip in taken:
        raise _error(
            topology,
            pair.vip_at,
            f"balancer.vip: {pair.vip} is {taken[pair.vip]}'s VM's address on {network}; the shared "
            "address must be one no VM has",
        )
    return pair.vip


def _error(topology: Topology, at: tuple[int, int] | None, message: str) -> TopologyError:
    line, column = at or (0, 0)
    return TopologyError(message, path=topology.source, line=line, column=column)


def vms_pair(topology: Topology, vms: tuple[VirtualMachine, ...], vip: str) -> Topology:
    """The pair as the VMs carry it: each balancer at its VM's address on the private network, the VIP
    there (what keepalived.conf is rendered from)."""
    assert topology.pair is not None
    first, second = balancer_vms(vms)
    pair = topology.pair
    peer = dataclasses.replace(pair.peer, address=second.address)
    return dataclasses.replace(
        topology,
        network=first.network,
        balancer=dataclasses.replace(topology.balancer, address=first.address),
        pair=dataclasses.replace(pair, peer=peer, vip=vip),
    )


def notify_script(watch_unit: str) -> str:
    return f"""#!/bin/sh
# relevo-vrrp-notify TYPE NAME STATE PRIORITY: keepalived's notify for the VIP's instance. It leaves the
# state for the controller ({VRRP_STATE}) and runs the controller only while this VM is MASTER: started on
# MASTER, stopped on BACKUP, FAULT or STOP. --no-block: keepalived never waits on systemd.
set -eu
state=$3
printf '%s\\n' "$state" >{VRRP_STATE}.new
mv -f {VRRP_STATE}.new {VRRP_STATE}
if [ "$state" = MASTER ]; then
    exec systemctl start --no-block {watch_unit}
fi
exec systemctl stop --no-block {watch_unit}
"""


def keepalived_vm_files(
    topology: Topology, vms: tuple[VirtualMachine, ...], own: VirtualMachine, watch_unit: str
) -> list[NodeFile]:
    """A pair's balancer VM: its keepalived.conf (unicast VRRP v3 to the other balancer VM, the VIP on
    the private NIC, nopreempt unless failback), the checker that feeds its track file from HAProxy's
    stats page (on the VM's loopback, the container's proxy device), their units, and the notify script."""
    vip = export_vip(topology, vms)
    assert vip is not None
    pair = vms_pair(topology, vms, vip)
    layout = KeepalivedLayout.in_guest()
    config = render_keepalived(pair, own.node, interface=PRIVATE_NIC, layout=layout, notify=NOTIFY)
    charge = ChargeSettings(
        vip=vip, nic=PRIVATE_NIC, state_file=Path(VRRP_STATE), first=own.node == topology.balancer.name
    )
    return [
        NodeFile(layout.config, config),
        NodeFile(layout.checker, render_checker(pair, layout), mode=0o755),
        NodeFile(CHECKER_UNIT_PATH, checker_unit(layout)),
        NodeFile(KEEPALIVED_DROPIN_PATH, KEEPALIVED_DROPIN),
        NodeFile(NOTIFY, notify_script(watch_unit), mode=0o755),
        NodeFile(CHARGE_FILE, charge.to_json()),
        NodeFile(PurePosixPath("/etc/systemd/system") / f"{watch_unit}.d" / "vrrp.conf", CHARGE_DROPIN),
    ]

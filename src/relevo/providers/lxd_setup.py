"""What a node's container is made with: its devices (root disk on the pool, NIC on the bridge or the
user's network, the balancer's proxy devices on loopback), its CPU limits, and the isolated bridge relevo
makes on the daemon that holds the balancer. Each object is recorded before LXD is asked for it."""

from __future__ import annotations

import ipaddress
import math
import os

from relevo import anchor
from relevo.errors import ProviderError
from relevo.lxd.client import LXDClient, proxy_device
from relevo.lxd.network import isolated_bridge
from relevo.model import Capacity, Topology
from relevo.paths import StatePaths
from relevo.providers.lxd_host import Created
from relevo.render import bind
from relevo.render.haproxy import HAProxyLayout, access_log_receiver
from relevo.services.haproxy import runtime_sockets

MAX_SOCKET_PATH = 100  # a unix socket's path must fit sun_path (108 bytes)
# The config key that marks an instance as one cluster's (its value: the cluster's owner tag).
OWNER_KEY = "user.relevo.cluster"
CPU_PERIOD_MS = 100  # the CFS period LXD's allowance is written against (the kernel's default)
NIC = "eth0"
ACCESS_LOG_DEVICE = "relevo-log"


def network_of(topology: Topology) -> ipaddress.IPv4Network:
    """The bridge's subnet: the topology's `network:` (the seed's .2-.6 layout is handed out from it)."""
    return ipaddress.IPv4Network(topology.network, strict=False)


def ensure_bridge(client: LXDClient, created: Created, record: str, name: str, topology: Topology) -> None:
    """relevo's bridge for the cluster on `client`'s daemon (NAT, routing, firewall, DHCP off; no
    uplink), made unless it exists; recorded as `record` before it is made."""
    if any(n["name"] == name for n in client.networks()):
        return
    subnet = network_of(topology)
    gateway = next(subnet.hosts())
    created.add("networks", record)
    client.create_network(
        name,
        isolated_bridge(ipaddress.IPv4Interface(f"{gateway}/{subnet.prefixlen}")),
        description=f"relevo cluster {topology.name} (no uplink)",
    )


def bridge_prefix(client: LXDClient, network: str, default: int) -> int:
    """The prefix length of a managed network's IPv4 subnet (a user's network may differ from
    `network:`), else `default`."""
    for found in client.networks():
        if found["name"] == network:
            address = (found.get("config") or {}).get("ipv4.address", "")
            try:
                return ipaddress.IPv4Interface(address).network.prefixlen
            except ValueError:
                return default
    raise ProviderError(
        f"LXD network {network!r} does not exist on {client.endpoint.name}: create it there, or name "
        "an existing one in the node's `options.network`"
    )


def base_devices(pool: str, network: str) -> dict[str, dict[str, str]]:
    """The root disk and the NIC, on the instance itself (no profile to create on each daemon)."""
    return {
        "root": {"type": "disk", "path": "/", "pool": pool},
        NIC: {"type": "nic", "nictype": "bridged", "parent": network, "name": NIC},
    }


def balancer_proxies(topology: Topology, paths: StatePaths, node: str) -> dict[str, dict[str, str]]:
    """A balancer's stats page (and, alone, its frontend) on their loopback addresses of this host,
    HAProxy's Runtime API socket mapped into the state directory (0600, this user's), and its request log
    carried to the dashboard's receiver. A pair's frontend
    is the VIP, reached through the bridge: no proxy device could follow it from one balancer to the
    other."""
    balancer = topology.balancer_named(node)
    # By its name: LXD, not a child of ours, resolves the path in its own process (see anchor).
    socket = anchor.real(runtime_sockets(topology)[node])
    if len(str(socket)) > MAX_SOCKET_PATH:
        raise ProviderError(
            f"the state directory's path is too long for HAProxy's Runtime API socket "
            f"({socket}); move the topology file to a shorter path"
        )
    listeners = [("stats", balancer.stats)]
    if topology.pair is None:
        listeners.insert(0, ("frontend", balancer.frontend))
    devices = {
        f"relevo-{what}": proxy_device(
            f"tcp:{endpoint.address}:{endpoint.port}", f"tcp:{balancer.address}:{endpoint.port}"
        )
        for what, endpoint in listeners
    }
    devices[ACCESS_LOG_DEVICE] = access_log_device(topology)
    devices["relevo-runtime"] = proxy_device(
        f"unix:{socket}",
        f"unix:{HAProxyLayout.in_guest().runtime_socket}",
        mode="0600",
        uid=str(os.geteuid()),
        gid=str(os.getegid()),
    )
    return devices


def access_log_device(topology: Topology) -> dict[str, str]:
    """HAProxy's request log, from the container's loopback to the dashboard's receiver on this host:
    UDP, since a proxy device carries unix sockets as streams only (forkproxy listens and dials "unix")
    and HAProxy logs to datagram sockets. Bound in the container, connected from the host."""
    return proxy_device(
        f"udp:{HAProxyLayout.in_guest().access_log}",
        f"udp:{bind(access_log_receiver(topology))}",
        bind="instance",
    )


def balancer_nic(network: str) -> dict[str, str]:
    """A pair's balancer NIC: LXD's IPv4 filtering would drop the VIP (ARP for an address the NIC was
    not given), so it is off, said explicitly (MEASURED.md: on, the new master's ARP never reached the
    host)."""
    return {
        "type": "nic",
        "nictype": "bridged",
        "parent": network,
        "name": NIC,
        "security.ipv4_filtering": "false",
    }


def cpu_limits(capacity: Capacity) -> dict[str, str]:
    """`capacity.cpu` (cores) as LXD limits: `limits.cpu`, the CPUs the container may run on (whole,
    rounded up), and `limits.cpu.allowance`, a hard CFS quota per 100 ms period (0.08 core: 8ms/100ms;
    1 ms, the kernel's least, at the lowest). Nothing when the topology sets no quota."""
    if capacity.cpu is None:
        return {}
    quota_ms = max(1, round(capacity.cpu * CPU_PERIOD_MS))
    return {
        "limits.cpu": str(max(1, math.ceil(capacity.cpu))),
        "limits.cpu.allowance": f"{quota_ms}ms/{CPU_PERIOD_MS}ms",
    }

"""The bridges relevo makes for its containers: isolated (no NAT, no routing, no firewall rules, no IPv6),
so the containers reach nothing outside the bridge, and on a subnet no route of this host touches."""

from __future__ import annotations

import ipaddress
from pathlib import Path

# LXD 5.0 defaults would NAT the bridge to the host's uplink and turn on host forwarding; relevo's
# containers must reach nothing but each other and the host. The firewall keys are off because LXD
# here has neither iptables nor nft to write rules with (MEASURED.md).
SUBNET_POOL = ipaddress.IPv4Network("10.213.0.0/16")
ISOLATED = {
    "ipv4.nat": "false",
    "ipv4.routing": "false",
    "ipv4.firewall": "false",
    "ipv4.dhcp": "false",
    "ipv6.address": "none",
    "ipv6.firewall": "false",
}


def isolated_bridge(gateway: ipaddress.IPv4Interface) -> dict[str, str]:
    """The config of an LXD bridge whose host side is `gateway` (e.g. 10.213.7.1/24)."""
    return {"ipv4.address": str(gateway), **ISOLATED}


def host_routes(route_table: Path = Path("/proc/net/route")) -> list[tuple[ipaddress.IPv4Network, str]]:
    """The IPv4 networks this host routes, each with its interface (the default route left out)."""
    found = []
    for line in route_table.read_text().splitlines()[1:]:
        fields = line.split()
        destination, mask = (ipaddress.IPv4Address(bytes.fromhex(f)[::-1]) for f in (fields[1], fields[7]))
        network = ipaddress.IPv4Network(f"{destination}/{mask}", strict=False)
        if network.prefixlen > 0:
            found.append((network, fields[0]))
    return found


def host_networks(route_table: Path = Path("/proc/net/route")) -> list[ipaddress.IPv4Network]:
    """The IPv4 networks this host routes (the default route left out)."""
    return [network for network, _ in host_routes(route_table)]


def free_subnet(
    within: ipaddress.IPv4Network = SUBNET_POOL,
    *,
    prefix: int = 24,
    start: int = 0,
    taken: list[ipaddress.IPv4Network] | None = None,
) -> ipaddress.IPv4Network:
    """The first /`prefix` in `within` (from the `start`-th on, wrapping) that overlaps no host route."""
    taken = host_networks() if taken is None else taken
    candidates = list(within.subnets(new_prefix=prefix))
    for step in range(len(candidates)):
        candidate = candidates[(start + step) % len(candidates)]
        if not any(candidate.overlaps(n) for n in taken):
            return candidate
    raise ValueError(f"no free /{prefix} in {within}: every one overlaps a route of this host")

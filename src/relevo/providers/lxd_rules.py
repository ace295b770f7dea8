"""The topology's rules for the `lxd` provider, checked by the loader (each problem points at its line):
a balancer reached through proxy devices on loopback, IPv4 addresses on a bridge, names LXD accepts, and a
named network for every node on another daemon than the one holding relevo's bridge."""

from __future__ import annotations

import ipaddress

from relevo.model import Topology
from relevo.providers.base import Problem
from relevo.providers.lxd_placement import Placement


def host_address(address: str) -> str:
    """Where the host reaches a container's listener through a proxy device: the container's address
    with 127 as its first byte (a loopback address unique to the bridge's subnet)."""
    parts = ipaddress.IPv4Address(address).packed
    return str(ipaddress.IPv4Address(bytes([127, *parts[1:]])))


def check_topology(topology: Topology) -> list[Problem]:
    balancer = topology.balancer
    lxd_nodes = [n.name for n in topology.nodes if n.provider == "lxd"]
    if balancer.provider == "lxd":
        lxd_nodes[:0] = [b.name for b in topology.balancers]
    problems = _loopback_balancer(topology) + _names(topology, lxd_nodes)
    problems += _addresses(topology, lxd_nodes) + _networks_away(topology, lxd_nodes)
    return problems


def _where(topology: Topology, node: str) -> str:
    return "balancer" if topology.is_balancer(node) else f"nodes.{node}"


def _loopback_balancer(topology: Topology) -> list[Problem]:
    balancer = topology.balancer
    if balancer.provider != "lxd":
        return []
    if topology.pair is not None and topology.pair.vip is not None:
        # A pair's frontend is its VIP (reached through the bridge); each stats page has a proxy device.
        shared = balancer.frontend.address == topology.pair.vip
        problems = (
            []
            if shared
            else [
                Problem(
                    "balancer",
                    f"balancer.frontend.address: a pair on LXD serves its frontend at the VIP "
                    f"{topology.pair.vip}, got {balancer.frontend.address}; remove frontend.address",
                )
            ]
        )
        return problems + [
            Problem(
                "balancer",
                f"balancer.stats.address: the host reaches an LXD balancer's stats through a proxy "
                f"device on loopback (127.0.0.0/8), got {b.stats.address}",
            )
            for b in topology.balancers
            if not ipaddress.ip_address(b.stats.address).is_loopback
        ]
    return [
        Problem(
            "balancer",
            f"balancer.{where}.address: the host reaches an LXD balancer through a proxy device on "
            f"loopback (127.0.0.0/8), got {endpoint.address}",
        )
        for where, endpoint in (("frontend", balancer.frontend), ("stats", balancer.stats))
        if not ipaddress.ip_address(endpoint.address).is_loopback
    ]


def _names(topology: Topology, nodes: list[str]) -> list[Problem]:
    return [
        Problem("providers", f"{name!r}: LXD instance names take letters, digits and '-', not '_'")
        for name in [topology.name, *nodes]
        if "_" in name
    ]


def _addresses(topology: Topology, nodes: list[str]) -> list[Problem]:
    problems = []
    for node in nodes:
        address = (
            topology.balancer_named(node).address
            if topology.is_balancer(node)
            else topology.node(node).address
        )
        ip = ipaddress.ip_address(address)
        if ip.version != 4 or ip.is_loopback:
            where = _where(topology, node)
            problems.append(
                Problem(
                    where,
                    f"{where}.address: an LXD container needs an IPv4 address on its bridge, got "
                    f"{address}; set `network:` to a private subnet such as 10.213.0.0/24",
                )
            )
    return problems


def _networks_away(topology: Topology, nodes: list[str]) -> list[Problem]:
    """relevo makes its bridge only on the home daemon (the provider's `remote`, else this host's): a
    bridge with no uplink on another host would connect the node to nothing, so a node on another daemon
    must name a network there that reaches the balancer."""
    placement = Placement(topology)
    problems = []
    for node in nodes:
        if placement.away(node) and placement.named_network(node) is None:
            where = _where(topology, node)
            problems.append(
                Problem(
                    where,
                    f"{where}.options: a node on LXD remote {placement.remote_of(node)!r} needs "
                    f"`network: NAME`, an existing network there that reaches the balancer (relevo "
                    f"makes its isolated bridge only on {placement.home!r})",
                )
            )
    return problems

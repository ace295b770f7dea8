"""The LXD provider's own `relevo doctor` checks of a topology (`Doctoring`): the bridge's subnet overlaps no
route of this host, and on every daemon holding a node no other instance already has a node's container
name or address; a remote lxc does not know is named with the command that adds it. Only reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from relevo.errors import RelevoError
from relevo.lxd.client import Instance, LXDClient
from relevo.lxd.errors import LXDError
from relevo.lxd.network import free_subnet, host_routes
from relevo.model import OptionValue, Topology
from relevo.providers.base import Finding
from relevo.providers.lxd_placement import Placement
from relevo.providers.lxd_setup import OWNER_KEY, network_of


class LXDNodes(Protocol):
    """What these checks read of the LXD provider (declared here: lxd.py imports this module)."""

    topology: Topology
    settings: Mapping[str, OptionValue]
    placement: Placement
    owner: str

    @property
    def network_name(self) -> str: ...

    def container_name(self, node: str) -> str: ...

    def node_address(self, node: str) -> str: ...


def checks(provider: LXDNodes, nodes: list[str], where: str) -> list[Finding]:
    """The bridge's subnet, and the nodes' instance names and addresses on every daemon holding one."""
    found = [] if "network" in provider.settings else [subnet_check(provider, where)]
    by_daemon: dict[str, tuple[LXDClient, list[str]]] = {}
    unknown: set[str] = set()
    for node in nodes:
        remote = provider.placement.remote_of(node)
        if remote in unknown:
            continue
        if remote not in by_daemon:
            try:
                by_daemon[remote] = (provider.placement.client(remote), [])
            except LXDError:
                return found  # no local daemon: the LXD daemon check says why
            except RelevoError as exc:  # a remote lxc's configuration does not name
                fix = f"lxc remote add {remote} https://HOST:8443"
                found.append(Finding(name="LXD remote", ok=False, detail=str(exc), fix=fix))
                unknown.add(remote)
                continue
        by_daemon[remote][1].append(node)
    for client, held in by_daemon.values():
        try:
            instances = client.instances()
        except LXDError as exc:
            if client.endpoint.url:  # a remote: the local daemon's check does not cover it
                found.append(Finding(name="LXD remote", ok=False, detail=str(exc)))
            continue
        found += instance_checks(provider, held, instances, client.endpoint.name, where)
    return found


def subnet_check(provider: LXDNodes, where: str) -> Finding:
    subnet = network_of(provider.topology)
    clashes = [
        f"{network} (dev {device})"
        for network, device in host_routes()
        if network.overlaps(subnet) and device != provider.network_name
    ]
    if not clashes:
        detail = f"{subnet}: no other route overlaps it"
        return Finding(name="bridge subnet", ok=True, detail=detail)
    try:
        spare = str(free_subnet())
        fix = f"set `network: {spare}` in {where} (free on this host)"
    except ValueError:
        fix = f"set `network:` in {where} to a private subnet no route of this host overlaps"
    detail = f"{subnet} overlaps this host's route to {', '.join(clashes)}"
    return Finding(name="bridge subnet", ok=False, detail=detail, fix=fix)


def instance_checks(
    provider: LXDNodes, nodes: list[str], instances: list[Instance], daemon: str, where: str
) -> list[Finding]:
    """A node's container name must be free or this cluster's; its address held by no other instance."""
    ours = {provider.container_name(n): n for n in nodes}
    planned = {provider.node_address(n): n for n in nodes}
    taken: list[str] = []
    addresses: list[str] = []
    for instance in instances:
        mine = instance.config.get(OWNER_KEY) == provider.owner
        if instance.name in ours and not mine:
            taken.append(instance.name)
        if mine:
            continue
        for inet in (a for found in instance.addresses.values() for a in found):
            if inet in planned:
                addresses.append(f"{inet} ({planned[inet]}) by instance {instance.name}")
    checks = [
        Finding(
            name="LXD names",
            ok=not taken,
            detail=(
                f"{', '.join(taken)} on {daemon} already exist and are not this cluster's"
                if taken
                else f"{len(ours)} container names free or this cluster's on {daemon}"
            ),
            fix=f"lxc delete {' '.join(taken)}  (or set another `name:` in {where})" if taken else "",
        )
    ]
    if addresses:
        checks.append(
            Finding(
                name="LXD addresses",
                ok=False,
                detail=f"on {daemon}: {'; '.join(addresses)}",
                fix=f"set `network:` in {where} to a subnet no instance uses",
            )
        )
    else:
        detail = f"no other instance on {daemon} has a node's address"
        checks.append(Finding(name="LXD addresses", ok=True, detail=detail))
    return checks

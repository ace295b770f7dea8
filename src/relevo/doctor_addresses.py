"""`relevo doctor`'s checks of the topology's addresses and ports: each listener relevo would open on this
host can be bound now (else who holds it), and for LXD the bridge's subnet overlaps no route of this host
and no other instance already has a node's name or address. Each problem comes with the command or the
edit that fixes it. Only looks: it binds throw-away sockets and reads LXD's listings, nothing more.
"""

from __future__ import annotations

from collections.abc import Mapping

from relevo.cluster import Cluster
from relevo.doctor import Check
from relevo.errors import RelevoError
from relevo.lxd.client import Instance, LXDClient
from relevo.lxd.errors import LXDError
from relevo.lxd.network import free_subnet, host_routes
from relevo.model import Endpoint, Topology
from relevo.port_holders import holders
from relevo.preflight import bind_problem
from relevo.providers.base import NodeState
from relevo.providers.lxd import OWNER_KEY, LXDProvider, network_of

GROUP = "topology"  # counted whatever the provider: `relevo up` of this topology needs it


def topology_checks(topology: Topology) -> list[Check]:
    """Every check of the topology's addresses and ports."""
    where = str(topology.source) if topology.source else "the topology file"
    try:
        cluster = Cluster(topology)
    except RelevoError as exc:
        return [Check(name="state directory", ok=False, detail=str(exc).splitlines()[0], group=GROUP)]
    names = list(topology.node_names)  # the balancer first
    try:
        states: Mapping[str, NodeState] = cluster.statuses(names)
    except RelevoError:
        states = {}  # e.g. LXD unreachable (its own check says so): every port is probed
    checks = [
        _listener_check(label, endpoint, states.get(node), node, where)
        for node in names
        for label, endpoint in cluster.host_listeners(node)
    ]
    lxd_nodes = [n for n in names if cluster.provider_for(n).name == "lxd"]
    if lxd_nodes:
        provider = cluster.provider_for(lxd_nodes[0])
        assert isinstance(provider, LXDProvider)
        checks += lxd_checks(provider, lxd_nodes, where)
    return checks


def _listener_check(label: str, endpoint: Endpoint, state: NodeState | None, node: str, where: str) -> Check:
    address = f"{endpoint.address}:{endpoint.port}"
    if state in (NodeState.RUNNING, NodeState.PAUSED):
        return Check(name=label, ok=True, detail=f"{address} held by this cluster's {node}", group=GROUP)
    problem = bind_problem(endpoint)
    if problem is None:
        return Check(name=label, ok=True, detail=f"{address} free", group=GROUP)
    change = f"give {label} another address or port in {where}"
    found = holders(endpoint.address, endpoint.port) if "in use" in problem else []
    fix = f"kill {found[0].pid}, or {change}" if found else change
    return Check(name=label, ok=False, detail=f"{address} {problem}", fix=fix, group=GROUP)


def lxd_checks(provider: LXDProvider, nodes: list[str], where: str) -> list[Check]:
    """The bridge's subnet, and the nodes' instance names and addresses on every daemon holding one."""
    checks = [] if "network" in provider.settings else [_subnet_check(provider, where)]
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
                return checks  # no local daemon: the LXD daemon check says why
            except RelevoError as exc:  # a remote lxc's configuration does not name
                fix = f"lxc remote add {remote} https://HOST:8443"
                checks.append(Check(name="LXD remote", ok=False, detail=str(exc), fix=fix, group=GROUP))
                unknown.add(remote)
                continue
        by_daemon[remote][1].append(node)
    for client, held in by_daemon.values():
        try:
            instances = client.instances()
        except LXDError as exc:
            if client.endpoint.url:  # a remote: the local daemon's check does not cover it
                checks.append(Check(name="LXD remote", ok=False, detail=str(exc), group=GROUP))
            continue
        checks += _instance_checks(provider, held, instances, client.endpoint.name, where)
    return checks


def _subnet_check(provider: LXDProvider, where: str) -> Check:
    subnet = network_of(provider.topology)
    clashes = [
        f"{network} (dev {device})"
        for network, device in host_routes()
        if network.overlaps(subnet) and device != provider.network_name
    ]
    if not clashes:
        detail = f"{subnet}: no other route overlaps it"
        return Check(name="bridge subnet", ok=True, detail=detail, group=GROUP)
    try:
        spare = str(free_subnet())
        fix = f"set `network: {spare}` in {where} (free on this host)"
    except ValueError:
        fix = f"set `network:` in {where} to a private subnet no route of this host overlaps"
    detail = f"{subnet} overlaps this host's route to {', '.join(clashes)}"
    return Check(name="bridge subnet", ok=False, detail=detail, fix=fix, group=GROUP)


def _instance_checks(
    provider: LXDProvider, nodes: list[str], instances: list[Instance], daemon: str, where: str
) -> list[Check]:
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
        Check(
            name="LXD names",
            ok=not taken,
            detail=(
                f"{', '.join(taken)} on {daemon} already exist and are not this cluster's"
                if taken
                else f"{len(ours)} container names free or this cluster's on {daemon}"
            ),
            fix=f"lxc delete {' '.join(taken)}  (or set another `name:` in {where})" if taken else "",
            group=GROUP,
        )
    ]
    if addresses:
        checks.append(
            Check(
                name="LXD addresses",
                ok=False,
                detail=f"on {daemon}: {'; '.join(addresses)}",
                fix=f"set `network:` in {where} to a subnet no instance uses",
                group=GROUP,
            )
        )
    else:
        detail = f"no other instance on {daemon} has a node's address"
        checks.append(Check(name="LXD addresses", ok=True, detail=detail, group=GROUP))
    return checks

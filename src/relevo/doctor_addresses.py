"""`relevo doctor`'s checks of the topology's addresses and ports: each listener relevo would open on this
host can be bound now (else who holds it), and each provider's own checks of its nodes (it says which:
`providers.base.Doctoring`; LXD's bridge subnet, container names and addresses). Each problem comes with
the command or the edit that fixes it. Only looks: it binds throw-away sockets and asks the providers,
which only read.
"""

from __future__ import annotations

from collections.abc import Mapping

from relevo.cluster import Cluster
from relevo.doctor import Check
from relevo.errors import RelevoError
from relevo.model import Endpoint, Topology
from relevo.port_holders import holders
from relevo.preflight import bind_problem
from relevo.providers.base import Doctoring, NodeState, Provider

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
    # Each provider once, with its nodes, asked for its own checks (if it has any).
    by_provider: dict[int, tuple[Provider, list[str]]] = {}
    for node in names:
        provider = cluster.provider_for(node)
        by_provider.setdefault(id(provider), (provider, []))[1].append(node)
    for provider, nodes in by_provider.values():
        if isinstance(provider, Doctoring):
            checks += [
                Check(name=f.name, ok=f.ok, detail=f.detail, fix=f.fix, group=GROUP)
                for f in provider.doctor_checks(nodes, where)
            ]
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

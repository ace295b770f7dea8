"""Putting the cluster as a scenario wants it before the load starts, whatever the last one left.

The controller is stopped first, so that nothing heals while the nodes are being set, and it forgets
the admin states it had set (the next one starts from the configured ones). Then every hung node is
resumed, nodes are started or stopped to match, HAProxy is started if it died, each server's
admin state is set (primaries in service, standbys in MAINT unless the scenario puts them in rotation),
all under the cluster lock, until HAProxy sees every running server in rotation UP; then the controller
is started again when the scenario wants it.
"""

from __future__ import annotations

from relevo import lifecycle
from relevo.cluster import Cluster
from relevo.controller import daemon
from relevo.errors import ProviderError, RelevoError
from relevo.haproxy.runtime import AdminState
from relevo.lock import cluster_lock
from relevo.model import Temperature, Topology
from relevo.polling import wait_until
from relevo.providers.base import Fault, NodeState
from relevo.scenarios.model import Setup

# Its first tick after a start: well under a second here, seconds on an emulated VM.
CONTROLLER_READY_S = 30.0


def desired_running(topology: Topology, setup: Setup) -> set[str]:
    if setup.running is not None:
        return set(setup.running)
    running = {n.name for n in topology.primaries}
    if topology.standby.temperature in (Temperature.WARM, Temperature.FROZEN):
        running |= {n.name for n in topology.standbys}
    return running


def prepare(cluster: Cluster, setup: Setup) -> None:
    topology = cluster.topology
    daemon.stop_background(topology)
    # Under the cluster lock, as `relevo up`, `start` and `stop` are: none of them interleaves with this.
    with cluster_lock(cluster.paths, what="relevo scenarios (setting the cluster up for a scenario)"):
        _set_nodes(cluster, setup)
    if setup.controller:
        daemon.start_background(topology)
        _wait_ticking(topology)


def _set_nodes(cluster: Cluster, setup: Setup) -> None:
    topology = cluster.topology
    running = desired_running(topology, setup)
    for node in topology.nodes:
        state = cluster.status(node.name)
        if state in (NodeState.RUNNING, NodeState.PAUSED):
            # A hang may have stopped only some processes (Apache's workers): resume the whole group.
            cluster.fault(node.name, Fault.RESUME)
        if node.name not in running and state in (NodeState.RUNNING, NodeState.PAUSED):
            cluster.stop(node.name)
    for name in topology.node_names:
        cluster.create(name)  # idempotent: configs rendered and checked once more
    for balancer in (b.name for b in topology.balancers):  # a pair's two
        if cluster.status(balancer) is NodeState.PAUSED:
            cluster.fault(balancer, Fault.RESUME)
        cluster.start(balancer)
    for node in topology.nodes:
        if node.name in running:
            cluster.start(node.name)
    # Primaries are in rotation even when stopped (HAProxy sees them DOWN: the seed's "no servers" run).
    in_rotation = {n.name for n in topology.primaries} | set(setup.in_rotation)
    _admin_states(cluster, in_rotation)
    # The controller remembers which admin states it set and takes any other for an operator's planned
    # maintenance. These were set for the scenario, not by a person: its next start begins afresh.
    daemon.forget_owned_states(topology)
    _wait_up(cluster, sorted(in_rotation & running))
    # What a restarted HAProxy reads back: these states, not a dump the last scenario left mid-failover.
    cluster.save_server_state()


def _admin_states(cluster: Cluster, in_rotation: set[str]) -> None:
    backend = cluster.topology.balancer.BACKEND
    error: list[RelevoError] = []

    def set_all() -> bool:
        try:
            for node in cluster.topology.nodes:
                wanted = AdminState.READY if node.name in in_rotation else AdminState.MAINT
                cluster.runtime.set_state(backend, node.name, wanted)
        except RelevoError as exc:
            # HAProxy just (re)started: its Runtime API socket may not answer for a moment.
            error[:] = [exc]
            return False
        return True

    if not wait_until(set_all, lifecycle.UP_TIMEOUT_S, 0.05):
        raise error[0]


def _wait_up(cluster: Cluster, servers: list[str]) -> None:
    """Until HAProxy sees each of `servers` UP (its own checks: `rise` of them after a start)."""
    seen: dict[str, str] = {}

    def all_up() -> bool:
        nonlocal seen
        seen = {name: stat.health for name, stat in cluster.haproxy_servers().items()}
        return all(seen.get(name) == "UP" for name in servers)

    if not wait_until(all_up, lifecycle.UP_TIMEOUT_S, 0.05):
        late = ", ".join(f"{n} is {seen.get(n, 'unknown')}" for n in servers if seen.get(n) != "UP")
        raise ProviderError(f"HAProxy did not see every server of the scenario UP: {late}")


def _wait_ticking(topology: Topology) -> None:
    if not wait_until(lambda: daemon.controller_status(topology).get("ticking"), CONTROLLER_READY_S, 0.05):
        raise ProviderError("the failover controller did not start ticking")

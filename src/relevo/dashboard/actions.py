"""What the page's buttons do, through the same code as the CLI: `relevo kill` (the provider's faults),
`relevo start`/`stop` (the lifecycle's lock, a primary drained first), and HAProxy's admin states as a
person sets them on the stats page (the controller journals them as an operator's change).
"""

from __future__ import annotations

from relevo.cluster import Cluster
from relevo.errors import RelevoError
from relevo.haproxy.runtime import AdminState
from relevo.lock import cluster_lock
from relevo.model import Topology
from relevo.providers.base import Fault

# The buttons, in the order the page shows them.
ACTIONS = ("kill", "hang", "resume", "start", "stop", "drain", "maintenance", "ready")
FAULTS = {"kill": Fault.CRASH, "hang": Fault.HANG, "resume": Fault.RESUME}
ADMIN = {"drain": AdminState.DRAIN, "maintenance": AdminState.MAINT, "ready": AdminState.READY}


class ActionError(RelevoError):
    pass


def check(topology: Topology, node: str, action: str) -> None:
    """Refuse an unknown node or action, or an admin state for the balancer (it is no server)."""
    if node not in topology.node_names:
        raise ActionError(f"no node {node!r}; nodes: {', '.join(topology.node_names)}")
    if action not in ACTIONS:
        raise ActionError(f"no action {action!r}; actions: {', '.join(ACTIONS)}")
    if action in ADMIN and node == topology.balancer.name:
        raise ActionError(f"{action} is a state of a server in HAProxy; {node} is the balancer")


def perform(topology: Topology, node: str, action: str) -> str:
    """Do `action` to `node` as the CLI would; returns what was done, in words."""
    check(topology, node, action)
    cluster = Cluster(topology)
    if action in FAULTS:
        fault = FAULTS[action]
        why = cluster.cannot(node, fault)
        if why is not None:
            raise ActionError(f"{action} {node}: {why}")
        cluster.fault(node, fault)  # `relevo kill NODE --signal KILL|STOP|CONT`
        return f"{fault} of {node} done"
    if action == "start":
        from relevo.maintenance import start_node

        start_node(topology, node)
        return f"started {node}"
    if action == "stop":
        from relevo.maintenance import stop_node

        stop_node(topology, node)
        return f"stopped {node}"
    state = ADMIN[action]
    with cluster_lock(cluster.paths, what=f"relevo dashboard: {action} {node}"):
        cluster.runtime.set_state(topology.balancer.BACKEND, node, state)
    return f"set {node} to {state} in HAProxy"

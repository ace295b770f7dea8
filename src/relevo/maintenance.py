"""`relevo stop` and `relevo start` of a primary: planned maintenance that costs no request.

Stopping a primary that has a paired standby drains it first: it is set to DRAIN (a person's state, which
the controller respects: it puts the standby in service and leaves the primary alone), the standby must
serve, the primary's sessions must reach 0 (bounded by `controller.drain_timeout`), and only then is it
stopped. Without a running controller this module does the standby's part itself. Starting it again puts
it back in service (READY), which ends the maintenance: the controller then fails back as usual.
"""

from __future__ import annotations

from collections.abc import Callable

from relevo.cluster import Cluster
from relevo.controller import daemon
from relevo.controller.haproxy_view import parse_servers_state
from relevo.controller.probe import http_probe
from relevo.errors import RelevoError, RuntimeAPIError
from relevo.haproxy.runtime import AdminState, Health
from relevo.lifecycle import locked_start, locked_stop
from relevo.model import Role, StandbyMode, Topology
from relevo.polling import wait_until
from relevo.progress import Progress
from relevo.providers.base import NodeState

POLL_S = 0.05
# Beyond the standby's own start timeout: the controller needs a few ticks to notice and act.
TAKEOVER_SLACK_S = 5.0


def _quiet(_: str) -> None:
    pass


class MaintenanceError(RelevoError):
    pass


def _paired_standby(topology: Topology, node: str) -> str | None:
    if topology.standby.mode is not StandbyMode.PAIRED or node not in (n.name for n in topology.nodes):
        return None
    if topology.node(node).role is not Role.WEB:
        return None
    standby = topology.standby_of(node)
    return standby.name if standby else None


def _admin(cluster: Cluster) -> dict[str, tuple[AdminState, bool]]:
    return parse_servers_state(cluster.runtime.show_servers_state(), cluster.topology.balancer.BACKEND)


def _wait(condition: Callable[[], bool], timeout_s: float) -> bool:
    def holds() -> bool:
        try:
            return condition()
        except RuntimeAPIError:
            return False  # HAProxy busy for a moment: ask again

    return wait_until(holds, timeout_s, POLL_S)


def stop_node(topology: Topology, node: str, *, progress: Progress = _quiet) -> None:
    """Stop `node`; a running primary with a paired standby is drained and replaced first."""
    cluster = Cluster(topology)
    standby = _paired_standby(topology, node)
    if standby is None or cluster.status(node) is not NodeState.RUNNING:
        locked_stop(cluster, node)
        return
    backend = topology.balancer.BACKEND
    try:
        before = _admin(cluster)
    except RuntimeAPIError as exc:
        raise MaintenanceError(
            f"cannot drain {node}: HAProxy does not answer ({exc}); nothing stopped"
        ) from None
    progress(f"draining {node}: {standby} takes its place")
    cluster.runtime.set_state(backend, node, AdminState.DRAIN)
    try:
        _bring_in(topology, cluster, standby)
    except MaintenanceError:
        if before.get(node, (AdminState.READY, True))[0] is AdminState.READY:
            cluster.runtime.set_state(backend, node, AdminState.READY)
        raise
    progress(f"waiting for {node}'s sessions to end")
    timeout_s = topology.controller.drain_timeout_s
    if not _wait(lambda: cluster.runtime.servers(backend)[node].current_sessions == 0, timeout_s):
        progress(f"{node} still has sessions after {timeout_s:g} s: stopping it anyway")
    locked_stop(cluster, node)


def _bring_in(topology: Topology, cluster: Cluster, standby: str) -> None:
    """The standby in service: by the controller if one runs, else here."""
    backend = topology.balancer.BACKEND
    timeout_s = topology.controller.start_timeout_s + TAKEOVER_SLACK_S

    def serving() -> bool:
        admin, up = _admin(cluster)[standby]
        return admin is AdminState.READY and up

    if daemon.controller_status(topology)["ticking"]:
        if not _wait(serving, timeout_s):
            raise MaintenanceError(f"{standby} did not take over within {timeout_s:g} s; nothing stopped")
        return
    locked_start(cluster, standby)
    node = topology.node(standby)
    health = topology.health

    def answers() -> bool:
        result = http_probe(
            node.endpoint,
            path=health.path,
            expect_status=health.expect_status,
            timeout_s=topology.probe_timeout_s,
        )
        return result.ok

    if not _wait(answers, timeout_s):
        raise MaintenanceError(f"{standby} does not answer {timeout_s:g} s after its start; nothing stopped")
    cluster.runtime.set_state(backend, standby, AdminState.READY)
    cluster.runtime.set_health(backend, standby, Health.UP)


def start_node(topology: Topology, node: str, *, progress: Progress = _quiet) -> None:
    """Start `node`; a primary left in drain or maint (planned maintenance) is put back in service once it
    answers, which hands its traffic back (the controller drains the standby)."""
    cluster = Cluster(topology)
    locked_start(cluster, node)
    if _paired_standby(topology, node) is None:
        return
    try:
        admin = _admin(cluster).get(node, (AdminState.READY, True))[0]
    except RuntimeAPIError:
        return  # no HAProxy to put it back in: its own configuration decides when it starts
    if admin is AdminState.READY:
        return
    web = topology.node(node)
    health = topology.health

    def answers() -> bool:
        return http_probe(
            web.endpoint,
            path=health.path,
            expect_status=health.expect_status,
            timeout_s=topology.probe_timeout_s,
        ).ok

    if not _wait(answers, topology.controller.start_timeout_s):
        raise MaintenanceError(f"{node} started but does not answer; left in {admin}")
    progress(f"{node} answers: back in service")
    cluster.runtime.set_state(topology.balancer.BACKEND, node, AdminState.READY)

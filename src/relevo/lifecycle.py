"""Bringing a cluster up and down as one step each: all of it, or nothing left half-running."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from relevo.cluster import Cluster
from relevo.controller import daemon
from relevo.errors import ProviderError, RelevoError
from relevo.model import Temperature, Topology
from relevo.providers.base import NodeState

Progress = Callable[[str], None]
UP_TIMEOUT_S = 20.0


@dataclass(frozen=True, slots=True, kw_only=True)
class UpResult:
    frontend_url: str
    stats_url: str
    metrics_url: str
    secrets_file: str
    started: tuple[str, ...]  # what this call started (empty when everything already ran)
    controller_pid: int | None
    # Edits the running controller was given (reloaded, or restarted for changed nodes).
    controller_changes: tuple[str, ...] = ()


class BringUpError(RelevoError):
    pass


def _quiet(_: str) -> None:
    pass


def up(topology: Topology, *, progress: Progress = _quiet, controller: bool = True) -> UpResult:
    """Render and check every config, start the balancer and the primaries (standbys too when warm),
    wait until HAProxy sees the primaries UP, start the failover controller. Idempotent. On failure,
    stop what this call started and raise with the reason."""
    cluster = Cluster(topology)
    to_run = [n.name for n in topology.primaries]
    if topology.standby.temperature is Temperature.WARM:
        to_run += [n.name for n in topology.standbys]
    started: list[str] = []
    try:
        progress("rendering and checking configurations")
        for name in topology.node_names:
            cluster.create(name)
        for name in to_run:
            if cluster.status(name) is not NodeState.RUNNING:
                progress(f"starting {name}")
                started.append(name)
            cluster.start(name)
        balancer = topology.balancer.name
        if cluster.status(balancer) is not NodeState.RUNNING:
            # A fresh start: last run's server states (a primary left in maint) must not come back.
            cluster.paths.server_state.unlink(missing_ok=True)
            daemon.forget_owned_states(topology)
            progress(f"starting {balancer} (HAProxy)")
            started.append(balancer)
        cluster.start(balancer)
        progress("waiting for HAProxy to see the primaries UP")
        wait_for_up(cluster, [n.name for n in topology.primaries])
        changes: list[str] = []
        if controller:
            changes = daemon.apply_edits(topology)
        controller_pid = _start_controller(topology, progress) if controller else None
    except BaseException:
        for name in reversed(started):
            try:
                cluster.stop(name)
            except RelevoError as stop_error:
                progress(f"could not stop {name}: {stop_error}")
        raise
    stats = topology.balancer.stats.url
    return UpResult(
        frontend_url=topology.balancer.frontend.url + "/",
        stats_url=stats + "/stats",
        metrics_url=stats + "/metrics",
        secrets_file=str(cluster.paths.secrets),
        started=tuple(started),
        controller_pid=controller_pid,
        controller_changes=tuple(changes),
    )


def wait_for_up(cluster: Cluster, servers: list[str], timeout_s: float = UP_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    seen: dict[str, str] = {}
    while time.monotonic() < deadline:
        seen = {name: stat.health for name, stat in cluster.haproxy_servers().items()}
        if all(seen.get(name) == "UP" for name in servers):
            return
        time.sleep(0.05)
    not_up = ", ".join(f"{name} is {seen.get(name, 'unknown')}" for name in servers if seen.get(name) != "UP")
    raise BringUpError(f"HAProxy did not see every primary UP within {timeout_s:g}s: {not_up}")


def down(topology: Topology, *, progress: Progress = _quiet) -> list[str]:
    """Stop the controller, then every node relevo started (by PID). Removes no file. Returns what it
    stopped."""
    cluster = Cluster(topology)
    stopped: list[str] = []
    if daemon.stop_background(topology):
        stopped.append("controller")
    errors: list[str] = []
    # The balancer first: clients get its 503 page, not connection errors from half a cluster.
    for name in topology.node_names:
        if cluster.status(name) in (NodeState.RUNNING, NodeState.PAUSED):
            progress(f"stopping {name}")
            try:
                cluster.stop(name)
                stopped.append(name)
            except ProviderError as exc:
                errors.append(f"{name}: {exc}")
    if errors:
        raise RelevoError("could not stop everything:\n  " + "\n  ".join(errors))
    return stopped


def _start_controller(topology: Topology, progress: Progress) -> int:
    progress("starting the failover controller")
    return daemon.start_background(topology)

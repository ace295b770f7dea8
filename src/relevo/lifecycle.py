"""Bringing a cluster up and down as one step each: all of it, or nothing left half-running."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from relevo.cluster import Cluster
from relevo.controller import daemon
from relevo.errors import ProviderError, RelevoError
from relevo.files import tail
from relevo.lock import cluster_lock
from relevo.model import Endpoint, Temperature, Topology
from relevo.polling import wait_until
from relevo.preflight import check_listeners
from relevo.progress import Progress
from relevo.providers.base import NodeState

UP_TIMEOUT_S = 20.0
NOT_RUNNING = (NodeState.STOPPED, NodeState.MISSING)


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
    def __init__(self, message: str, *, exit_status: int = 1) -> None:
        super().__init__(message)
        self.exit_status = exit_status


def _quiet(_: str) -> None:
    pass


def up(
    topology: Topology,
    *,
    progress: Progress = _quiet,
    controller: bool = True,
    also_listening: Callable[[], Sequence[tuple[str, Endpoint]]] = tuple,
) -> UpResult:
    """Render and check every config, start the balancer and the primaries (standbys too when warm or frozen),
    start the failover controller, wait until every primary's place is served (by the primary, or by
    its standby after a failover). Idempotent, and it converges from whatever a crash left. On failure,
    stop what this call started and raise with the reason. Every address it will listen on (the nodes',
    the controller's metrics, and `also_listening()`: what the caller starts next, the dashboard) is
    checked before anything starts."""
    cluster = Cluster(topology)

    def ours() -> list[tuple[str, Endpoint]]:
        # Asked anew at each check: a concurrent `up` that held the lock first may have started the
        # controller and the dashboard meanwhile, and their ports are then ours, not someone else's.
        found = [*also_listening()]
        if controller and topology.controller.metrics_port and not daemon.controller_running(topology):
            metrics = Endpoint(address=topology.balancer.stats.address, port=topology.controller.metrics_port)
            found.append(("the controller's metrics (controller.metrics_port)", metrics))
        return found

    to_run = [n.name for n in topology.primaries]
    if topology.standby.temperature in (Temperature.WARM, Temperature.FROZEN):
        to_run += [n.name for n in topology.standbys]  # frozen ones: the controller freezes them once ready
    to_run += [b.name for b in topology.balancers]
    started: list[str] = []
    controller_started = False
    controller_pid: int | None = None
    if not topology.state_dir.exists():
        # A first `up`: nothing of ours can be listening yet, so whoever holds our addresses is someone
        # else. Refused here, before the lock or any record creates the state directory, a refusal
        # leaves nothing behind.
        check_listeners([*_listeners(cluster, to_run), *ours()])
    try:
        with cluster_lock(cluster.paths, what="relevo up") as held:
            cluster.adopt_orphans()  # a start cut short by a crash: its process gets its record now
            for healed in cluster.heal_all():  # a fault a relevo that died mid-span left behind
                progress(f"healed {healed}")
            _refuse_strays(cluster)
            progress("rendering and checking configurations")
            # Every node side by side: a container's creation is seconds of waiting on LXD, not of CPU
            # (the provider makes the bridge they join once, whichever comes first).
            for name in topology.node_names:
                cluster.provider_for(name)  # each provider made once, here, not by racing threads
            _each(cluster.create, list(topology.node_names))
            pending = [
                name for name in to_run if cluster.status(name) in (NodeState.STOPPED, NodeState.MISSING)
            ]
            check_listeners([*_listeners(cluster, pending), *ours()])

            def start(name: str) -> None:
                if name in pending:
                    balancers = [b.name for b in topology.balancers]
                    if name == balancers[0] and all(b in pending for b in balancers):
                        # A fresh start: last run's server states (a primary in maint) must not come back.
                        # (With a balancer of a pair still running, its states are the current ones.)
                        cluster.paths.held().server_state.unlink(missing_ok=True)
                        daemon.forget_owned_states(topology)
                    progress(f"starting {name}" + (" (HAProxy)" if topology.is_balancer(name) else ""))
                    started.append(name)
                held.check()  # the lock file replaced meanwhile: another writer may be acting
                cluster.start(name)

            # The web nodes side by side, then the balancers in order (HAProxy finds the web nodes up). In
            # order: a pair's first keepalived is MASTER before the second starts. Side by side (4-5 s
            # sooner), the second sometimes won the first election and lost the VIP to the first a
            # moment later: two masters resolve by priority, nopreempt notwithstanding (benchmarks/README).
            _each(start, [name for name in to_run if not topology.is_balancer(name)])
            for name in to_run:
                if topology.is_balancer(name):
                    start(name)
            changes: list[str] = []
            if controller:
                changes = daemon.apply_edits(topology)
                controller_started = not daemon.controller_running(topology)
                controller_pid = _start_controller(topology, progress)
        # Outside the lock: the controller may have to act (a primary left in maint) for this to pass.
        progress("waiting until every primary's place is served")
        wait_for_serving(cluster, topology)
        if controller and not daemon.controller_running(topology):
            raise BringUpError(
                f"the failover controller exited:\n{tail(cluster.paths.held().controller_log)}"
            )
    except BaseException:
        if controller_started:
            daemon.stop_background(topology)
        _stop_started(cluster, started, progress)
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


# How many nodes are created or started at once.
PARALLEL_NODES = 8


def _each(call: Callable[[str], None], names: list[str]) -> None:
    """`call` for each name, side by side; every call ends before this returns, and the first error (in
    the names' order) is raised."""
    if len(names) <= 1:
        for name in names:
            call(name)
        return
    with ThreadPoolExecutor(
        max_workers=min(PARALLEL_NODES, len(names)), thread_name_prefix="relevo-up"
    ) as pool:
        futures = [pool.submit(call, name) for name in names]
    for future in futures:
        future.result()


def _stop_started(cluster: Cluster, started: list[str], progress: Progress) -> None:
    if not started:
        return
    try:
        with cluster_lock(cluster.paths, what="relevo up (stopping what it started)"):
            for name in reversed(started):
                try:
                    cluster.stop(name)
                except RelevoError as stop_error:
                    progress(f"could not stop {name}: {stop_error}")
    except RelevoError as lock_error:
        progress(f"could not stop {', '.join(started)}: {lock_error}")


def _refuse_strays(cluster: Cluster) -> None:
    strays = cluster.strays()
    if strays:
        raise BringUpError(
            f"{', '.join(strays)} still run{'s' if len(strays) == 1 else ''} but "
            f"{'is' if len(strays) == 1 else 'are'} no longer in the topology; `relevo down` stops "
            "everything the state directory records, then `relevo up` starts the new layout",
            exit_status=2,
        )


def _listeners(cluster: Cluster, names: list[str]) -> list[tuple[str, Endpoint]]:
    return [listener for name in names for listener in cluster.host_listeners(name)]


def wait_for_serving(cluster: Cluster, topology: Topology, timeout_s: float = UP_TIMEOUT_S) -> None:
    """Wait until HAProxy sees, for every primary, it or its standby UP: after a failover a primary in
    maint with its standby serving is a cluster at full capacity."""
    standby_of = {n.standby_for: n.name for n in topology.standbys}
    seen: dict[str, str] = {}

    def served(primary: str) -> bool:
        return seen.get(primary) == "UP" or seen.get(standby_of.get(primary, ""), "") == "UP"

    def all_served() -> bool:
        nonlocal seen
        seen = {name: stat.health for name, stat in cluster.haproxy_servers().items()}
        return all(served(name) for name in primaries)

    primaries = [n.name for n in topology.primaries]
    if wait_until(all_served, timeout_s, 0.05):
        return
    not_up = ", ".join(f"{name} is {seen.get(name, 'unknown')}" for name in primaries if not served(name))
    raise BringUpError(
        f"HAProxy did not see every primary (or its standby) UP within {timeout_s:g}s: {not_up}"
    )


def down(topology: Topology, *, progress: Progress = _quiet) -> list[str]:
    """Stop the controller, then every node the state directory records (by PID), whether the topology
    still names it or not. Removes no file. Returns what it stopped."""
    cluster = Cluster(topology)
    stopped: list[str] = []
    errors: list[str] = []
    with cluster_lock(cluster.paths, what="relevo down"):
        if daemon.stop_background(topology):
            stopped.append("controller")
        try:
            stopped += [f"fault {healed}" for healed in cluster.heal_all()]
        except ProviderError as exc:
            errors.append(f"healing the faults: {exc}")
        cluster.adopt_orphans()
        # The balancer first: clients get its 503 page, not connection errors from half a cluster.
        for name in topology.node_names:
            if cluster.status(name) not in NOT_RUNNING or cluster.lingers(name):
                progress(f"stopping {name}")
                try:
                    cluster.stop(name)
                    stopped.append(name)
                except ProviderError as exc:
                    errors.append(f"{name}: {exc}")
        for name in cluster.strays():
            progress(f"stopping {name} (no longer in the topology)")
            try:
                cluster.stop_recorded(name)
                stopped.append(name)
            except ProviderError as exc:
                errors.append(f"{name}: {exc}")
    if errors:
        raise RelevoError("could not stop everything:\n  " + "\n  ".join(errors))
    return stopped


def destroy(topology: Topology, *, progress: Progress = _quiet) -> list[str]:
    """`down`, then remove what the providers created for this cluster (LXD containers, the bridge and
    profile relevo made), and nothing else. Returns what it stopped and removed."""
    stopped = down(topology, progress=progress)
    cluster = Cluster(topology)
    with cluster_lock(cluster.paths, what="relevo destroy"):
        progress("removing what relevo created")
        return stopped + cluster.destroy()


def locked_start(cluster: Cluster, node: str) -> None:
    """Start one node as `relevo start` does: under the cluster lock, its port checked first."""
    with cluster_lock(cluster.paths, what=f"relevo start {node}") as held:
        if cluster.status(node) in NOT_RUNNING:
            check_listeners(_listeners(cluster, [node]))
        held.check()
        cluster.start(node)


def locked_stop(cluster: Cluster, node: str) -> None:
    """Stop one node as `relevo stop` does: under the cluster lock."""
    with cluster_lock(cluster.paths, what=f"relevo stop {node}"):
        cluster.stop(node)


def _start_controller(topology: Topology, progress: Progress) -> int:
    progress("starting the failover controller")
    return daemon.start_background(topology)

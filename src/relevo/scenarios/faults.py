"""Faults, done to a running cluster: each `Action` mapped to what the provider, HAProxy's Runtime API or
the controller's daemon offers. Signals go only to processes relevo recorded (PID and start time)."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time

from relevo.cluster import Cluster
from relevo.controller import daemon
from relevo.errors import ProviderError
from relevo.haproxy.runtime import AdminState
from relevo.lock import cluster_lock
from relevo.procs import ProcessRecord, group_members, is_ours
from relevo.scenarios.model import Action, Fault


def fault_lock(cluster: Cluster, fault: Fault) -> contextlib.AbstractContextManager[object]:
    """The cluster lock for a fault done to a node or HAProxy (a concurrent `relevo up`, `start` or `stop`
    does not interleave with it); none for the controller's own, which the controller's lock guards."""
    if fault.action in (Action.KILL_CONTROLLER, Action.START_CONTROLLER):
        return contextlib.nullcontext()
    return cluster_lock(cluster.paths, what=f"relevo scenarios (fault {fault.label})")


class WorkerHangs:
    """Nodes whose Apache workers are held stopped. One SIGSTOP is not a lasting hang: Apache's parent
    counts the threads that were busy at that moment as not idle and starts new workers, which answer
    (the node heals itself, and a scenario expecting a failover saw none). A thread per node stops each
    new worker until the node is resumed, killed, stopped or started, or the run ends (`release_all`)."""

    POLL_S = 0.02

    def __init__(self, cluster: Cluster, *, max_s: float = 600.0) -> None:
        self.cluster, self.max_s = cluster, max_s
        self.keepers: dict[str, tuple[threading.Thread, threading.Event]] = {}

    def hold(self, node: str) -> None:
        """Stop the node's workers now (ProviderError when it has none) and keep them stopped."""
        self.release(node)
        record = _record(self.cluster, node)
        stopped = hang_workers(self.cluster, node)
        done = threading.Event()
        keeper = threading.Thread(
            target=self._keep, args=(record, stopped, done), name=f"hang-{node}", daemon=True
        )
        keeper.start()
        self.keepers[node] = (keeper, done)

    def release(self, node: str) -> None:
        keeper, done = self.keepers.pop(node, (None, None))
        if keeper is not None and done is not None:
            done.set()
            keeper.join(5)

    def release_all(self) -> None:
        for node in list(self.keepers):
            self.release(node)

    def _keep(self, record: ProcessRecord, stopped: set[int], done: threading.Event) -> None:
        deadline = time.monotonic() + self.max_s
        while not done.wait(self.POLL_S) and time.monotonic() < deadline:
            for pid in group_members(record.pgid):
                if pid != record.pid and pid not in stopped:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGSTOP)
                    stopped.add(pid)


def apply_fault(cluster: Cluster, fault: Fault, hangs: WorkerHangs) -> None:
    """Do `fault` now (the caller holds `fault_lock`). Raises ProviderError (or RuntimeAPIError) when it
    could not be done."""
    action, node = fault.action, fault.node
    if node is not None and action in (Action.RESUME, Action.KILL, Action.STOP, Action.START, Action.HANG):
        hangs.release(node)  # before its processes are resumed, replaced or all stopped
    if action is Action.KILL_CONTROLLER:
        kill_controller(cluster)
        return
    if action is Action.START_CONTROLLER:
        daemon.start_background(cluster.topology)
        return
    assert node is not None  # the loader and the catalogue give every other action a node
    backend = cluster.topology.balancer.BACKEND
    if action is Action.KILL:
        cluster.kill(node, signal.SIGKILL)
    elif action is Action.HANG:
        cluster.kill(node, signal.SIGSTOP)
    elif action is Action.RESUME:
        cluster.kill(node, signal.SIGCONT)
    elif action is Action.HANG_WORKERS:
        hangs.hold(node)
    elif action is Action.START:
        cluster.start(node)
    elif action is Action.STOP:
        cluster.stop(node)
    elif action is Action.MAINTENANCE:
        cluster.runtime.set_state(backend, node, AdminState.MAINT)
    elif action is Action.READY:
        cluster.runtime.set_state(backend, node, AdminState.READY)
    elif action is Action.RELOAD:
        reload_node(cluster, node)


def _record(cluster: Cluster, node: str) -> ProcessRecord:
    record = ProcessRecord.load(cluster.paths.pid_file(node))
    if record is None or not is_ours(record):
        raise ProviderError(f"{node} is not running")
    return record


def hang_workers(cluster: Cluster, node: str) -> set[int]:
    """SIGSTOP every process of the node but its leader: Apache's parent lives on (the node looks
    running), its workers, which accept and answer the connections, do nothing. Returns their pids."""
    record = _record(cluster, node)
    workers = {pid for pid in group_members(record.pgid) if pid != record.pid}
    if not workers:
        raise ProviderError(f"{node} has no worker processes to stop")
    for pid in workers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)
    return workers


def reload_node(cluster: Cluster, node: str) -> None:
    """The graceful reload each daemon offers: HAProxy's master starts new workers (SIGUSR2, server
    states saved first so health survives it), Apache restarts its children gracefully (SIGUSR1)."""
    record = _record(cluster, node)
    if node == cluster.topology.balancer.name:
        cluster.save_server_state()
        os.kill(record.pid, signal.SIGUSR2)
    else:
        os.kill(record.pid, signal.SIGUSR1)


def kill_controller(cluster: Cluster) -> None:
    """SIGKILL the cluster's controller (recorded by PID and start time), then collect it."""
    record = ProcessRecord.load(cluster.paths.controller_pid)
    if record is None or not is_ours(record):
        raise ProviderError("no failover controller is running")
    os.kill(record.pid, signal.SIGKILL)
    # Collects the exit status when we started it, and clears the record.
    daemon.stop_background(cluster.topology)

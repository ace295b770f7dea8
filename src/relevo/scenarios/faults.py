"""Faults, done to a running cluster: each `Action` mapped to what the provider, HAProxy's Runtime API or
the controller's daemon offers. Signals go only to processes relevo recorded (PID and start time)."""

from __future__ import annotations

import os
import signal

from relevo.cluster import Cluster
from relevo.controller import daemon
from relevo.errors import ProviderError
from relevo.haproxy.runtime import AdminState
from relevo.procs import ProcessRecord, group_members, is_ours
from relevo.scenarios.model import Action, Fault


def apply_fault(cluster: Cluster, fault: Fault) -> None:
    """Do `fault` now. Raises ProviderError (or RuntimeAPIError) when it could not be done."""
    action, node = fault.action, fault.node
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
        hang_workers(cluster, node)
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


def hang_workers(cluster: Cluster, node: str) -> None:
    """SIGSTOP every process of the node but its leader: Apache's parent lives on (the node looks
    running), its workers, which accept and answer the connections, do nothing."""
    record = _record(cluster, node)
    workers = [pid for pid in group_members(record.pgid) if pid != record.pid]
    if not workers:
        raise ProviderError(f"{node} has no worker processes to stop")
    for pid in workers:
        os.kill(pid, signal.SIGSTOP)


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

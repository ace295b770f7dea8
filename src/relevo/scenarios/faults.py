"""Faults, done to a running cluster: each scenario `Action` is a provider `Fault` (asked of the node's
provider, which maps it to its own means and says beforehand what it cannot do), a start or stop, an
admin state through HAProxy's Runtime API, or the controller's daemon killed or started."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterable
from pathlib import Path

from relevo.cluster import Cluster
from relevo.controller import daemon
from relevo.errors import ProviderError
from relevo.haproxy.runtime import AdminState
from relevo.lock import cluster_lock
from relevo.procs import ProcessRecord, is_ours
from relevo.providers.base import Fault
from relevo.scenarios.model import LASTING_ACTIONS, Action, FaultStep, Scenario

# The actions that are a provider's fault, and which.
PROVIDER_FAULTS = {
    Action.KILL: Fault.CRASH,
    Action.KILL_SERVICE: Fault.CRASH_SERVICE,
    Action.HANG: Fault.HANG,
    Action.RESUME: Fault.RESUME,
    Action.HANG_WORKERS: Fault.HANG_WORKERS,
    Action.RELOAD: Fault.RELOAD,
}


def fault_lock(cluster: Cluster, fault: FaultStep) -> contextlib.AbstractContextManager[object]:
    """The cluster lock for a fault done to a node or HAProxy (a concurrent `relevo up`, `start` or `stop`
    does not interleave with it); none for the controller's own, which the controller's lock guards."""
    if fault.action in (Action.KILL_CONTROLLER, Action.START_CONTROLLER):
        return contextlib.nullcontext()
    return cluster_lock(cluster.paths, what=f"relevo scenarios (fault {fault.label})")


def unsupported(cluster: Cluster, fault: FaultStep) -> str | None:
    """Why the node's provider cannot do `fault` here (the scenario is then skipped); None when it can."""
    node_fault = PROVIDER_FAULTS.get(fault.action) or LASTING_ACTIONS.get(fault.action)
    if node_fault is None or fault.node is None:
        return None
    reason = cluster.cannot(fault.node, node_fault)
    return f"{fault.label}: {reason}" if reason else None


def refuse_unsupported(cluster: Cluster, scenarios: Iterable[Scenario], source: Path) -> None:
    """A user's scenario file naming a fault the node's provider cannot do here is refused at that
    fault's line (exit status 2), before anything runs."""
    from relevo.scenarios.loader import ScenarioFileError

    for scenario in scenarios:
        for fault in scenario.faults:
            reason = unsupported(cluster, fault)
            if reason is not None:
                raise ScenarioFileError(
                    f"scenarios.{scenario.name}: {reason}", path=source, line=fault.line or 0, column=1
                )


def apply_fault(cluster: Cluster, fault: FaultStep) -> str | None:
    """Do `fault` now (the caller holds `fault_lock`); for a lasting fault, returns the means the provider
    used. Raises ProviderError (or RuntimeAPIError) when it could not be done."""
    action, node = fault.action, fault.node
    if action in LASTING_ACTIONS:
        assert node is not None and fault.amount is not None  # the loader and the catalogue give both
        return cluster.impair(node, fault.amount)
    if action is Action.KILL_CONTROLLER:
        kill_controller(cluster)
        return None
    if action is Action.START_CONTROLLER:
        daemon.start_background(cluster.topology)
        return None
    assert node is not None  # the loader and the catalogue give every other action a node
    backend = cluster.topology.balancer.BACKEND
    node_fault = PROVIDER_FAULTS.get(action)
    if node_fault is not None:
        cluster.fault(node, node_fault)
    elif action is Action.START:
        cluster.start(node)
    elif action is Action.STOP:
        cluster.stop(node)
    elif action is Action.MAINTENANCE:
        cluster.runtime.set_state(backend, node, AdminState.MAINT)
    elif action is Action.READY:
        cluster.runtime.set_state(backend, node, AdminState.READY)
    return None


def heal_fault(cluster: Cluster, fault: FaultStep) -> None:
    """End a spanned fault: a lasting one healed, a hang resumed (the caller holds `fault_lock`)."""
    assert fault.node is not None
    if fault.action in LASTING_ACTIONS:
        cluster.heal(fault.node)
    else:
        cluster.fault(fault.node, Fault.RESUME)


def kill_controller(cluster: Cluster) -> None:
    """SIGKILL the cluster's controller (recorded by PID and start time), then collect it."""
    record = ProcessRecord.load(cluster.paths.held().controller_pid)
    if record is None or not is_ours(record):
        raise ProviderError("no failover controller is running")
    os.kill(record.pid, signal.SIGKILL)
    # Collects the exit status when we started it, and clears the record.
    daemon.stop_background(cluster.topology)

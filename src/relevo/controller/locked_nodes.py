"""The provider verbs the controller's loop uses, each start and stop under the cluster lock."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence

from relevo.lock import HeldLock, cluster_lock
from relevo.paths import StatePaths
from relevo.providers.base import BulkNodes, Fault, NodeState


class LockedNodes:
    """The provider verbs the controller's loop uses, with each start and stop done under the cluster
    lock (the loop's `Nodes`): the controller never acts while `up`, `down`, `start` or `stop` does.
    A lock not had within ACTION_WAIT_S fails the action; the loop retries it after a backoff."""

    ACTION_WAIT_S = 5.0

    def __init__(self, nodes: BulkNodes, paths: StatePaths, *, cancelled: Callable[[], bool]) -> None:
        self.nodes = nodes
        self.paths = paths
        self.cancelled = cancelled

    def start(self, node: str) -> None:
        with self._lock(f"controller: start {node}"):
            self.nodes.start(node)

    def stop(self, node: str) -> None:
        with self._lock(f"controller: stop {node}"):
            self.nodes.stop(node)

    def fault(self, node: str, fault: Fault) -> None:
        self.nodes.fault(node, fault)  # a fault or the first half of a restart: no state to guard

    def status(self, node: str) -> NodeState:
        return self.nodes.status(node)

    def statuses(self, nodes: Sequence[str]) -> Mapping[str, NodeState]:
        return self.nodes.statuses(nodes)

    def _lock(self, what: str) -> contextlib.AbstractContextManager[HeldLock]:
        return cluster_lock(self.paths, what=what, wait_s=self.ACTION_WAIT_S, cancelled=self.cancelled)

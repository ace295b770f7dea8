"""The provider contract as one suite: every provider (the fake, local, lxd) runs these same tests
through a `Subject`, the tier's way of looking at its nodes from outside (an HTTP GET, a TCP connect,
the node's worker processes). Each fault must do what `providers.base.Fault` says it does."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import Protocol

import pytest

from relevo.errors import ProviderError
from relevo.model import Endpoint, Topology
from relevo.providers.base import LASTING, Fault, Impairment, NodeState
from tests.waiting import wait_until

# An answer slower than this is no answer (a hung node never answers; a healthy one in milliseconds).
ANSWER_S = 1.5


@dataclass
class Subject:
    """A provider's nodes as the suite sees them. `nodes` has the provider verbs (a provider, or a
    Cluster dispatching to one); `workers` names the node's worker processes (or threads) now."""

    nodes: object
    web: str
    balancer: str
    endpoint: Callable[[str], Endpoint]
    workers: Callable[[str], frozenset[Hashable]]
    # The CPU quota in force on the node (cores; None: none), and the bytes free where its files are:
    # how the tier reads what cpu-starve and disk-full did (None: the tier cannot look).
    cpu_quota: Callable[[str], float | None] | None = None
    free_bytes: Callable[[str], int] | None = None

    def fault(self, node: str, fault: Fault) -> None:
        self.nodes.fault(node, fault)  # type: ignore[attr-defined]

    def status(self, node: str) -> NodeState:
        state: NodeState = self.nodes.status(node)  # type: ignore[attr-defined]
        return state

    def cannot(self, node: str, fault: Fault) -> str | None:
        reason: str | None = self.nodes.cannot(node, fault)  # type: ignore[attr-defined]
        return reason

    def impair(self, node: str, impairment: Impairment) -> str:
        means: str = self.nodes.impair(node, impairment)  # type: ignore[attr-defined]
        return means

    def heal(self, node: str) -> None:
        self.nodes.heal(node)  # type: ignore[attr-defined]

    def start(self, node: str) -> None:
        self.nodes.start(node)  # type: ignore[attr-defined]

    def answers(self, node: str) -> bool:
        """A GET to the node itself gets a 200 within ANSWER_S."""
        endpoint = self.endpoint(node)
        connection = http.client.HTTPConnection(endpoint.address, endpoint.port, timeout=ANSWER_S)
        try:
            connection.request("GET", "/")
            response = connection.getresponse()
            response.read()
            return response.status == 200
        except OSError:
            return False
        finally:
            connection.close()

    def accepts(self, node: str) -> bool:
        """The node's port completes a TCP handshake (the kernel does, for a hung process too)."""
        endpoint = self.endpoint(node)
        try:
            with socket.create_connection((endpoint.address, endpoint.port), timeout=ANSWER_S):
                return True
        except OSError:
            return False


class Nodes(Protocol):
    """What cluster_subject drives: a Cluster (local, LXD) or the fake provider itself."""

    topology: Topology

    def status(self, node: str) -> NodeState: ...
    def fault(self, node: str, fault: Fault) -> None: ...
    def start(self, node: str) -> None: ...
    def address(self, node: str) -> Endpoint: ...


def cluster_subject(
    cluster: Nodes,
    workers: Callable[[str], frozenset[Hashable]],
    *,
    cpu_quota: Callable[[str], float | None] | None = None,
    free_bytes: Callable[[str], int] | None = None,
) -> Iterator[Subject]:
    """The subject of a cluster (the fake's, local or LXD), every node running and resumed before each
    test and resumed after it: the one fixture body every tier shares."""
    names = cluster.topology.node_names
    for node in names:
        if cluster.status(node) in (NodeState.RUNNING, NodeState.PAUSED):
            cluster.fault(node, Fault.RESUME)
        cluster.start(node)
    yield Subject(
        nodes=cluster,
        web="web1",
        balancer=cluster.topology.balancer.name,
        endpoint=cluster.address,
        workers=workers,
        cpu_quota=cpu_quota,
        free_bytes=free_bytes,
    )
    for node in names:
        if cluster.status(node) in (NodeState.RUNNING, NodeState.PAUSED):
            cluster.fault(node, Fault.RESUME)


class ProviderContract:
    """Subclassed once per tier with a `subject` fixture; the tests are the same for every provider."""

    def test_crash_leaves_nothing_answering_and_start_brings_it_back(self, subject: Subject) -> None:
        """crash: the node's processes are gone at once (not running, its port takes no connection); a
        start makes it answer again."""
        assert subject.answers(subject.web)
        subject.fault(subject.web, Fault.CRASH)
        assert subject.status(subject.web) in (NodeState.STOPPED, NodeState.MISSING)
        assert not subject.accepts(subject.web)
        subject.start(subject.web)
        wait_until(lambda: subject.answers(subject.web), f"{subject.web} answers after its start")

    def test_hang_accepts_but_never_answers_until_resumed(self, subject: Subject) -> None:
        """hang: the node is paused, still takes connections, answers nothing; resume: it answers."""
        subject.fault(subject.web, Fault.HANG)
        assert subject.status(subject.web) is NodeState.PAUSED
        assert subject.accepts(subject.web)
        assert not subject.answers(subject.web)
        subject.fault(subject.web, Fault.RESUME)
        assert subject.status(subject.web) is NodeState.RUNNING
        wait_until(lambda: subject.answers(subject.web), f"{subject.web} answers after its resume")

    def test_hang_workers_keeps_the_node_running_but_answering_nothing(self, subject: Subject) -> None:
        """hang-workers: the daemon's parent lives (running), its service accepts but does not answer
        (new workers included, however long it lasts); resume: it answers again."""
        subject.fault(subject.web, Fault.HANG_WORKERS)
        try:
            assert subject.status(subject.web) is NodeState.RUNNING
            assert subject.accepts(subject.web)
            assert not subject.answers(subject.web)
            assert not subject.answers(subject.web), "a second try was answered: the hang did not last"
        finally:
            subject.fault(subject.web, Fault.RESUME)
        wait_until(lambda: subject.answers(subject.web), f"{subject.web} answers after its resume")

    def test_reload_gives_new_workers_and_loses_no_request(self, subject: Subject) -> None:
        """reload: the daemon's graceful reload; the node has new workers afterwards and every request
        sent to it meanwhile is answered."""
        before = subject.workers(subject.web)
        assert before, f"{subject.web} shows no workers"
        failures: list[str] = []
        done = threading.Event()

        def load() -> None:
            for _ in range(2000):  # bounded in count, and ended by `done`
                if done.is_set():
                    return
                if not subject.answers(subject.web):
                    failures.append("no answer")

        sender = threading.Thread(target=load, daemon=True)
        sender.start()
        try:
            time.sleep(0.2)  # requests in flight when the reload comes
            subject.fault(subject.web, Fault.RELOAD)
            wait_until(lambda: subject.workers(subject.web) - before, f"{subject.web} has new workers")
            time.sleep(0.2)
        finally:
            done.set()
            sender.join(30)
        assert subject.status(subject.web) is NodeState.RUNNING
        assert not failures, f"{len(failures)} requests failed during the reload"

    def test_the_balancer_reloads_without_losing_its_frontend(self, subject: Subject) -> None:
        """reload of the balancer: still running, its frontend answers afterwards."""
        subject.fault(subject.balancer, Fault.RELOAD)
        assert subject.status(subject.balancer) is NodeState.RUNNING
        wait_until(lambda: subject.answers(subject.balancer), "the balancer's frontend answers")

    def test_stop_ends_the_node_cleanly(self, subject: Subject) -> None:
        """stop: the node ends (asked, not killed) and takes no more connections."""
        subject.fault(subject.web, Fault.STOP)
        assert subject.status(subject.web) in (NodeState.STOPPED, NodeState.MISSING)
        assert not subject.accepts(subject.web)

    def test_every_fault_is_either_done_or_refused_with_a_reason(self, subject: Subject) -> None:
        """Each fault of the vocabulary is supported, or `cannot` gives a sentence and `fault` refuses it
        with a ProviderError (never silently nothing); hang-workers on the balancer is refused."""
        assert subject.cannot(subject.balancer, Fault.HANG_WORKERS)
        for fault in Fault:
            reason = subject.cannot(subject.web, fault)
            if reason is None:
                continue
            assert len(reason) > 10, f"{fault}: {reason!r} says too little"
            if fault not in LASTING:
                with pytest.raises(ProviderError):
                    subject.fault(subject.web, fault)
        with pytest.raises(ProviderError):
            subject.fault(subject.balancer, Fault.HANG_WORKERS)

    def test_partition_cuts_the_node_off_while_it_keeps_running_until_healed(self, subject: Subject) -> None:
        """partition: nothing reaches the node (no answer), which still runs; healed, it answers."""
        reason = subject.cannot(subject.web, Fault.PARTITION)
        if reason is not None:
            pytest.skip(reason)
        subject.impair(subject.web, Impairment(fault=Fault.PARTITION))
        try:
            assert not subject.answers(subject.web)
            assert subject.status(subject.web) is NodeState.RUNNING
        finally:
            subject.heal(subject.web)
        wait_until(lambda: subject.answers(subject.web), f"{subject.web} answers after the heal")

    def test_delay_makes_every_answer_late_until_healed(self, subject: Subject) -> None:
        """delay: an answer takes at least the delay longer; healed, it no longer does."""
        reason = subject.cannot(subject.web, Fault.DELAY)
        if reason is not None:
            pytest.skip(reason)
        subject.impair(subject.web, Impairment(fault=Fault.DELAY, ms=1000))
        try:
            began = time.monotonic()
            assert subject.answers(subject.web)
            assert time.monotonic() - began >= 1.0  # a lower bound: a loaded machine only adds to it
        finally:
            subject.heal(subject.web)
        began = time.monotonic()
        assert subject.answers(subject.web)
        # Not a speed assertion: a delay of a whole second, so that a healed node's answer, however loaded
        # the machine, comes well before the delay would have let it (a 0.3 s delay left no such room).
        assert time.monotonic() - began < 1.0

    def test_cpu_starve_cuts_the_nodes_quota_while_it_keeps_serving_until_healed(
        self, subject: Subject
    ) -> None:
        """cpu-starve 10 %: the node runs under a quota of 0.1 core and still answers; healed, the quota
        it had before is back."""
        reason = subject.cannot(subject.web, Fault.CPU_STARVE)
        if reason is not None:
            pytest.skip(reason)
        assert subject.cpu_quota is not None, "a tier whose provider can starve a node reads its quota"
        before = subject.cpu_quota(subject.web)
        subject.impair(subject.web, Impairment(fault=Fault.CPU_STARVE, pct=10))
        try:
            assert subject.cpu_quota(subject.web) == pytest.approx(0.1)
            assert subject.status(subject.web) is NodeState.RUNNING
            wait_until(lambda: subject.answers(subject.web), f"{subject.web} answers while starved")
        finally:
            subject.heal(subject.web)
        assert subject.cpu_quota(subject.web) == before

    def test_disk_full_leaves_no_space_for_the_nodes_files_until_healed(self, subject: Subject) -> None:
        """disk-full: not a byte free where the node's files are, the node still serving; healed, the
        space is back."""
        reason = subject.cannot(subject.web, Fault.DISK_FULL)
        if reason is not None:
            pytest.skip(reason)
        assert subject.free_bytes is not None, "a tier whose provider can fill a disk reads its space"
        subject.impair(subject.web, Impairment(fault=Fault.DISK_FULL))
        try:
            assert subject.free_bytes(subject.web) == 0
            assert subject.answers(subject.web)
        finally:
            subject.heal(subject.web)
        assert subject.free_bytes(subject.web) > 0

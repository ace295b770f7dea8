"""The `local` provider: every node is real processes on this machine, on its own loopback address.

HAProxy runs in master-worker mode and Apache as one self-contained instance per node. Both daemonize
and lead their own process group, recorded by PID and start time, so a signal reaches all of a node's
processes (a crash, a hang) and never anything else. No root needed: all files live in the state
directory.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath

from relevo.anchor import DAEMON_ROOT
from relevo.commands import run
from relevo.errors import MissingToolError, ProviderError
from relevo.files import StateWriteError, claim_state_dir, ensure_dir, read_or_empty, tail
from relevo.model import Endpoint, Node, Topology
from relevo.paths import StatePaths
from relevo.pidwatch import PidWatch, pidfd_supported
from relevo.polling import wait_until
from relevo.procs import (
    ProcessRecord,
    group_members,
    group_paused,
    is_ours,
    signal_group,
    stop_group,
    wait_gone,
)
from relevo.providers.base import (
    LASTING,
    Fault,
    Impairment,
    NodeEvent,
    NodeState,
    OptionsSpec,
    Problem,
    Watch,
)
from relevo.providers.cpu_quota import CpuCgroups, CpuQuotaError
from relevo.providers.host import LocalHost, install
from relevo.providers.local_impair import LocalImpairments
from relevo.providers.records import APACHE, HAPROXY, ExpectedProcess, NodeRecords, lingering
from relevo.providers.reserve import ensure_reserve, is_full, nearly_full, release_reserve
from relevo.providers.tools import find_apache, find_haproxy
from relevo.providers.worker_hang import WorkerHangs
from relevo.render.haproxy import Binds, HAProxyLayout
from relevo.render.haproxy import worker_account as haproxy_worker_account
from relevo.services.apache import ApacheService
from relevo.services.haproxy import HAProxyService, runtime_sockets, save_server_state

LOG = logging.getLogger("relevo.local")
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
SIGNAL_EFFECT_S = 2.0
# A unix socket's path must fit in sockaddr_un (108 bytes on Linux, 104 on the BSDs).
MAX_SOCKET_PATH = 100


# The faults that are a signal to every process of the node's group.
FAULT_SIGNALS = {
    Fault.CRASH: signal.SIGKILL,
    Fault.CRASH_SERVICE: signal.SIGKILL,
    Fault.HANG: signal.SIGSTOP,
    Fault.RESUME: signal.SIGCONT,
    Fault.STOP: signal.SIGTERM,
}


class LocalProvider:
    name = "local"
    options = OptionsSpec(node={"threads_per_child": int})

    @staticmethod
    def check_topology(topology: Topology) -> list[Problem]:
        """Local nodes serve on this machine's loopback only: nothing reaches them from elsewhere."""
        problems: list[Problem] = []
        balancer = topology.balancer
        if balancer.provider == "local":
            for where, endpoint in (("frontend", balancer.frontend), ("stats", balancer.stats)):
                if not ipaddress.ip_address(endpoint.address).is_loopback:
                    problems.append(
                        Problem(
                            "balancer",
                            f"balancer.{where}.address: the local provider serves on loopback only "
                            f"(127.0.0.0/8 or ::1), got {endpoint.address}",
                        )
                    )
        for node in topology.nodes:
            if node.provider == "local" and not ipaddress.ip_address(node.address).is_loopback:
                problems.append(
                    Problem(
                        f"nodes.{node.name}",
                        f"nodes.{node.name}.address: the local provider serves on "
                        f"loopback only (127.0.0.0/8 or ::1), got {node.address}",
                    )
                )
        return problems

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.paths = StatePaths(topology.state_dir)
        self.records = NodeRecords(self.paths)
        self._config_changed: set[str] = set()
        self.worker_hangs = WorkerHangs()
        self.impairments = LocalImpairments(topology, self.paths)

    @property
    def fs(self) -> StatePaths:
        """Where this provider's files are, reached through the claimed state directory's descriptor:
        what it writes and what its daemons read cannot be swapped from under it (see anchor)."""
        return self.paths.held()

    # -- the Provider verbs --------------------------------------------------------------------------
    def create(self, node: str) -> None:
        claim_state_dir(self.paths.root)
        if self._write_config(node):
            self._config_changed.add(node)
        ensure_dir(self.fs.pid_file(node).parent)
        ensure_reserve(self.fs, node)  # room for its start on a full disk (reserve.py)

    def start(self, node: str) -> None:
        claim_state_dir(self.paths.root)
        self.worker_hangs.release(node)
        record = self._record(node)
        if record is not None and is_ours(record):
            if node in self._config_changed:
                self._reload(node, record)
            return
        if nearly_full(self.fs.root):
            self._use_reserve(node, "the disk is full")
        try:
            self._start(node)
        except StateWriteError as exc:
            if not is_full(exc) or not self._use_reserve(node, str(exc)):
                raise
            self._start(node)

    def _use_reserve(self, node: str, why: str) -> bool:
        if not release_reserve(self.fs, node):
            return False
        LOG.warning(
            "relevo: %s: %s starts on the space reserved for it (`relevo up` reserves it again once there "
            "is room); the journal and HAProxy's server states may not be written meanwhile",
            why,
            node,
        )
        return True

    def _start(self, node: str) -> None:
        # Rendered anew on every start: a config on disk is never trusted as it stands.
        self._write_config(node)
        self._config_changed.discard(node)
        expected = self._expected(node)
        expected.pid_file.unlink(missing_ok=True)
        self.records.intend(node, expected.kind)  # before anything runs: no process without a record
        if expected.kind == HAPROXY:
            self.run_daemon(node, expected)
            self._adopt(node, expected, log=None)
        else:
            web = self._web_node(node)
            cgroups = self._cpu_cgroups(web)  # a quota that cannot be applied is refused before the start
            self.run_daemon(node, expected)
            self._adopt(node, expected, log=self.fs.log_dir(node) / "error.log")
            if cgroups is not None:
                self._limit_cpu(web, cgroups)

    def run_daemon(self, node: str, expected: ExpectedProcess) -> None:
        """Start the node's daemon, which detaches. Its files are named through the state directory's
        descriptor (anchor.DAEMON_ROOT, given to the child at that number), never through the
        directory's name; an extra argument carries the config's name, so that `ps` and the record's
        proof (is_ours) still name this cluster's file."""
        daemon = StatePaths(DAEMON_ROOT)
        if expected.kind == HAPROXY:
            # -W: master-worker (a reload starts new workers, the master stays); -D: daemon, own session;
            # -L: its peer name, unused (no peers section).
            config = PurePosixPath(HAProxyLayout.of_balancer(daemon, self.topology, node).config)
            command = [expected.exe, "-W", "-D", "-f", str(config)]
            command += ["-p", str(config.parent / "haproxy.pid"), "-L", str(expected.config)]
            what, timeout_s = "HAProxy did not start", START_TIMEOUT_S
        else:
            # Without -DFOREGROUND Apache detaches into its own session: the pid file names its parent.
            # -D NAME: a define no config tests.
            config = PurePosixPath(daemon.node_dir(node) / "httpd.conf")
            command = [expected.exe, "-f", str(config), "-D", str(expected.config)]
            what, timeout_s = f"Apache {node} failed", 30.0
        run(command, timeout_s=timeout_s, what=what, state_dir=self.paths.root)

    def stop(self, node: str) -> None:
        self.worker_hangs.release(node)
        expected = self._expected(node)
        record = self.records.load(node, expected)
        if record is not None:
            # A balancer of a pair stops softly (HAProxy's SIGUSR1: it stops listening, so new
            # connections go to its peer, and finishes what it serves, closing keep-alive connections
            # after their current answer): a planned stop loses nothing. Alone, it stops at once.
            soft = self.topology.pair is not None and self.topology.is_balancer(node)
            stop_group(record, term=signal.SIGUSR1 if soft else signal.SIGTERM, timeout_s=STOP_TIMEOUT_S)
            if lingering(record):
                raise ProviderError(f"{node} (pid {record.pid}) did not stop")
        self.records.clear(node)
        if node in self.topology.node_names and not self.topology.is_balancer(node):
            self._unlimit_cpu(self._web_node(node))

    def fault(self, node: str, fault: Fault) -> None:
        """Signals to the node's process group; hang-workers stops all but the leader and keeps new
        workers stopped; reload is the daemon's own graceful reload (SIGUSR2 HAProxy, SIGUSR1 Apache)."""
        reason = self.cannot(node, fault)
        if reason is not None or fault in LASTING:
            raise ProviderError(reason or f"{fault} lasts: apply it with impair")
        if fault is not Fault.RELOAD:
            self.worker_hangs.release(node)  # before the group is resumed, replaced or stopped
        if fault is Fault.HANG_WORKERS:
            record = self._record(node)
            if record is None or not is_ours(record):
                raise ProviderError(f"{node} is not running")
            self.worker_hangs.hold(node, record)
        elif fault is Fault.RELOAD:
            record = self._record(node)
            if record is None or not is_ours(record):
                raise ProviderError(f"{node} is not running")
            self._reload(node, record)
        elif fault is Fault.STOP:
            self.stop(node)  # SIGTERM, waited for (bounded), then SIGKILL: as `relevo stop`
        else:
            self._signal(node, FAULT_SIGNALS[fault])

    def cannot(self, node: str, fault: Fault) -> str | None:
        if fault in FAULT_SIGNALS or fault in (Fault.HANG_WORKERS, Fault.RELOAD):
            if fault is Fault.HANG_WORKERS and self.topology.is_balancer(node):
                return "hang-workers stops Apache's workers: a web node's fault, not the balancer's"
            return None
        return self.impairments.cannot(node, fault)

    # -- lasting faults (Impairing) -------------------------------------------------------------------------
    def impair(self, node: str, impairment: Impairment) -> str:
        def pids() -> list[int]:
            record = self._record(node)
            return group_members(record.pgid) if record is not None and is_ours(record) else []

        return self.impairments.impair(node, self.address(node), impairment, pids)

    def heal(self, node: str) -> None:
        self.impairments.heal(node)

    def heal_all(self) -> list[str]:
        return self.impairments.heal_all()

    def _signal(self, node: str, sig: signal.Signals) -> None:
        record = self._record(node)
        if record is None or not signal_group(record, sig):
            raise ProviderError(f"{node} is not running")
        # Signals are delivered asynchronously: return once this one has taken effect, so that `status`
        # right after `kill` tells the truth.
        if sig == signal.SIGKILL:
            wait_gone(record, SIGNAL_EFFECT_S)
        elif sig in (signal.SIGSTOP, signal.SIGCONT):
            _wait(lambda: group_paused(record) == (sig == signal.SIGSTOP), SIGNAL_EFFECT_S)

    def status(self, node: str) -> NodeState:
        record = self._record(node)
        if record is None or not is_ours(record):
            return NodeState.STOPPED if self._config_path(node).exists() else NodeState.MISSING
        return NodeState.PAUSED if group_paused(record) else NodeState.RUNNING

    def address(self, node: str) -> Endpoint:
        if self.topology.is_balancer(node):
            return self.topology.balancer_named(node).frontend
        return self._web_node(node).endpoint

    # -- hearing a death at once (Watching) ---------------------------------------------------------
    def watches(self, nodes: Sequence[str]) -> list[Watch]:
        """A pidfd on each node's leading process (Apache's parent, HAProxy's master); none on a kernel
        without pidfds (the tick still sees every death)."""
        if not pidfd_supported():
            return []
        return [PidfdWatch(tuple(nodes), self._record)]

    # -- what the state directory records, whatever the topology says now ------------------------------
    def recorded(self) -> list[str]:
        """Every node this provider's records name (a node renamed or removed from the topology too)."""
        return self.records.recorded()

    def adopt_intents(self) -> None:
        """Each node whose start was cut short (only its intent recorded) adopted from its daemon's pid
        file, or its stale intent cleared. Full records are not read: proving that a dead node's group left
        nothing behind scans /proc (3-10 ms here), and the controller calls this every tick."""
        for node in self.records.intended():
            self.records.load(node, self._expected(node))

    def running_recorded(self, node: str) -> bool:
        """A recorded node (in the topology or not) still has a process of ours."""
        if self.records.kind(node) is None:
            return False
        record = self.records.load(node, self._expected(node))
        return record is not None and lingering(record)

    # -- configs ------------------------------------------------------------------------------------------
    def _write_config(self, node: str) -> bool:
        """Render and write the node's files anew; check the config when it differs from what was on
        disk. True when it changed."""
        host = LocalHost(self.paths.root)
        if self.topology.is_balancer(node):
            # Written through the held directory; the daemon's spelling of its paths (anchor.DAEMON_ROOT).
            layout = HAProxyLayout.of_balancer(StatePaths(DAEMON_ROOT), self.topology, node)
            socket = HAProxyLayout.of_balancer(self.paths, self.topology, node).runtime_socket
            if len(str(socket)) > MAX_SOCKET_PATH:
                raise ProviderError(
                    f"the state directory's path is too long for HAProxy's Runtime API socket "
                    f"({socket}); move the topology file to a shorter path"
                )
            haproxy = HAProxyService(
                self.topology, layout, exe=str(find_haproxy()), run_as=haproxy_worker_account()
            )
            files = haproxy.files(Binds.planned(self.topology, node))
            return install(host, node, haproxy, files, what="HAProxy rejected its configuration")
        apache_tool = find_apache()
        apache = ApacheService.local(
            self.topology, self._web_node(node), apache_tool.modules_dir, str(apache_tool.binary)
        )
        return install(host, node, apache, apache.files(), what=f"Apache rejected {node}'s configuration")

    def _web_node(self, name: str) -> Node:
        try:
            return self.topology.node(name)
        except KeyError:
            known = ", ".join(self.topology.node_names)
            raise ProviderError(f"no node named {name!r}; nodes: {known}") from None

    # -- capacity: a CPU quota through cgroups -------------------------------------------------------------
    def _cpu_cgroups(self, web: Node) -> CpuCgroups | None:
        """Where the node's CPU quota goes; None without one. A quota that cannot be applied is an error,
        never a silent no-op."""
        if web.capacity.cpu is None:
            return None
        cgroups = CpuCgroups.detect()
        if cgroups is None:
            raise CpuQuotaError(f"{web.name}: capacity.cpu needs the cgroup cpu controller (v1 or v2)")
        if os.geteuid() != 0:
            raise CpuQuotaError(f"{web.name}: capacity.cpu needs root (the local provider uses cgroups)")
        return cgroups

    def _limit_cpu(self, web: Node, cgroups: CpuCgroups) -> None:
        """Move the node's processes into its group; the children Apache forks later inherit it. If that
        fails, the node is stopped again: it does not run without the capacity it was given."""
        assert web.capacity.cpu is not None
        record = self._record(web.name)
        if record is None:
            raise ProviderError(f"{web.name} did not start")
        try:
            group = cgroups.group(self.topology.name, self.paths.root, web.name)
            cgroups.apply(group, web.capacity.cpu, group_members(record.pgid))
        except ProviderError:
            self.stop(web.name)
            raise

    def _unlimit_cpu(self, web: Node) -> None:
        if web.capacity.cpu is None:
            return
        cgroups = CpuCgroups.detect()
        if cgroups is not None:
            cgroups.remove(cgroups.group(self.topology.name, self.paths.root, web.name))

    # -- records ------------------------------------------------------------------------------------------
    def _expected(self, node: str) -> ExpectedProcess:
        """What the node's process must be, from its name and kind (a node no longer in the topology:
        the kind its record names)."""
        if self.topology.is_balancer(node):
            kind = HAPROXY
        elif node in self.topology.node_names:
            kind = APACHE
        else:
            kind = self.records.kind(node) or APACHE
        if kind == HAPROXY:
            config = Path(HAProxyLayout.of_balancer(self.paths, self.topology, node).config)
            return ExpectedProcess(
                kind=HAPROXY,
                exe=os.path.realpath(find_haproxy()),
                config=config,
                pid_file=Path(HAProxyLayout.of_balancer(self.fs, self.topology, node).config).parent
                / "haproxy.pid",
            )
        return ExpectedProcess(
            kind=APACHE,
            exe=os.path.realpath(find_apache().binary),
            config=self.paths.node_dir(node) / "httpd.conf",
            pid_file=self.fs.node_dir(node) / "httpd.pid",
        )

    def _adopt(self, node: str, expected: ExpectedProcess, *, log: Path | None) -> None:
        """Wait for the daemon's pid file, then record the process as ours. A record that cannot be
        written (a full disk) stops the process again: nothing runs unrecorded past this call."""
        text = ""

        def written() -> bool:
            nonlocal text
            text = read_or_empty(expected.pid_file).strip()
            return text.isdigit()

        if wait_until(written, START_TIMEOUT_S, 0.02):
            # Apache may bind its port after detaching: a parent that is gone at once failed to start.
            time.sleep(0.05)
            try:
                record = self.records.adopt(node, expected)
            except StateWriteError:
                orphan = ProcessRecord.of(int(text), config=str(expected.config))
                if orphan is not None and orphan.names(exe=expected.exe, config=expected.config):
                    stop_group(orphan, timeout_s=STOP_TIMEOUT_S)
                raise
            if record is not None:
                return
        output = tail(log) if log else ""
        raise ProviderError(f"{node} did not start", output=output)

    def _reload(self, node: str, record: ProcessRecord) -> None:
        """Apply a changed configuration without dropping connections."""
        # HAProxy's master reloads its workers on SIGUSR2; Apache restarts gracefully on SIGUSR1.
        balancer = self.topology.is_balancer(node)
        if balancer:
            save_server_state(self.fs, runtime_sockets(self.topology).values())
        sig = signal.SIGUSR2 if balancer else signal.SIGUSR1
        os.kill(record.pid, sig)
        self._config_changed.discard(node)

    def _record(self, node: str) -> ProcessRecord | None:
        try:
            expected = self._expected(node)
        except MissingToolError:
            return None  # without the program, nothing of ours can be running
        return self.records.load(node, expected)

    def _config_path(self, node: str) -> Path:
        if self.topology.is_balancer(node):
            return Path(HAProxyLayout.of_balancer(self.fs, self.topology, node).config)
        return self.fs.node_dir(self._web_node(node).name) / "httpd.conf"


def _wait(condition: Callable[[], bool], timeout_s: float) -> None:
    wait_until(condition, timeout_s, 0.005)


class PidfdWatch:
    """The local nodes' deaths, heard through pidfds: `refresh` re-reads the records (a node started or
    stopped since), `wait` reports a leading process that exited as the node STOPPED."""

    def __init__(self, nodes: tuple[str, ...], record: Callable[[str], ProcessRecord | None]) -> None:
        self.nodes = nodes
        self._record = record
        self._pids = PidWatch()

    def refresh(self) -> None:
        self._pids.follow({node: self._record(node) for node in self.nodes})

    def wait(self, timeout_s: float) -> list[NodeEvent]:
        return [
            NodeEvent(node=node, state=NodeState.STOPPED, source="pidfd", detail="its process exited")
            for node in self._pids.wait(timeout_s)
        ]

    def close(self) -> None:
        self._pids.close()

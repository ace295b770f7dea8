"""The `local` provider: every node is real processes on this machine, on its own loopback address.

HAProxy runs in master-worker mode and Apache as one self-contained instance per node. Both daemonize
and lead their own process group, recorded by PID and start time, so a signal reaches all of a node's
processes (a crash, a hang) and never anything else. No root needed: all files live in the state
directory.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from relevo.errors import ProviderError, RuntimeAPIError
from relevo.files import read_or_empty, tail
from relevo.haproxy.runtime import RuntimeAPI
from relevo.model import Endpoint, Node, Topology
from relevo.paths import StatePaths
from relevo.procs import ProcessRecord, group_paused, is_ours, signal_group, stop_group, wait_gone
from relevo.providers.base import NodeState
from relevo.providers.tools import find_apache, find_haproxy, run
from relevo.render.apache import layout_for, write_apache_files
from relevo.render.haproxy import write_haproxy_files
from relevo.secrets import load_or_create_secrets

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
SIGNAL_EFFECT_S = 2.0
# A unix socket's path must fit in sockaddr_un (108 bytes on Linux, 104 on the BSDs).
MAX_SOCKET_PATH = 100


class LocalProvider:
    name = "local"

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.paths = StatePaths(topology.state_dir)
        self._config_changed: set[str] = set()

    # -- the Provider verbs --------------------------------------------------------------------------
    def create(self, node: str) -> None:
        self.paths.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        if node == self.topology.balancer.name:
            self._create_balancer()
        else:
            self._create_web(self._web_node(node))

    def start(self, node: str) -> None:
        record = self._record(node)
        if record is not None and is_ours(record):
            if node in self._config_changed:
                self._reload(node, record)
            return
        if not self._config_path(node).exists():
            self.create(node)
        if node == self.topology.balancer.name:
            self._start_balancer()
        else:
            self._start_web(self._web_node(node))

    def stop(self, node: str) -> None:
        record = self._record(node)
        if record is None:
            return
        stop_group(record, term=signal.SIGTERM, timeout_s=STOP_TIMEOUT_S)
        self.paths.pid_file(node).unlink(missing_ok=True)

    def kill(self, node: str, sig: signal.Signals) -> None:
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
        if node == self.topology.balancer.name:
            return self.topology.balancer.frontend
        return self._web_node(node).endpoint

    # -- the balancer ---------------------------------------------------------------------------------
    def _create_balancer(self) -> None:
        if len(str(self.paths.runtime_socket)) > MAX_SOCKET_PATH:
            raise ProviderError(
                f"the state directory's path is too long for HAProxy's Runtime API socket "
                f"({self.paths.runtime_socket}); move the topology file to a shorter path"
            )
        secrets = load_or_create_secrets(self.paths.secrets)
        before = read_or_empty(self.paths.haproxy_cfg)
        config = write_haproxy_files(self.topology, secrets, self.paths)
        run([str(find_haproxy()), "-c", "-q", "-f", str(config)], what="HAProxy rejected its configuration")
        if read_or_empty(config) != before:
            self._config_changed.add(self.topology.balancer.name)

    def _start_balancer(self) -> None:
        pid_file = self.paths.haproxy_dir / "haproxy.pid"
        pid_file.unlink(missing_ok=True)
        # -W: master-worker (a reload starts new workers, the master stays); -D: daemon, own session.
        command = [str(find_haproxy()), "-W", "-D", "-f", str(self.paths.haproxy_cfg), "-p", str(pid_file)]
        run(command, timeout_s=START_TIMEOUT_S, what="HAProxy did not start")
        self._adopt(self.topology.balancer.name, pid_file, log=None)

    # -- web nodes --------------------------------------------------------------------------------------
    def _web_node(self, name: str) -> Node:
        try:
            return self.topology.node(name)
        except KeyError:
            known = ", ".join(self.topology.node_names)
            raise ProviderError(f"no node named {name!r}; nodes: {known}") from None

    def _create_web(self, node: Node) -> None:
        apache = find_apache()
        layout = layout_for(node, self.paths, apache.modules_dir)
        before = read_or_empty(layout.node_dir / "httpd.conf")
        config = write_apache_files(self.topology, node, layout)
        run(
            [str(apache.binary), "-t", "-f", str(config)], what=f"Apache rejected {node.name}'s configuration"
        )
        if read_or_empty(config) != before:
            self._config_changed.add(node.name)

    def _start_web(self, node: Node) -> None:
        apache = find_apache()
        layout = layout_for(node, self.paths, apache.modules_dir)
        layout.pid_file.unlink(missing_ok=True)
        # Without -DFOREGROUND Apache detaches into its own session: the pid file names its parent.
        run(
            [str(apache.binary), "-f", str(layout.node_dir / "httpd.conf")], what=f"Apache {node.name} failed"
        )
        self._adopt(node.name, layout.pid_file, log=layout.log_dir / "error.log")

    # -- shared -------------------------------------------------------------------------------------------
    def _adopt(self, node: str, pid_file: Path, *, log: Path | None) -> None:
        """Wait for the daemon's pid file, then record the process as ours."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            text = read_or_empty(pid_file).strip()
            if text.isdigit():
                # Apache may bind its port after detaching: a parent that is gone at once failed to start.
                time.sleep(0.05)
                record = ProcessRecord.of(int(text))
                if record is None or not is_ours(record):
                    break
                record.save(self.paths.pid_file(node))
                self._config_changed.discard(node)
                return
            time.sleep(0.02)
        output = tail(log) if log else ""
        raise ProviderError(f"{node} did not start", output=output)

    def _reload(self, node: str, record: ProcessRecord) -> None:
        """Apply a changed configuration without dropping connections."""
        # HAProxy's master reloads its workers on SIGUSR2; Apache restarts gracefully on SIGUSR1.
        if node == self.topology.balancer.name:
            save_server_state(self.paths)
        sig = signal.SIGUSR2 if node == self.topology.balancer.name else signal.SIGUSR1
        os.kill(record.pid, sig)
        self._config_changed.discard(node)

    def _record(self, node: str) -> ProcessRecord | None:
        return ProcessRecord.load(self.paths.pid_file(node))

    def _config_path(self, node: str) -> Path:
        if node == self.topology.balancer.name:
            return self.paths.haproxy_cfg
        return self.paths.node_dir(self._web_node(node).name) / "httpd.conf"


def save_server_state(paths: StatePaths) -> None:
    """Dump HAProxy's server states where `server-state-file` reads them back on (re)start."""
    try:
        state = RuntimeAPI(paths.runtime_socket).show_servers_state()
    except RuntimeAPIError:
        return  # HAProxy is gone: the last dump is the best there is
    paths.server_state.write_text(state)


def _wait(condition: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.005)

"""Running the dashboard: in the foreground (`relevo dashboard`), or detached beside the controller for
`relevo up`, one per cluster, stopped by `relevo down`.

As for the controller, a lock in the state directory says whether one runs (the kernel drops it however
its holder dies) and who it is; it is signalled by that PID, once its command line proves it is the
dashboard of this state directory.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
from pathlib import Path

from relevo import anchor, lock
from relevo.errors import RelevoError
from relevo.files import claim_state_dir, tail
from relevo.model import Endpoint, Topology
from relevo.paths import StatePaths
from relevo.polling import wait_until
from relevo.procs import ProcessRecord, command_line
from relevo.supervisor import SUPERVISOR

START_WAIT_S = 15.0
STOP_WAIT_S = 5.0
LOOPBACK = ("127.", "::1", "localhost")

# Dashboards this process started, kept so they are waited for (no zombie, no ResourceWarning).


class DashboardError(RelevoError):
    pass


def lock_file(paths: StatePaths) -> Path:
    return paths.root / "dashboard.lock"


def record_file(paths: StatePaths) -> Path:
    return paths.root / "run" / "dashboard.json"


def log_file(paths: StatePaths) -> Path:
    return paths.root / "logs" / "dashboard.log"


def default_listen(topology: Topology) -> tuple[str, int]:
    """The balancer's host address (loopback, where its stats page is) and `dashboard.port`."""
    return topology.balancer.stats.address, topology.dashboard.port


def dashboard_url(topology: Topology) -> str | None:
    """Where `relevo up` serves the dashboard (None when the topology turns it off)."""
    if not topology.dashboard.enabled:
        return None
    host, port = default_listen(topology)
    return f"http://{host}:{port}/"


def listening(topology: Topology) -> list[tuple[str, Endpoint]]:
    """Where `relevo up` will start the dashboard, for its checks before anything starts: nothing when
    the topology turns it off or this cluster's dashboard already runs there."""
    if not topology.dashboard.enabled or running_pid(topology) is not None:
        return []
    host, port = default_listen(topology)
    return [("the dashboard (dashboard.port)", Endpoint(address=host, port=port))]


def parse_listen(text: str, default_host: str) -> tuple[str, int]:
    """HOST:PORT (an IPv6 host in brackets), or PORT alone on `default_host` (never every address, as
    an empty host would be); ValueError saying what was expected otherwise."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    if not port.isdigit() or not 0 < int(port) < 65536 or (":" in text and not host):
        raise ValueError(f"expected HOST:PORT such as 127.0.0.1:8405, or a PORT, got {text!r}")
    return host or default_host, int(port)


def actions_enabled(topology: Topology) -> bool:
    """The topology's `dashboard.actions`; by default on when every node runs on the local provider."""
    if topology.dashboard.actions is not None:
        return topology.dashboard.actions
    providers = {topology.balancer.provider, *(n.provider for n in topology.nodes)}
    return providers == {"local"}


def running_pid(topology: Topology) -> int | None:
    found = lock.holders(lock_file(StatePaths(topology.state_dir).held()))
    return found[0] if found else None


def run_foreground(topology: Topology, *, listen: tuple[str, int] | None = None) -> None:
    """`relevo dashboard`: hold the dashboard lock and serve until SIGINT/SIGTERM."""
    from relevo.cluster import Cluster
    from relevo.dashboard.access_log import AccessLogReceiver
    from relevo.dashboard.app import Dashboard, serve
    from relevo.dashboard.collect import Collector
    from relevo.render.haproxy import access_log_receiver
    from relevo.secrets import load_or_create_secrets

    claim_state_dir(topology.state_dir)
    paths = StatePaths(topology.state_dir).held()  # never by name again (see anchor)
    shown = StatePaths(topology.state_dir)
    host, port = listen or default_listen(topology)
    try:
        with lock.hold(lock_file(paths), wait_s=0.5, what="relevo dashboard"):
            record = ProcessRecord.of(os.getpid(), config=str(shown.root.resolve()))
            if record is not None:
                record.save(record_file(paths))
            secrets = load_or_create_secrets(paths.secrets)
            cluster = Cluster(topology)
            requests = AccessLogReceiver(access_log_receiver(topology))
            dashboard = Dashboard(
                topology=topology,
                collector=Collector(topology=topology, states=cluster.statuses, requests=requests),
                credentials=lambda: (secrets.stats_user, secrets.stats_password),
                actions=actions_enabled(topology),
            )
            print(f"relevo dashboard on http://{host}:{port}/ (credentials in {shown.secrets})", flush=True)
            requests.start()
            try:
                serve(dashboard, host, port)
            finally:
                requests.stop()
                record_file(paths).unlink(missing_ok=True)
    except lock.LockBusyError:
        raise DashboardError(
            f"a dashboard already runs for this cluster (pid {running_pid(topology) or '?'}); "
            "`relevo down` stops it"
        ) from None


def dashboard_arguments(topology: Topology) -> list[str]:
    file = ["-f", str(topology.source)] if topology.source is not None else []
    return [*file, "dashboard", "--state-dir", str(topology.state_dir.resolve())]


def start_background(topology: Topology) -> tuple[int, str]:
    """Start `relevo dashboard` detached unless one runs; wait until it answers; return (pid, url)."""
    paths = StatePaths(topology.state_dir).held()
    host, port = default_listen(topology)
    url = f"http://{host}:{port}/"
    running = running_pid(topology)
    if running is not None:
        return running, url
    env = dict(os.environ)
    if topology.source is None:
        env.pop("RELEVO_FILE", None)  # the built-in default: no file may be picked up instead
    # The child reaches the directory this process holds, whatever its name points to by now.
    state_fd, pass_fds = anchor.inherited(topology.state_dir)
    child = SUPERVISOR.spawn(
        [sys.executable, "-m", "relevo", *dashboard_arguments(topology), *state_fd],
        log=log_file(paths),
        cwd=topology.state_dir.resolve().parent,
        env=env,
        pass_fds=pass_fds,
    )
    serving = lambda: running_pid(topology) == child.pid and _answers(host, port)  # noqa: E731
    if not SUPERVISOR.started(child, serving, START_WAIT_S, 0.05):
        # Another `up` started its dashboard between our look and our start: that one serves.
        other = running_pid(topology)
        if other is not None:
            return other, url
        raise DashboardError(f"the dashboard exited at once:\n{tail(log_file(paths))}")
    return child.pid, url  # serving; or slow to start, but alive


def _answers(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
        return True
    return False


def stop_background(topology: Topology) -> bool:
    """Stop the cluster's dashboard (SIGTERM, then SIGKILL after a bounded wait); True if one ran."""
    paths = StatePaths(topology.state_dir).held()
    pid = running_pid(topology)
    if pid is None:
        record_file(paths).unlink(missing_ok=True)
        return False
    # The lock's holder, and its command line names this state directory: the dashboard we mean.
    if str(anchor.real(paths.root).resolve()) not in command_line(pid) or "dashboard" not in command_line(
        pid
    ):
        raise DashboardError(
            f"pid {pid} holds {anchor.real(lock_file(paths))} but is not this cluster's dashboard"
        )
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not _wait_gone(pid, paths, STOP_WAIT_S):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _wait_gone(pid, paths, 2.0)
    record_file(paths).unlink(missing_ok=True)
    return True


def _wait_gone(pid: int, paths: StatePaths, timeout_s: float) -> bool:
    return wait_until(
        lambda: SUPERVISOR.collected(pid) and pid not in lock.holders(lock_file(paths)),
        timeout_s,
        0.02,
    )

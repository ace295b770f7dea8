"""Running the controller: in the foreground (`relevo watch`), or detached for `relevo up`, one per cluster.

The lock file in the state directory is the truth about "is a controller running": the kernel drops a
`flock` when its holder dies, however it dies, so a crashed controller never blocks the next one. The pid
record (PID + kernel start time) is how `relevo down` signals exactly that process and nothing else.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from relevo import anchor, lock
from relevo.controller import charge, service
from relevo.controller.balancers import BalancerSet
from relevo.controller.events import EventKind, EventLog
from relevo.controller.haproxy_view import BalancerControl, PolledBalancer, RuntimeBalancer
from relevo.controller.health import ProbeResult
from relevo.controller.journal import Journal, read_journal
from relevo.controller.locked_nodes import LockedNodes
from relevo.controller.loop import Controller, StopFlag
from relevo.controller.probe import Prober, http_probe
from relevo.controller.recorder import Listener
from relevo.controller.sources import cluster_sources
from relevo.controller.status import diff_settings, settings
from relevo.errors import RelevoError
from relevo.files import claim_state_dir, open_nofollow, tail
from relevo.haproxy.runtime import RuntimeAPI
from relevo.lock import HeldLock
from relevo.model import Topology
from relevo.paths import StatePaths
from relevo.polling import wait_until
from relevo.procs import ProcessRecord, command_line, is_ours, process_state, reap_children, signal_pending
from relevo.providers.base import BoundedStatus, HoldsVip, Provider
from relevo.services.haproxy import runtime_sockets
from relevo.supervisor import SUPERVISOR

if TYPE_CHECKING:
    from relevo.cluster import Cluster
    from relevo.controller.metrics import ControllerMetrics, MetricsServer

START_WAIT_S = 10.0
STOP_WAIT_S = 5.0
LOCK_RETRY_S = 0.5
LOG = logging.getLogger("relevo.controller")

# Controllers this process started: kept so they are waited for (no zombie, no ResourceWarning).


class ControllerRunningError(RelevoError):
    """Another controller holds this cluster's lock."""


@contextlib.contextmanager
def controller_lock(path: Path) -> Iterator[HeldLock]:
    """Hold the cluster's controller lock (raises ControllerRunningError when another process has it).
    `lock_holder` never takes it, so a status check at the wrong moment cannot make a starting
    controller give up; a brief retry covers a controller that is just letting go."""
    try:
        with lock.hold(path, wait_s=LOCK_RETRY_S, what="controller") as held:
            yield held
    except lock.LockBusyError:
        holder = lock_holder(path)
        raise ControllerRunningError(
            f"a controller already runs for this cluster (pid {holder or '?'}, lock {path})"
        ) from None


def lock_holder(path: Path) -> int | None:
    """The pid of the controller holding the lock (the kernel's answer), or None when none runs."""
    found = lock.holders(path)
    return found[0] if found else None


class Requests:
    """What the signal handlers ask for, as plain attributes: a handler only records (uvicorn's
    `should_exit`), it never takes a lock, as `threading.Event.set()` would while the main thread holds
    it inside `Event.wait`. The loop looks at these between short sleeps."""

    def __init__(self) -> None:
        self.stop = False
        self.reload = False

    def is_set(self) -> bool:
        return self.stop


# HAProxy's view is read off the tick (`PolledBalancer`); a tick waits for a fresh read at most this
# share of the tick, and HAProxy is "not answering" once no read has succeeded for STALE_VIEW_S. Under
# the seed's load on two cores HAProxy took 50-300 ms to answer: a socket timeout of the tick's order
# would call a busy HAProxy dead, so each call may take RUNTIME_TIMEOUT_S (HAProxy's check timeout).
VIEW_WAIT_SHARE_OF_TICK = 0.5
STALE_VIEW_S = 1.0
RUNTIME_TIMEOUT_S = 1.0


def owned_file(paths: StatePaths) -> Path:
    """Which admin states the controller set itself (the rest were set by people)."""
    return paths.root / "controller-owned.json"


def forget_owned_states(topology: Topology) -> None:
    """A fresh HAProxy starts from its configuration: what the controller had set is gone with it."""
    owned_file(StatePaths(topology.state_dir).held()).unlink(missing_ok=True)


def build_controller(
    topology: Topology,
    *,
    held: HeldLock | None = None,
    stopping: Callable[[], bool] = lambda: False,
    lost: Callable[[], None] = lambda: None,
    listener: Listener | None = None,
) -> tuple[Controller, Prober]:
    """The controller of a real cluster, wired to its provider, its HAProxy and its journal. Its starts
    and stops take the cluster lock (given up when `stopping()`); with `held`, the controller lock it
    holds, each tick checks that lock still guards the cluster (else `lost()`) and adopts orphans."""
    from relevo.cluster import Cluster

    cluster = Cluster(topology)  # claims the state directory: from here on, reached through its descriptor
    paths = StatePaths(topology.state_dir).held()
    health = topology.health
    timeout_s = topology.probe_timeout_s
    # Where each node serves, as its provider resolved it (a container's address on its bridge).
    endpoints = {node.name: cluster.address(node.name) for node in topology.nodes}

    def probe(name: str) -> ProbeResult:
        return http_probe(
            endpoints[name], path=health.path, expect_status=health.expect_status, timeout_s=timeout_s
        )

    prober = Prober(probe, timeout_s=timeout_s)
    wait_s = min(timeout_s, topology.controller.tick_s)
    polled = {
        name: PolledBalancer(
            RuntimeBalancer(
                RuntimeAPI(socket, timeout_s=RUNTIME_TIMEOUT_S),
                topology.balancer.BACKEND,
                state_file=paths.server_state,
            ),
            wait_s=VIEW_WAIT_SHARE_OF_TICK * topology.controller.tick_s,
            stale_s=STALE_VIEW_S,
        )
        for name, socket in runtime_sockets(topology).items()
    }
    # One balancer: as it always was. A pair: every command to both (controller/balancers.py).
    balancer: BalancerControl = polled[topology.balancer.name] if len(polled) == 1 else BalancerSet(polled)
    wake = threading.Event()  # a death heard (or an action done): the tick stops waiting and acts
    # Beside a VM pair's balancer (its wrapper names the settings): act only while in charge (acting.py).
    charge_settings = charge.from_environment()
    controller = Controller(
        topology,
        nodes=LockedNodes(cluster, paths, cancelled=stopping),
        balancer=balancer,
        collect=lambda names: prober.collect(names, wait_s, interrupt=wake),
        wake=wake,
        events=EventLog(paths.events, max_bytes=topology.controller.journal_max_bytes),
        state_file=paths.controller_state,
        owned_file=owned_file(paths),
        server_state_file=paths.server_state,
        housekeeping=(lambda: _housekeeping(cluster, held, lost)) if held else reap_children,
        sources=cluster_sources(cluster, [*(n.name for n in topology.nodes), topology.balancer.name]),
        listener=listener,
        vip_holder=vip_holder(cluster, topology),
        # A tick looks at the providers at most twice: at the web nodes whose probe failed, then at a
        # silent balancer (Observer.observe).
        provider_wait_s=status_bound_s(cluster, [n.name for n in topology.nodes])
        + status_bound_s(cluster, [b.name for b in topology.balancers]),
        charge=charge.watch(charge_settings) if charge_settings is not None else None,
        hurry=lambda name: prober.hurry(name, for_s=topology.controller.start_timeout_s, answered=wake.set),
    )
    return controller, prober


def status_bound_s(cluster: Cluster, nodes: list[str]) -> float:
    """How long one look at `nodes` through their providers may block: each provider answering through
    an API within its bound (BoundedStatus), the others from this process (nothing to add)."""
    by_provider: dict[int, tuple[Provider, list[str]]] = {}
    for node in nodes:
        provider = cluster.provider_for(node)
        by_provider.setdefault(id(provider), (provider, []))[1].append(node)
    return sum(p.status_bound_s(names) for p, names in by_provider.values() if isinstance(p, BoundedStatus))


def vip_holder(cluster: Cluster, topology: Topology) -> Callable[[], str | None] | None:
    """Which balancer holds a pair's VIP, where the balancers' provider can tell (LXD: HoldsVip)."""
    if topology.pair is None or topology.pair.vip is None:
        return None
    provider = cluster.provider_for(topology.balancer.name)
    return provider.vip_holder if isinstance(provider, HoldsVip) else None


def run_foreground(topology: Topology, *, stop: StopFlag | None = None) -> None:
    """`relevo watch`: hold the lock, run the loop until SIGTERM/SIGINT (or `stop`), then let go. SIGHUP
    re-reads the topology file and applies its edits."""
    requests = Requests()
    claim_state_dir(topology.state_dir)
    paths = StatePaths(topology.state_dir).held()  # never by name again (see anchor)
    with controller_lock(paths.controller_lock) as held:
        # Started by `relevo up`, its command line names the state directory: proof for `down` even
        # before it holds the lock. Run by hand, holding the lock is the proof.
        root = str(topology.state_dir.resolve())
        record = ProcessRecord.of(os.getpid(), config=root if root in command_line(os.getpid()) else "")
        if record is not None:
            record.save(paths.controller_pid)

        def stopping() -> bool:
            return requests.stop or (stop is not None and stop.is_set())

        def lost() -> None:
            requests.stop = True

        listener = MetricsListener(topology)
        controller, prober = build_controller(
            topology, held=held, stopping=stopping, lost=lost, listener=listener.metrics
        )
        _on_signals(requests)

        def reload() -> Topology | None:
            if not requests.reload:
                return None
            requests.reload = False
            edited = _reread(topology)
            if edited is not None:
                listener.follow(edited)
                controller.listener = listener.metrics
            return edited

        try:
            controller.run(_Flag(stopping), reload)
        finally:
            listener.close()
            prober.close()
            if isinstance(controller.balancer, PolledBalancer | BalancerSet):
                controller.balancer.close()
            if isinstance(controller.charge, charge.ChargeWatch):
                controller.charge.close()
            mine = ProcessRecord.load(paths.controller_pid)
            if mine is not None and mine.pid == os.getpid():
                paths.controller_pid.unlink(missing_ok=True)


def controller_metrics_url(topology: Topology) -> str | None:
    """Where the controller serves its Prometheus metrics (None when `controller.metrics_port` is 0)."""
    port = topology.controller.metrics_port
    return f"http://{topology.balancer.stats.address}:{port}/metrics" if port else None


class MetricsListener:
    """The controller's metrics and their server on the balancer's host address, moved (closed, opened
    on the new port, or turned off or on) when a reload changes `controller.metrics_port`. A port that
    cannot be had (taken, or an address this host lacks) is logged and costs only the metrics, never
    failover."""

    def __init__(self, topology: Topology) -> None:
        self.metrics: ControllerMetrics | None = None
        self.server: MetricsServer | None = None
        self.port = 0
        self.follow(topology)

    def follow(self, topology: Topology) -> None:
        port = topology.controller.metrics_port
        if port == self.port:
            return
        self.close()
        self.port = port
        if not port:
            return
        from relevo.controller.metrics import ControllerMetrics, serve
        from relevo.secrets import load_or_create_secrets

        if self.metrics is None:
            self.metrics = ControllerMetrics(topology)
        secrets = load_or_create_secrets(StatePaths(topology.state_dir).held().secrets)
        address = topology.balancer.stats.address
        try:
            self.server = serve(
                self.metrics, address, port, lambda: (secrets.stats_user, secrets.stats_password)
            )
        except OSError as exc:
            LOG.warning("no metrics: cannot listen on %s:%s (%s)", address, port, exc)
            return
        LOG.info("metrics at %s", self.server.url)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None


def _housekeeping(cluster: Cluster, held: HeldLock, lost: Callable[[], None]) -> None:
    """Each tick: collect exited children, adopt nodes a crash left with only an intent record, and
    make sure this controller's lock is still the cluster's (a lock file moved aside lets a second
    controller start: the one whose lock is gone stops acting)."""
    reap_children()
    if not held.bound():
        LOG.error("the controller lock %s was replaced or removed: stopping, one controller acts", held.path)
        lost()
        return
    cluster.adopt_orphans()


class _Flag:
    def __init__(self, test: Callable[[], bool]) -> None:
        self.is_set = test


def _reread(topology: Topology) -> Topology | None:
    """The topology file again, if it still describes the same nodes (else `relevo up` restarts us)."""
    from relevo.topology import load_topology

    if topology.source is None:
        return None
    try:
        edited = load_topology(topology.source)
    except RelevoError as exc:
        LOG.warning("not reloaded, the topology file has an error: %s", exc)
        return None
    if edited.nodes != topology.nodes or edited.balancer != topology.balancer:
        LOG.warning("not reloaded: the nodes or the balancer changed; `relevo up` restarts the controller")
        return None
    return edited


def _on_signals(requests: Requests) -> None:
    """Signal handlers only record the request; the loop notices it within a sleep slice."""
    if threading.current_thread() is not threading.main_thread():
        return  # tests run the loop in a thread and stop it with their own flag

    def on_stop(_signum: int, _frame: object) -> None:
        requests.stop = True

    def on_reload(_signum: int, _frame: object) -> None:
        requests.reload = True

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_reload)


def watch_arguments(topology: Topology) -> list[str]:
    """`relevo`'s arguments for watching this topology in the same state directory (also when it is the
    built-in default, which has no file to name)."""
    file = ["-f", str(topology.source)] if topology.source is not None else []
    return [*file, "watch", "--state-dir", str(topology.state_dir.resolve())]


def watch_command(topology: Topology) -> list[str]:
    """The argument list that runs `relevo watch` for this topology with this interpreter (given the
    state directory this process holds: see `anchor.inherited`)."""
    return [sys.executable, "-m", "relevo", *watch_arguments(topology)]


def start_background(topology: Topology) -> int:
    """Start `relevo watch` detached (its own session, output to the controller log) unless a controller
    already runs for this cluster; return its pid either way."""
    paths = StatePaths(topology.state_dir).held()
    running = lock_holder(paths.controller_lock)
    if running is not None and not _dying(running):
        return running
    if running is not None and not _wait_unlocked(paths.controller_lock, STOP_WAIT_S):
        raise RelevoError(f"the previous controller (pid {running}) is still exiting; try again")
    unit = service.service_of(topology)
    if unit is not None:
        return _start_service(unit, paths)
    env = dict(os.environ)
    if topology.source is None:
        env.pop("RELEVO_FILE", None)  # the built-in default: no file may be picked up instead
    # The child reaches the directory this process holds, whatever its name points to by now.
    state_fd, pass_fds = anchor.inherited(topology.state_dir)
    child = SUPERVISOR.spawn(
        [*watch_command(topology), *state_fd],
        log=paths.controller_log,
        cwd=topology.state_dir.resolve().parent,
        env=env,
        pass_fds=pass_fds,
    )
    record = ProcessRecord.of(child.pid, config=str(topology.state_dir.resolve()))
    if record is not None:
        record.save(paths.controller_pid)
    locked = lambda: lock_holder(paths.controller_lock) == child.pid  # noqa: E731
    if not SUPERVISOR.started(child, locked, START_WAIT_S, 0.02):
        raise RelevoError(f"the failover controller exited at once:\n{tail(paths.controller_log)}")
    return child.pid  # holding the lock; or slow to start, but alive: it takes the lock when it can


def _start_service(unit: str, paths: StatePaths) -> int:
    service.start(unit)
    holders: list[int] = []

    def locked() -> bool:
        holder = lock_holder(paths.controller_lock)
        if holder is not None:
            holders.append(holder)
        return holder is not None

    if wait_until(locked, START_WAIT_S, 0.02):
        return holders[-1]
    pid = service.main_pid(unit)
    if pid is not None:
        return pid  # slow to start (an emulated VM), but alive: it takes the lock when it can
    raise RelevoError(
        f"systemd started {unit}, but no controller runs and holds the lock (journalctl -u {unit})"
    )


def stop_background(topology: Topology) -> bool:
    """Stop the cluster's controller (SIGTERM, then SIGKILL after a bounded wait; through systemctl when
    systemd runs it); True if one ran."""
    paths = StatePaths(topology.state_dir).held()
    unit = service.service_of(topology)
    if unit is not None:
        ran = lock_holder(paths.controller_lock) is not None
        service.stop(unit)
        _wait_unlocked(paths.controller_lock, STOP_WAIT_S)
        paths.controller_pid.unlink(missing_ok=True)
        return ran
    record = _controller_process(paths)
    if record is None:
        stale = ProcessRecord.load(paths.controller_pid)
        if stale is not None:
            _wait_gone(stale, paths.controller_lock, 0.0)  # collect it if it was our child and died
        paths.controller_pid.unlink(missing_ok=True)
        return False
    # The pid only, never its group: a foreground `relevo watch` shares its group with its shell's job.
    with contextlib.suppress(ProcessLookupError):
        os.kill(record.pid, signal.SIGTERM)
    if not _wait_gone(record, paths.controller_lock, STOP_WAIT_S):
        with contextlib.suppress(ProcessLookupError):
            os.kill(record.pid, signal.SIGKILL)
        _wait_gone(record, paths.controller_lock, 2.0)
    paths.controller_pid.unlink(missing_ok=True)
    return True


def controller_running(topology: Topology) -> bool:
    """A controller of ours runs for this cluster (holding its lock, or just started and about to)."""
    return _controller_process(StatePaths(topology.state_dir).held()) is not None


def _controller_process(paths: StatePaths) -> ProcessRecord | None:
    """The controller to stop, proven: the holder of the controller lock (the kernel says who), or a
    controller just started that holds it not yet, whose record names our interpreter and whose command
    line names this state directory. A record alone, naming some other process, is never honoured."""
    record = ProcessRecord.load(paths.controller_pid)
    holder = lock_holder(paths.controller_lock)
    if holder is not None:
        if record is not None and record.pid == holder and is_ours(record):
            return record
        return ProcessRecord.of(holder)
    root = str(anchor.real(paths.root).resolve())
    if record is not None and record.names(exe=sys.executable, config=root) and is_ours(record):
        return record
    return None


def _dying(pid: int) -> bool:
    """A killed multi-threaded process shows its main thread as a zombie while its other threads (the
    probes) still exit, holding the lock for a moment longer; one just sent SIGKILL may not have acted on
    it yet: either is going, not running."""
    return process_state(pid) in (None, "Z", "X") or signal_pending(pid, signal.SIGKILL)


def _wait_unlocked(lock: Path, timeout_s: float) -> bool:
    return wait_until(lambda: lock_holder(lock) is None, timeout_s, 0.02)


def _wait_gone(record: ProcessRecord, lock: Path, timeout_s: float) -> bool:
    """Wait until the controller has exited (and, if it was our child, collect it) and let go of the
    lock, so that a controller started right after does not find it held."""
    return wait_until(
        # Our own child is gone once collected: until then it lingers as a zombie.
        lambda: SUPERVISOR.collected(record.pid) and not is_ours(record) and lock_holder(lock) != record.pid,
        timeout_s,
        0.02,
    )


def controller_status(topology: Topology) -> dict[str, Any]:
    """Is a controller running (it holds the lock), its pid, when it last ticked, and its view of each
    node (health, HAProxy admin state, failures and retries)."""
    paths = StatePaths(topology.state_dir).held()
    pid = lock_holder(paths.controller_lock)
    state = _read_state(paths)
    last_tick = state.get("last_tick")
    age = time.time() - last_tick if isinstance(last_tick, int | float) else None
    # Alive is a recent tick, not a pid that exists: a stuck loop shows up here. A live tick may also wait
    # on its providers' APIs, each call within its own bound (LXD's on a busy emulated VM: 10 s, once
    # seen in full), as long as the controller says: only past that is it stuck.
    waits = state.get("provider_wait_s")
    provider_wait_s = waits if isinstance(waits, int | float) else 0.0
    stale_after = max(2.0, 20 * topology.controller.tick_s) + provider_wait_s
    return {
        "running": pid is not None,
        "pid": pid,
        "ticking": pid is not None and age is not None and age < stale_after,
        "last_tick_age_s": round(age, 3) if age is not None else None,
        "ticks": state.get("ticks"),
        "haproxy": state.get("haproxy"),
        "balancer": state.get("balancer") if pid is not None else None,
        # A pair's VIP: which balancer the controller last saw holding it.
        "vip_holder": state.get("vip_holder") if pid is not None else None,
        "journal": state.get("journal") if pid is not None else None,
        "nodes": state.get("nodes", {}) if pid is not None else {},
        "log": str(anchor.real(paths.controller_log)),
    }


def _read_state(paths: StatePaths) -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError):
        loaded = json.loads(open_nofollow(paths.controller_state))
        if isinstance(loaded, dict):
            return loaded
    return {}


def controller_notes(status: dict[str, Any]) -> list[str]:
    """What `relevo status` says beyond running/not running: a failover in progress, planned maintenance,
    overloaded nodes, a hung balancer, a journal that cannot be written."""
    notes: list[str] = []
    journal = status.get("journal")
    if isinstance(journal, dict) and not journal.get("ok", True):
        notes.append(f"{journal.get('error')} ({journal.get('pending')} events waiting in memory)")
    if status.get("balancer") not in (None, "answering"):
        notes.append(f"HAProxy is {status['balancer']}")
    for name, node in sorted((status.get("nodes") or {}).items()):
        if not isinstance(node, dict):
            continue
        if node.get("failing_over_s") is not None:
            notes.append(
                f"{name}: failover in progress for {node['failing_over_s']:g} s ({node.get('probe')})"
            )
        if node.get("busy"):
            notes.append(f"{name}: {node['busy']}")
        if node.get("maintenance"):
            notes.append(f"{name}: in {node.get('admin')} by hand (planned maintenance)")
        if node.get("overloaded"):
            notes.append(f"{name}: overloaded (slow but answering; left in service)")
    return notes


# How long `relevo up` waits for a running controller to apply a reload (then it restarts it).
RELOAD_WAIT_S = 5.0


def apply_edits(topology: Topology) -> list[str]:
    """Give a running controller the edited topology: SIGHUP when only settings changed (it re-reads the
    file), a restart (the caller starts it again) when the nodes or the balancer changed or the reload
    did not take. Returns what changed, in words; [] when no controller runs or nothing changed."""
    paths = StatePaths(topology.state_dir).held()
    record = ProcessRecord.load(paths.controller_pid)
    if record is None or not is_ours(record) or lock_holder(paths.controller_lock) != record.pid:
        return []
    running = _read_state(paths).get("settings")
    wanted = settings(topology)
    if not isinstance(running, dict):
        return []
    changes = diff_settings(running, wanted)
    if not changes:
        return []
    structural = any(c.startswith(("nodes.", "balancer")) for c in changes) or topology.source is None
    if not structural:
        os.kill(record.pid, signal.SIGHUP)
        if wait_until(lambda: _read_state(paths).get("settings") == wanted, RELOAD_WAIT_S, 0.05):
            return [f"reloaded: {change}" for change in changes]
    stop_background(topology)
    return [f"restarted: {change}" for change in changes]


def recent_events(topology: Topology, n: int, *, include_actions: bool = False) -> list[dict[str, Any]]:
    """The last `n` events of the cluster's journal, oldest first (see `recent_journal`)."""
    return recent_journal(topology, n, include_actions=include_actions).events


def recent_journal(topology: Topology, n: int, *, include_actions: bool = False) -> Journal:
    """The last `n` events of the cluster's journal, oldest first, and what was skipped; without the
    routine `action` lines (each start, stop and Runtime API command) unless asked: the transitions tell
    the story."""
    path = StatePaths(topology.state_dir).held().events
    if include_actions:
        return read_journal(path, n)
    return read_journal(path, n, keep=lambda event: event.get("kind") != EventKind.ACTION)

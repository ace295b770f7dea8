"""The controller heals only what is broken, never misses a hung balancer, respects people, and journals
only what happened: real HAProxy and Apache, failures counted at the client in open loop."""

from __future__ import annotations

import base64
import contextlib
import csv
import functools
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from relevo import lifecycle
from relevo.controller import daemon
from relevo.controller.events import EventLog, read_events
from relevo.controller.haproxy_view import BalancerControl
from relevo.controller.loop import Controller
from relevo.controller.state import ServerView
from relevo.errors import RuntimeAPIError
from relevo.haproxy.runtime import AdminState
from relevo.maintenance import start_node, stop_node
from relevo.procs import ProcessRecord, group_members, is_ours
from relevo.providers.base import Fault, NodeState
from relevo.topology import load_topology

from .conftest import RunningCluster, make_topology_file, start_cluster, stop_cluster, wait_until
from .test_failover import (
    admin,
    assert_no_failures,
    diagnose,
    finish,
    in_service,
    load_for,
    served,
    warm_up,
)

pytestmark = pytest.mark.integration


SEED_BENCH = ("--threads", "1000", "--loops", "50", "--ramp-up", "1s")


def quietly(predicate: Callable[[], bool]) -> Callable[[], bool]:
    """`predicate`, false while HAProxy does not answer (it is being restarted)."""

    def test() -> bool:
        try:
            return predicate()
        except RuntimeAPIError:
            return False

    return test


def events_of(running: RunningCluster, kind: str) -> list[dict[str, Any]]:
    return [e for e in read_events(running.cluster.paths.events) if e["kind"] == kind]


# --- heal only what is broken ---------------------------------------------------------------------------
def bench(source: Path, *args: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "relevo", "-f", str(source), "bench", *args, "--json", "-q"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report: dict[str, object] = json.loads(done.stdout)
    return report


@pytest.fixture
def warm_controlled(cluster_dir: Path) -> Iterator[RunningCluster]:
    """The seed's cluster with warm standbys (running, in maint, and HAProxy `backup` lines; primaries
    marked down on their first failed connect) and the failover controller in the background."""
    running = start_cluster(make_topology_file(cluster_dir, "standby: {temperature: warm}\n"))
    try:
        daemon.start_background(running.topology)
        try:
            wait_until(lambda: bool(daemon.controller_status(running.topology)["ticking"]), "it ticks")
            yield running
        finally:
            daemon.stop_background(running.topology)
    finally:
        stop_cluster(running)


def haproxy_marked_down(running: RunningCluster) -> dict[str, int]:
    """Each server's count of UP -> DOWN transitions in HAProxy (`chkdown`: its checks, or `observe`)."""
    text = running.cluster.runtime.command("show stat").lstrip("# ")
    rows = csv.DictReader(io.StringIO(text))
    return {r["svname"]: int(r["chkdown"] or 0) for r in rows if r["pxname"] == "web" and r["chkdown"]}


def test_seed_benchmark_fails_over_nothing(warm_controlled):
    """The seed's own load (`relevo bench --threads 1000 --loops 50 --ramp-up 1s`), then an open-loop
    run at the throughput it measured (the cluster's capacity), against a healthy cluster with warm
    standbys: no closed-loop request fails, the journal shows no node declared down and no failover, and
    HAProxy marked no server down (its `observe layer4` is not fooled by load). One closed-loop run
    proves it (benchmarks/seed_load.py repeats it to measure)."""
    source = warm_controlled.topology.source
    assert source is not None
    report = bench(source, *SEED_BENCH)
    assert report["samples"] == 50_000
    assert report["errors"] == 0, str(report["errors_by_kind"])
    capacity = float(str(report["throughput_rps"]))
    bench(source, "--rate", f"{capacity:.0f}", "--duration", "5s", "--threads", "1000")
    downs = [e for e in events_of(warm_controlled, "health") if e["to"] == "down"]
    assert downs == [], "a healthy node was declared down" + diagnose(warm_controlled)
    assert events_of(warm_controlled, "failover") == []
    marked = haproxy_marked_down(warm_controlled)
    assert set(marked) >= {"web1", "web2", "web1bck.bridge", "web2bck.bridge"}, marked
    assert not any(marked.values()), f"HAProxy marked a healthy server down: {marked}"


def apache_workers(running: RunningCluster, node: str) -> list[int]:
    """The node's Apache processes except its parent: the workers that answer requests."""
    record = ProcessRecord.load(running.cluster.paths.pid_file(node))
    assert record is not None
    return [pid for pid in group_members(record.pgid) if pid != record.pid]


class WorkerHang(threading.Thread):
    """Keeps every Apache worker process of a node SIGSTOPped, including those its parent starts to
    replace them, until stopped (bounded): a node whose processes live but never answer."""

    def __init__(self, running: RunningCluster, node: str, max_s: float = 60.0) -> None:
        super().__init__(name=f"hang-{node}", daemon=True)
        self.running, self.node, self.max_s = running, node, max_s
        self.stopped: set[int] = set()
        self.done = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + self.max_s
        while not self.done.is_set() and time.monotonic() < deadline:
            for pid in apache_workers(self.running, self.node):
                if pid not in self.stopped:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGSTOP)
                        self.stopped.add(pid)
            self.done.wait(0.01)

    def resume(self) -> None:
        self.done.set()
        self.join(5)
        for pid in self.stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def test_primary_whose_workers_hang_is_replaced_without_a_failed_request(controlled):
    """Only web2's Apache workers SIGSTOPped (its parent alive, so no provider can see it; the workers
    it starts in their place hang too): the probes time out, web2 goes down after `fall` of them,
    web2bck serves, and no client request fails."""
    hang = WorkerHang(controlled, "web2")
    try:
        with load_for(controlled, open_loop=True) as load:
            warm_up(load, controlled)
            hang.start()
            wait_until(lambda: hang.stopped, "web2's workers are stopped")
            assert controlled.cluster.status("web2") is NodeState.RUNNING, "the provider saw the hang"
            wait_until(
                lambda: served(load, "web2bck") > 0,
                "web2bck answers clients",
                explain=lambda: diagnose(controlled),
            )
            time.sleep(1.0)
            result = finish(load)
    finally:
        hang.resume()
    assert_no_failures(result)
    (down,) = [e for e in events_of(controlled, "health") if e["node"] == "web2" and e["to"] == "down"]
    assert "no answer within" in str(down["reason"])
    assert [e["node"] for e in events_of(controlled, "failover")] == ["web2bck"]


# --- a hung balancer ----------------------------------------------------------------------------------------
def test_hung_balancer_is_restarted_and_a_kill_meanwhile_still_fails_over(controlled):
    """`kill ha1 --signal STOP`, then web1 SIGKILLed during the hang: HAProxy is journalled as hung and
    restarted with its server states, and web1bck is started without waiting for it (then serves)."""
    cluster = controlled.cluster
    old = ProcessRecord.load(cluster.paths.pid_file("ha1"))
    assert old is not None
    try:
        cluster.fault("ha1", Fault.HANG)
        cluster.fault("web1", Fault.CRASH)
        killed_at = time.time()
        wait_until(
            quietly(
                lambda: in_service(controlled, "web1bck") and admin(controlled)["web1"][0] is AdminState.MAINT
            ),
            "a new HAProxy has web1bck in service",
            explain=lambda: diagnose(controlled),
        )
        assert not is_ours(old), "the hung HAProxy is still there"
        assert controlled.get()[0] == 200
    finally:
        if is_ours(old):  # never leave a stopped HAProxy behind, whatever happened
            with contextlib.suppress(ProcessLookupError):
                os.killpg(old.pgid, signal.SIGKILL)
    steps = [(e["from"], e["to"]) for e in events_of(controlled, "health") if e["node"] == "ha1"]
    assert ("answering", "hung") in steps
    wait_until(
        lambda: any(e["node"] == "ha1" and e["to"] == "running" for e in events_of(controlled, "action")),
        "the restart is journalled",
    )
    (start,) = [e for e in events_of(controlled, "action") if e["node"] == "web1bck" and e["to"] == "running"]
    # Before, each Runtime API call waited 2 s on the hung HAProxy and this took 3.1 s.
    assert float(start["ts"]) - killed_at < 1.5, "web1bck's start waited behind the hung HAProxy"


# --- the journal tells the truth --------------------------------------------------------------------------
class FailingOnce:
    """A real HAProxy's Runtime API, except that the first `set server web/web1bck state ready` fails."""

    def __init__(self, real: BalancerControl) -> None:
        self.real = real
        self.failed = False

    def view(self) -> Mapping[str, ServerView]:
        return self.real.view()

    def set_state(self, server: str, state: AdminState) -> None:
        if server == "web1bck" and state is AdminState.READY and not self.failed:
            self.failed = True
            raise RuntimeAPIError("injected: HAProxy did not answer")
        self.real.set_state(server, state)

    def health_up(self, server: str) -> None:
        self.real.health_up(server)

    def save(self) -> None:
        self.real.save()


@contextlib.contextmanager
def controller_thread(controller: Controller) -> Iterator[Controller]:
    stop = threading.Event()
    thread = threading.Thread(target=controller.run, args=(stop,), name="controller", daemon=True)
    thread.start()
    try:
        yield controller
    finally:
        stop.set()
        thread.join(10)
        assert not thread.is_alive(), "the controller did not stop"


def test_runtime_api_failure_during_takeover_gives_one_failover_and_one_action_failed(running_cluster):
    """The takeover's `state ready` fails once: one `action-failed`, then exactly one failover event,
    journalled after HAProxy took the standby, and no client request fails."""
    controller, prober = daemon.build_controller(running_cluster.topology)
    controller.balancer = FailingOnce(controller.balancer)
    try:
        with controller_thread(controller), load_for(running_cluster, open_loop=True) as load:
            warm_up(load, running_cluster)
            running_cluster.cluster.fault("web1", Fault.CRASH)
            wait_until(
                lambda: served(load, "web1bck") > 0,
                "web1bck answers clients",
                explain=lambda: diagnose(running_cluster),
            )
            time.sleep(0.5)
            result = finish(load)
    finally:
        prober.close()
    assert_no_failures(result)
    failed = events_of(running_cluster, "action-failed")
    assert len(failed) == 1 and "injected" in str(failed[0]["reason"])
    (failover,) = events_of(running_cluster, "failover")
    assert float(failover["ts"]) > float(failed[0]["ts"])
    assert all(v >= 0 for v in failover["durations"].values())


@pytest.fixture
def full_tmpfs() -> Iterator[Path]:
    """A 256 KiB tmpfs, mounted for the test and unmounted after (needs root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = Path(tempfile.mkdtemp(prefix="relevo-full-", dir="/tmp"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
        mount.rmdir()


def test_journal_on_a_full_filesystem_does_not_stop_failover(running_cluster, full_tmpfs):
    """The journal on a filesystem filled to the last byte: web1 killed, web1bck still serves, status
    says the journal cannot be written, and once space is freed every event is written."""
    journal = full_tmpfs / "events.jsonl"
    filler = full_tmpfs / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (4096, 1):  # to the last byte
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * size):
                    pass
    finally:
        os.close(fd)
    controller, prober = daemon.build_controller(running_cluster.topology)
    warnings: list[str] = []
    controller.events = EventLog(journal, warn=warnings.append)
    try:
        with controller_thread(controller):
            wait_until(lambda: controller.ticks > 3, "the controller ticks")
            running_cluster.cluster.fault("web1", Fault.CRASH)
            wait_until(
                lambda: in_service(running_cluster, "web1bck"),
                "web1bck is in service",
                explain=lambda: "\n".join(warnings),
            )
            state = json.loads(running_cluster.cluster.paths.controller_state.read_text())
            assert state["journal"]["ok"] is False and state["journal"]["pending"] > 0
            assert any("No space left" in w for w in warnings), warnings
            filler.unlink()
            wait_until(lambda: controller.events.error is None, "the journal is written again")
    finally:
        prober.close()
    assert [e["node"] for e in read_events(journal) if e["kind"] == "failover"] == ["web1bck"]


# --- operators win -----------------------------------------------------------------------------------------
def stats_action(running: RunningCluster, server: str, action: str) -> None:
    """What a person does on the stats page: select the server, choose the action, apply."""
    user, password = running.credentials
    body = urllib.parse.urlencode({"s": server, "action": action, "b": "web"}).encode()
    request = urllib.request.Request(running.stats_url, data=body, method="POST")
    request.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    with contextlib.suppress(urllib.error.HTTPError), urllib.request.urlopen(request, timeout=5) as answer:
        answer.read()


def ticked_past(running: RunningCluster, moment: float) -> None:
    """Wait until the controller has run a whole tick begun after `moment` (time.time()): whatever it
    decided with what it saw then, it has done (Runtime API commands run inside the tick), so a check that
    it did nothing proves something; a sleep as long proves nothing on a machine too loaded to tick."""

    def last_tick() -> tuple[float, int]:
        status = daemon.controller_status(running.topology)
        age, ticks = status["last_tick_age_s"], status["ticks"]
        return (time.time() - age if age is not None else 0.0), int(ticks or 0)

    time.sleep(max(0.0, moment - time.time()))  # no tick can end after the moment before it comes
    wait_until(lambda: last_tick()[0] >= moment, "a tick ended after the moment")
    ended = last_tick()[1]  # that tick may have begun before the moment: the next one did not
    wait_until(lambda: last_tick()[1] > ended, "a tick begun after the moment ended")


def test_web2_set_to_maint_on_the_stats_page_stays_maint_and_web2bck_serves(controlled):
    """A person puts web2 in MAINT from the stats GUI: web2bck takes over without a failed request, and
    web2 stays in MAINT well past the hold time; the journal says a person did it."""
    with load_for(controlled, open_loop=True) as load:
        warm_up(load, controlled)
        stats_action(controlled, "web2", "maint")
        assert admin(controlled)["web2"][0] is AdminState.MAINT, "the stats page did not take the action"
        wait_until(
            lambda: served(load, "web2bck") > 0,
            "web2bck answers clients",
            explain=lambda: diagnose(controlled),
        )
        ticked_past(controlled, time.time() + controlled.topology.standby.hold_s + 1.5)
        assert admin(controlled)["web2"][0] is AdminState.MAINT, "the controller overruled a person"
        result = finish(load)
    assert_no_failures(result)
    operator = events_of(controlled, "operator")
    assert [(e["node"], e["to"]) for e in operator] == [("web2", "maint")]


def test_relevo_stop_of_a_primary_under_load_fails_no_request(controlled):
    """`relevo stop web1` under open-loop load: web1 drained, web1bck in service, web1 stopped, and no
    client request fails; `relevo start web1` then gives it its traffic back."""
    topology = controlled.topology
    with load_for(controlled, open_loop=True) as load:
        warm_up(load, controlled)
        stop_node(topology, "web1")
        assert controlled.cluster.status("web1") is NodeState.STOPPED
        assert in_service(controlled, "web1bck")
        ticked_past(controlled, time.time() + controlled.topology.standby.hold_s + 1.0)
        assert controlled.cluster.status("web1") is NodeState.STOPPED, "restarted behind the person's back"
        result = finish(load)
    assert_no_failures(result)
    start_node(topology, "web1")
    wait_until(
        lambda: controlled.cluster.status("web1bck") is NodeState.STOPPED and in_service(controlled, "web1"),
        "web1 serves again and web1bck is stopped",
        timeout_s=topology.standby.hold_s + 20,
        explain=lambda: diagnose(controlled),
    )


# --- edits reach the running controller -------------------------------------------------------------------
def test_edited_hold_is_applied_by_relevo_up(cluster_dir):
    """`standby.hold` edited and `relevo up` run again: the running controller (same pid) applies the
    new hold, and `up` says what changed."""
    path = make_topology_file(cluster_dir, "standby: {hold: 3s}")
    running = start_cluster(path, controller=True)
    try:
        pid = daemon.controller_status(running.topology)["pid"]
        wait_until(lambda: daemon.controller_status(running.topology)["ticking"], "the controller ticks")
        path.write_text(path.read_text().replace("hold: 3s", "hold: 1500ms"))
        edited = load_topology(path)
        result = lifecycle.up(edited)
        assert result.controller_changes == ("reloaded: standby.hold 3.0 -> 1.5",)
        assert daemon.controller_status(edited)["pid"] == pid
        reloads = [e for e in read_events(running.cluster.paths.events) if e["to"] == "reloaded"]
        assert reloads and "standby.hold 3.0 -> 1.5" in str(reloads[-1]["reason"])
        # The new hold is the one in force: a failback now comes 1.5 s after web1 is healthy again.
        running.cluster.fault("web1", Fault.CRASH)
        wait_until(lambda: running.health().get("web1bck") == "UP", "web1bck serves")
        running.cluster.start("web1")
        wait_until(lambda: events_of(running, "failback"), "the failback", timeout_s=20)
        (failback,) = events_of(running, "failback")
        assert "healthy for 1.5 s" in str(failback["reason"])
    finally:
        daemon.stop_background(running.topology)
        stop_cluster(running)


# --- signals ------------------------------------------------------------------------------------------------
def test_sigterm_at_random_moments_always_stops_the_controller(running_cluster):
    """`relevo watch` sent SIGTERM at 16 random moments of its life, half during its start-up (0 to 1 s
    after its start), half in its loop (0 to 0.5 s after it journals that it runs: mid-tick or asleep):
    each time it ends by itself, and once in its loop it journals that it stopped and exits 0. (How fast
    it stops is a figure, not asserted here: the loop looks at the request every sleep slice.)"""
    import random

    source = running_cluster.topology.source
    assert source is not None
    journal = running_cluster.cluster.paths.events

    def controller_events() -> list[tuple[object, object]]:
        return [(e["to"], e["reason"]) for e in read_events(journal) if e["kind"] == "controller"]

    def journals_running(pid: int) -> bool:
        return ("running", pid) in ((to, started_by(why)) for to, why in controller_events())

    def started_by(reason: object) -> int | None:
        words = str(reason).split(",")[0].split()  # "pid 123, tick 1 s"
        return int(words[1]) if len(words) == 2 and words[0] == "pid" else None

    rng = random.Random(7)  # noqa: S311 - reproducible moments, not secrets
    for attempt in range(16):
        in_loop = attempt % 2 == 1
        child = subprocess.Popen(
            [sys.executable, "-m", "relevo", "-f", str(source), "watch"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            if in_loop:
                wait_until(functools.partial(journals_running, child.pid), f"attempt {attempt}: it runs")
            time.sleep(rng.uniform(0.0, 0.5 if in_loop else 1.0))
            child.send_signal(signal.SIGTERM)
            code = child.wait(timeout=60)  # a bound against a hang only
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        # -SIGTERM: the signal came before the handlers were set (still importing or starting up).
        assert code in (0, -signal.SIGTERM), f"attempt {attempt}: exit status {code}"
        if in_loop or code == 0:
            assert code == 0, f"attempt {attempt}: killed by SIGTERM in its loop"
            (to, why), last = controller_events()[-2:]
            assert (to, started_by(why)) == ("running", child.pid), (attempt, to, why)
            assert last == ("stopped", "asked to stop"), (attempt, last)

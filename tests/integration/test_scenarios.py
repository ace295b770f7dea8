"""`relevo scenarios` against real HAProxy and Apache: the seed's five, the single faults, kill-both with
warm standbys, a user's scenario file, thresholds. A short plan (50 threads x 20 loops for the seed's
five; an open loop at 500 req/s for the fault scenarios) keeps the tier fast; the seed's full experiment
is `benchmarks/seed_experiment.py`."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from relevo import lock
from relevo.cluster import Cluster
from relevo.providers.base import NodeState
from relevo.scenarios.faults import apply_fault, fault_lock
from relevo.scenarios.model import Action, FaultStep, Setup
from relevo.scenarios.prepare import prepare

from .conftest import RunningCluster, cluster_in_short_dir, make_topology_file, start_cluster, stop_cluster

pytestmark = pytest.mark.integration

SEED_FIVE = "no-servers,one-server,two-servers,two-plus-one-standby,two-plus-two-standbys"
SINGLE_FAULTS = (
    "kill-web1",
    "hang-web2",
    "hang-web2-workers",
    "flap-web1",
    "recover-web1",
    "maintenance-web1",
    "reload-balancer",
)
SHORT_CLOSED = ("-c", "50", "-n", "20")
# Every fault of the built-in timelines happens by 5 s; with a 1 s hold the failbacks are done by then too.
SHORT_OPEN = ("--rate", "500", "--duration", "5.5s")


def scenarios(running: RunningCluster, *args: str) -> subprocess.CompletedProcess[str]:
    """`relevo -f FILE scenarios ARGS` as a user runs it; bounded in time."""
    topology = running.topology.source
    assert topology is not None
    return subprocess.run(
        [sys.executable, "-m", "relevo", "-f", str(topology), "scenarios", *args],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def results(running: RunningCluster, *args: str) -> dict[str, Any]:
    done = scenarios(running, "--json", "--no-report", *args)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def cluster() -> Iterator[RunningCluster]:
    """The seed's layout with the failover controller, shared by this module's tests. Shorter than the
    defaults, to keep the runs short: a 1 s hold before a failback, and 0.5 s probe and check timeouts, so
    that a hung node is declared down `fall` x 0.5 s after its hang (1 s; 2 s with the defaults, which
    left the 5.5 s runs ~1 s between the failover of a hang at 2 s and their end: too little on a busy
    machine, where once no failover happened before the end)."""
    with cluster_in_short_dir() as running:
        yield running


def test_the_seeds_five_give_the_expected_errors_and_servers(cluster):
    """no-servers: every request fails with the custom 503 page; one and two servers: no error; the
    standbys in rotation answer their share."""
    data = results(cluster, "--only", SEED_FIVE, *SHORT_CLOSED)
    assert list(data) == SEED_FIVE.split(",")
    none = data["no-servers"]
    assert none["samples"] == 1000
    assert none["error_pct"] == 100.0
    assert none["codes"] == {"503": 1000}
    page = cluster.cluster.paths.error_page_503.read_bytes()
    body = page.split(b"\r\n\r\n", 1)[1]
    assert none["avg_bytes"] >= len(body), "the answers are HAProxy's custom page"
    assert none["seed"]["error_pct"] == 100.0
    for name in ("one-server", "two-servers", "two-plus-one-standby", "two-plus-two-standbys"):
        assert data[name]["errors"] == 0, (name, data[name]["errors_by_kind"])
        assert data[name]["samples"] == 1000
        assert data[name]["passed"], data[name]["verdicts"]
    assert set(data["one-server"]["served_by"]) == {"web1"}
    assert set(data["two-servers"]["served_by"]) == {"web1", "web2"}
    assert set(data["two-plus-one-standby"]["served_by"]) == {"web1", "web2", "web1bck"}
    assert set(data["two-plus-two-standbys"]["served_by"]) == {"web1", "web2", "web1bck", "web2bck"}
    assert min(data["two-plus-two-standbys"]["served_by"].values()) >= 200


def test_each_single_fault_loses_no_request_and_shows_its_events(cluster):
    """Kill, hang (whole node or only Apache's workers), flap, recover, maintenance and reload under an
    open-loop load: 0 failed requests each, every planned request accounted for (samples + dropped +
    unfinished = 2,750), the fault and the controller's answer on the timeline."""
    data = results(cluster, "--only", ",".join(SINGLE_FAULTS), *SHORT_OPEN)
    for name in SINGLE_FAULTS:
        run = data[name]
        assert run["samples"] >= 2000, name
        accounted = run["samples"] + run["dropped"] + run["unfinished"]
        assert accounted == run["planned"] == 2750, (name, run["samples"], run["dropped"], run["unfinished"])
        assert run["errors"] == 0, (name, run["errors_by_kind"], run["markers"])
        faults = [m for m in run["markers"] if m["source"] == "fault"]
        assert len(faults) == len(run["scenario"]["faults"]), (name, run["markers"])
        assert run["passed"], (name, run["verdicts"])
        assert run["steady_state"]["before"]["ok"] and run["steady_state"]["after"]["ok"], name
    for name, standby in (
        ("kill-web1", "web1bck"),
        ("hang-web2", "web2bck"),
        ("hang-web2-workers", "web2bck"),
    ):
        kinds = [m["kind"] for m in data[name]["markers"] if m["source"] == "controller"]
        assert "failover" in kinds, (name, data[name]["markers"])
        assert data[name]["failovers"][0]["standby"] == standby
        assert data[name]["failovers"][0]["until_served_s"] is not None
        assert data[name]["served_by"].get(standby, 0) > 0
    recover = [m["kind"] for m in data["recover-web1"]["markers"]]
    assert "failback" in recover and "drained" in recover, data["recover-web1"]["markers"]


def test_thresholds_exit_1_when_broken_and_0_when_met(cluster):
    """--max-error-pct broken (no-servers fails every request) exits 1 and says so; met, exit 0."""
    broken = scenarios(cluster, "--only", "no-servers", "--no-report", "--max-error-pct", "50", *SHORT_CLOSED)
    assert broken.returncode == 1, broken.stderr
    assert "threshold: error % <= 50" in broken.stdout
    met = scenarios(
        cluster,
        "--only",
        "two-servers",
        "--max-error-pct",
        "0",
        "--max-p99",
        "5s",
        "--report",
        str(cluster.workdir / "report"),
        *SHORT_CLOSED,
    )
    assert met.returncode == 0, met.stdout + met.stderr
    assert (cluster.workdir / "report" / "report.html").exists()
    saved = json.loads((cluster.workdir / "report" / "results.json").read_text())
    assert saved["two-servers"]["errors"] == 0


def test_a_user_scenario_file_runs_and_a_broken_one_is_refused_with_its_line(cluster, tmp_path):
    """A user's timeline runs as written; a syntax error gives exit 2 with file:line and runs nothing."""
    good = tmp_path / "mine.yaml"
    good.write_text(
        "scenarios:\n"
        "  pause-web1:\n"
        "    load: {rate: 400, duration: 4s}\n"
        "    faults:\n"
        "      - {at: 1s, hang: web1}\n"
        "      - {at: 1.2s, resume: web1}\n"
        "    expect: {max_failed: 0}\n"
    )
    data = results(cluster, "--scenario-file", str(good))
    assert list(data) == ["pause-web1"]
    assert [m["label"] for m in data["pause-web1"]["markers"] if m["source"] == "fault"] == [
        "hang web1",
        "resume web1",
    ]
    bad = tmp_path / "bad.yaml"
    bad.write_text("scenarios:\n  oops:\n    faults:\n      - {at: 1s, kill: web1\n")
    refused = scenarios(cluster, "--scenario-file", str(bad))
    assert refused.returncode == 2
    assert f"{bad}:5:" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_cluster_that_does_not_return_to_its_steady_state_fails_with_what_differs(cluster, tmp_path):
    """With the controller off nobody restarts a killed balancer: the steady state held before the load,
    the check after the faults fails within its bound and says the frontend does not answer; exit 1, and
    `--json` carries both checks."""
    lost = tmp_path / "lost.yaml"
    lost.write_text(
        "scenarios:\n"
        "  lose-ha1:\n"
        "    setup: {controller: false}\n"
        "    load: {rate: 200, duration: 2s}\n"
        "    faults:\n"
        "      - {at: 1s, kill: ha1}\n"
    )
    done = scenarios(cluster, "--json", "--no-report", "--scenario-file", str(lost))
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    run = json.loads(done.stdout)["lose-ha1"]
    before, after = run["steady_state"]["before"], run["steady_state"]["after"]
    assert before["ok"] and before["differences"] == []
    assert not after["ok"] and after["took_s"] >= after["within_s"]
    assert any(d.startswith("the frontend answered nothing") for d in after["differences"]), after
    assert run["status"] == "failed"
    assert {v["what"]: v["ok"] for v in run["verdicts"]}[
        f"steady state after the faults healed (within {after['within_s']:g} s)"
    ] is False


def in_thread(work: Callable[[], None]) -> tuple[threading.Thread, list[BaseException]]:
    """`work` started in a thread; what it raised is collected in the list."""
    raised: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, raised


def test_preparation_and_faults_wait_for_the_cluster_lock(cluster):
    """While another writer (`relevo up`, `start`, `stop`) holds the cluster lock, a scenario's setting up
    of the nodes and its faults wait: nothing is stopped or killed until the lock is released."""
    nodes = Cluster(cluster.topology)
    try:
        with lock.cluster_lock(nodes.paths, what="the test, as another writer"):
            thread, raised = in_thread(lambda: prepare(nodes, Setup(running=("web1",), controller=False)))
            thread.join(1.0)
            assert thread.is_alive(), "the preparation did not wait for the lock"
            assert nodes.status("web2") is NodeState.RUNNING
        thread.join(60)
        assert not thread.is_alive() and not raised, raised
        assert nodes.status("web2") is not NodeState.RUNNING, "the preparation stopped web2 once it could"

        kill = FaultStep(at_s=0.0, action=Action.KILL, node="web1")

        def inject() -> None:
            with fault_lock(nodes, kill):
                apply_fault(nodes, kill)

        with lock.cluster_lock(nodes.paths, what="the test, as another writer"):
            thread, raised = in_thread(inject)
            thread.join(1.0)
            assert thread.is_alive(), "the fault did not wait for the lock"
            assert nodes.status("web1") is NodeState.RUNNING
        thread.join(60)
        assert not thread.is_alive() and not raised, raised
        assert nodes.status("web1") is not NodeState.RUNNING, "the fault was done once the lock was free"
    finally:
        prepare(nodes, Setup())  # as the module's other tests expect it: the topology's nodes, controlled


def test_kill_both_with_warm_standbys_loses_nothing(cluster_dir):
    """Both primaries killed at once with warm standbys: HAProxy marks each primary down on its first
    refused connect and retries on the standbys' `backup` lines until the controller puts them in service:
    0 failed."""
    running = start_cluster(
        make_topology_file(cluster_dir, "standby: {temperature: warm}\n"), controller=True
    )
    try:
        data = results(running, "--only", "kill-both", "--rate", "500", "--duration", "3s")
    finally:
        stop_cluster(running)
    run = data["kill-both"]
    assert run["errors"] == 0, (run["errors_by_kind"], run["markers"])
    assert {f["standby"] for f in run["failovers"]} == {"web1bck", "web2bck"}
    assert "warm" in run["scenario"]["description"]

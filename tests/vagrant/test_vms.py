"""The seed's five VMs for real: `relevo export vagrant` → `vagrant up` (vagrant-libvirt, QEMU emulation)
→ the balancer VM's address alternates web1/web2, its stats GUI needs the credentials, web1's container
stopped → the controller on the balancer's VM starts web1bck's container on its own VM with no failed
request, web1 back → web1bck drained and stopped; `relevo scenarios` kill-web1, hang-web2-workers,
reload-balancer on the balancer's VM meet what they expect (their steady state checked before and
after each); `vagrant destroy -f` leaves no VM, network or volume.

The tests run in file order on one cluster (a module fixture); the last one destroys it."""

from __future__ import annotations

import base64
import http.client
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from relevo.paths import StatePaths
from relevo.render.haproxy import GUEST_ACCOUNT
from relevo.secrets import load_or_create_secrets
from relevo.topology import default_text
from tests.accounts import parent_and_worker_accounts, ps_argv
from tests.vagrant.conftest import POOL, Box, Networks, virsh

pytestmark = [pytest.mark.vagrant, pytest.mark.timeout(40 * 60)]

UP_TIMEOUT_S = 30 * 60.0
SERVE_WAIT_S = 300.0  # after `vagrant up`: the controller and the containers settle
FAILOVER_WAIT_S = 180.0
FAILBACK_WAIT_S = 240.0
REQUEST_TIMEOUT_S = 10.0
LOAD_MAX_REQUESTS = 20_000
LOAD_MAX_S = 600.0
VM_TOPOLOGY = "/var/lib/relevo-controller/relevo.yaml"
WATCH_UNIT = "relevo-watch-relevo.service"
# `relevo scenarios` on the balancer's VM: a rate one emulated CPU carries beside HAProxy. The VMs run the
# faults that reach into a node through the provider (a kill, hung workers, a reload) in 90 s runs, the
# fault 2 s in: long enough for the emulated substrate's failover to show in the load. Measured after hung
# workers, from the death seen to the standby serving: 41 s (host load 15-20, 2026-12-07), 53 s in another
# run, 52 s with the host otherwise idle but its five VMs sharing two cores (17:53 the same day: detection
# 12 s, the cold standby container's start 41 s; the 60 s run ended first and failed). recover-web1 is
# not run here: its failback needs two container starts in a row on the VMs, and on 2026-12-07 (load
# 15-20, a CPU hog beside) its 110 s run had not ended after 15 min, ha1 not answering ssh within 60 s;
# again at 15:04 (host load 15-17, two CPU hogs beside): its failover (38 s) and failback were journalled,
# then ha1 stopped answering ssh for the 8 min left of a 10 min bound, its vCPU at 100 %, its memory
# available 142 of 706 MiB and falling (no swap) a minute before. test_failover_to_web1bck_and_back is its
# failover and failback on the VMs.
SCENARIO_RATE = 20
SCENARIO_DURATION = "90s"
VM_SCENARIOS = ("kill-web1", "hang-web2-workers", "reload-balancer")
SCENARIOS_TIMEOUT_S = 1500.0


@dataclass
class Cluster:
    directory: Path
    state: StatePaths
    address: str
    frontend_port: int
    stats_port: int
    env: dict[str, str]
    timings: dict[str, float] = field(default_factory=dict)

    def vagrant(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["vagrant", *args],
            cwd=self.directory,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def up(self, timeout: float) -> tuple[int, list[str]]:
        """`vagrant up`, its output lines stamped with the seconds since it began (printed at the end, and
        shown when it fails: where the minutes went); its process group killed at the timeout."""
        began = time.monotonic()
        lines = []
        with subprocess.Popen(
            # One VM at a time: five emulated VMs making their containers at once on a 2-core host
            # starved LXD inside them ("write unix …/unix.socket: i/o timeout" in `lxc init`, 19:31 the
            # 7th of December, the host otherwise idle). In file order, ha1 last: it waits for the others.
            ["vagrant", "up", "--provider=libvirt", "--no-parallel"],
            cwd=self.directory,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        ) as process:
            killer = threading.Timer(timeout, os.killpg, (process.pid, signal.SIGKILL))
            killer.start()
            try:
                assert process.stdout is not None
                for line in process.stdout:
                    lines.append(f"{time.monotonic() - began:7.1f} {line.rstrip()}")
                return process.wait(), lines
            finally:
                killer.cancel()

    def on_vm(self, vm: str, command: str, *, check: bool = True) -> str:
        result = self.vagrant("ssh", vm, "-c", command, timeout=180)
        if check:
            assert result.returncode == 0, f"{vm}: {command}: {result.stdout}{result.stderr}"
        return result.stdout.strip()

    def container_state(self, node: str) -> str:
        return self.on_vm(node, f"sudo lxc list '^relevo-{node}$' --format csv -c s")

    def diagnose(self) -> str:
        out = [
            self.on_vm("ha1", "sudo journalctl -u relevo-watch-relevo.service -n 60 --no-pager", check=False),
            self.on_vm(
                "ha1", "sudo relevo -f /var/lib/relevo-controller/relevo.yaml events | tail -30", check=False
            ),
        ]
        return "\n".join(out)


def get(address: str, port: int, path: str = "/", auth: tuple[str, str] | None = None) -> tuple[int, str]:
    """One GET; (status, the X-Served-By header)."""
    connection = http.client.HTTPConnection(address, port, timeout=REQUEST_TIMEOUT_S)
    try:
        headers = {"Connection": "close"}
        if auth is not None:
            headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status, response.getheader("X-Served-By") or ""
    finally:
        connection.close()


def wait_for(what: str, test: Callable[[], bool], timeout_s: float, cluster: Cluster) -> float:
    """Seconds until `test()` held; fails with the controller's journal when it never did."""
    began = time.monotonic()
    while time.monotonic() - began < timeout_s:
        try:
            if test():
                return time.monotonic() - began
        except OSError:
            pass
        time.sleep(1.0)
    pytest.fail(f"{what}: not within {timeout_s:.0f} s\n{cluster.diagnose()}")


class Load:
    """Sequential GETs to the balancer, bounded in count and time, until stopped."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.results: list[tuple[float, int, str]] = []  # (time, status or -1, served by or the error)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        began = time.monotonic()
        while not self.stopped.is_set() and len(self.results) < LOAD_MAX_REQUESTS:
            if time.monotonic() - began > LOAD_MAX_S:
                break
            try:
                status, served = get(self.cluster.address, self.cluster.frontend_port)
            except OSError as exc:
                status, served = -1, f"{type(exc).__name__}: {exc}"
            self.results.append((time.monotonic(), status, served))
            time.sleep(0.05)

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join(timeout=REQUEST_TIMEOUT_S + 5)

    def served_since(self, since: float) -> set[str]:
        return {served for at, status, served in list(self.results) if at >= since and status == 200}

    def failures(self) -> list[tuple[float, int, str]]:
        return [r for r in list(self.results) if r[1] != 200]

    def explain(self, fault_at: float) -> str:
        """Each failed request: when, from the fault (negative: before it), its status or error, and who
        served the requests just before and after it (a 503 while web2 still served says something else
        than one while nothing did)."""
        results = list(self.results)
        lines = [f"{len(self.failures())} of {len(results)} requests failed:"]
        for i, (at, status, what) in enumerate(results):
            if status != 200:
                around = [served for _, _, served in results[max(0, i - 2) : i + 3]]
                lines.append(f"  {at - fault_at:+.2f} s: {status} {what!r}; around it: {around}")
        return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def cluster(box: Box, networks: Networks) -> Iterator[Cluster]:
    """The seed's topology exported for libvirt on the test's networks (no image uploaded: the box carries
    it), brought up with `vagrant up`; destroyed afterwards whatever happened (the last test checks that
    destroy leaves nothing)."""
    work = Path(tempfile.mkdtemp(prefix="relevo-vagrant-"))
    up_log: list[str] = []
    topology_file = work / "relevo.yaml"
    topology_file.write_text(default_text())
    directory = work / networks.prefix  # vagrant-libvirt names the VMs <directory name>_<vm>
    export = subprocess.run(
        [
            sys.executable, "-m", "relevo", "-f", str(topology_file), "export", "vagrant", str(directory),
            "--provider", "libvirt", "--box", box.name, "--memory", "768",
            "--network", str(networks.private), "--container-network", str(networks.containers),
            "--management-network", str(networks.management), "--libvirt-network-prefix", networks.prefix,
        ],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert export.returncode == 0, export.stderr
    env = {
        **os.environ,
        "VAGRANT_DEFAULT_PROVIDER": "libvirt",
        "VAGRANT_CHECKPOINT_DISABLE": "1",
        "LIBVIRT_DEFAULT_URI": "qemu:///system",
    }
    balancer = str(list(networks.private.hosts())[1])
    made = Cluster(
        directory=directory,
        state=StatePaths(work / ".relevo"),
        address=balancer,
        frontend_port=8080,
        stats_port=8404,
        env=env,
    )
    try:
        began = time.monotonic()
        status, up_log = made.up(UP_TIMEOUT_S)
        made.timings["vagrant up"] = time.monotonic() - began
        assert status == 0, "vagrant up failed:\n" + "\n".join(up_log[-150:])
        yield made
    finally:
        made.vagrant("destroy", "-f", timeout=600)
        print("\n".join(["", "vagrant up, seconds since it began:", *up_log]))
        print(f"\nvagrant tier timings: {made.timings}")
        shutil.rmtree(work, ignore_errors=True)


def test_balancer_vm_alternates_web1_and_web2(cluster: Cluster):
    """Through the balancer VM's address, two consecutive GETs are answered by web1 and by web2."""

    def alternates() -> bool:
        answers = [get(cluster.address, cluster.frontend_port) for _ in range(2)]
        return all(status == 200 for status, _ in answers) and {s for _, s in answers} == {"web1", "web2"}

    cluster.timings["serving after up"] = wait_for(
        "web1 and web2 alternating", alternates, SERVE_WAIT_S, cluster
    )


def test_stats_gui_needs_the_credentials(cluster: Cluster):
    """The stats GUI answers from the host with the generated credentials, and refuses without them."""
    secrets = load_or_create_secrets(cluster.state.secrets)
    status, _ = get(
        cluster.address, cluster.stats_port, "/stats", (secrets.stats_user, secrets.stats_password)
    )
    assert status == 200
    status, _ = get(cluster.address, cluster.stats_port, "/stats")
    assert status == 401
    status, _ = get(cluster.address, cluster.stats_port, "/stats", (secrets.stats_user, "wrong"))
    assert status == 401


def test_the_daemons_that_serve_traffic_run_unprivileged_in_the_vms_containers(cluster: Cluster):
    """On the ha1 VM HAProxy's master is root (it reads the 0600 files) and its workers run as the guest
    account; on the web1 VM Apache's parent is root and its workers run as www-data (issue 17's root drop,
    as the lxd tier checks it)."""

    def accounts(node: str, command: str) -> tuple[set[str], set[str]]:
        in_container = ["sudo", "lxc", "exec", f"relevo-{node}", "--", *ps_argv(command)]
        return parent_and_worker_accounts(cluster.on_vm(node, shlex.join(in_container)))

    assert accounts("ha1", "haproxy") == ({"root"}, {GUEST_ACCOUNT[0]})
    assert accounts("web1", "apache2") == ({"root"}, {"www-data"})


def test_failover_to_web1bck_and_back_without_a_failed_request(cluster: Cluster):
    """web1's container stopped → the controller on the balancer's VM starts web1bck's container on its
    own VM through LXD's HTTPS remote and it serves; web1 started again → web1bck drained and stopped;
    a bounded load loop sees no failed request throughout."""
    assert cluster.container_state("web1bck") == "STOPPED"
    with Load(cluster) as load:
        time.sleep(2.0)
        began = time.monotonic()
        cluster.on_vm("web1", "sudo lxc stop --force relevo-web1")
        cluster.timings["failover"] = wait_for(
            "web1bck serving in web1's place",
            lambda: "web1bck" in load.served_since(began),
            FAILOVER_WAIT_S,
            cluster,
        )
        assert cluster.container_state("web1bck") == "RUNNING"
        assert load.failures() == [], load.explain(began) + cluster.diagnose()
        began = time.monotonic()
        cluster.on_vm("web1", "sudo lxc start relevo-web1")
        cluster.timings["failback"] = wait_for(
            "web1 serving again and web1bck stopped",
            lambda: "web1" in load.served_since(began) and cluster.container_state("web1bck") == "STOPPED",
            FAILBACK_WAIT_S,
            cluster,
        )
        time.sleep(2.0)
    assert load.results, "the load loop sent nothing"
    assert load.failures() == [], load.explain(began) + cluster.diagnose()
    assert "web1bck" not in load.served_since(time.monotonic() - 1.5)


def explain_scenarios(stdout: str) -> str:
    """What each scenario of a `scenarios --json` run said: its status, verdicts, failovers and steady
    state (a failed run's raw JSON is mostly its timeline, and its tail hides the scenario that failed)."""
    try:
        data: dict[str, Any] = json.loads(stdout[stdout.index("{") :])
    except ValueError:
        return stdout[-6000:]
    lines = []
    for name, run in data.items():
        lines.append(f"{name}: {run.get('status')}, served by {run.get('served_by')}")
        lines += [f"  verdict: {verdict}" for verdict in run.get("verdicts", [])]
        lines += [f"  failover: {failover}" for failover in run.get("failovers", [])]
        lines.append(f"  steady state: {run.get('steady_state')}")
    return "\n".join(lines)


def run_scenarios(cluster: Cluster, names: tuple[str, ...], duration: str) -> dict[str, Any]:
    """`relevo scenarios --only NAMES` on the balancer's VM; its JSON by scenario, each one passed (no
    failed request, its expectation met, the steady state held before and came back after, none skipped).
    Each scenario's failover and steady-state times go to the tier's timings."""
    command = (
        f"sudo relevo -f {VM_TOPOLOGY} scenarios --only {','.join(names)} "
        f"--rate {SCENARIO_RATE} --duration {duration} --workers 1 --no-report --json"
    )
    began = time.monotonic()
    result = cluster.vagrant("ssh", "ha1", "-c", command, timeout=SCENARIOS_TIMEOUT_S)
    cluster.timings[f"scenarios {','.join(names)}"] = time.monotonic() - began
    assert result.returncode == 0, (
        f"{explain_scenarios(result.stdout)}\n{result.stderr[-3000:]}\n{cluster.diagnose()}\n"
        + cluster.on_vm("ha1", f"sudo relevo -f {VM_TOPOLOGY} events | tail -200", check=False)
    )
    data: dict[str, Any] = json.loads(result.stdout[result.stdout.index("{") :])
    assert list(data) == list(names)
    for name in names:
        run = data[name]
        for failover in run["failovers"]:
            cluster.timings[f"{name}: {failover['standby']} served after"] = failover["until_served_s"]
        cluster.timings[f"{name}: steady after took"] = run["steady_state"]["after"]["took_s"]
        assert run["status"] == "passed", (name, run.get("skipped"), run["verdicts"])
        assert run["errors"] == 0, (name, run["errors_by_kind"])
        steady = run["steady_state"]
        assert steady["before"]["ok"] and steady["after"]["ok"], (name, steady)
    active = cluster.on_vm("ha1", f"sudo systemctl is-active {WATCH_UNIT}", check=False)
    assert active == "active"
    return data


def test_scenarios_kill_hang_workers_and_reload_run_on_the_balancer_vm(cluster: Cluster):
    """`relevo scenarios` on the balancer's VM (its topology: each container behind its VM's LXD remote,
    the controller its systemd unit): kill-web1, hang-web2-workers (through the provider: a command in
    web2's container) and reload-balancer under an open-loop load meet what they expect (no failed request,
    the standby served and its failover journalled, the steady state held before and came back after), none
    skipped, and the controller is its systemd unit again afterwards."""
    data = run_scenarios(cluster, VM_SCENARIOS, SCENARIO_DURATION)
    for name, standby in (("kill-web1", "web1bck"), ("hang-web2-workers", "web2bck")):
        assert data[name]["served_by"].get(standby, 0) > 0, (name, data[name]["served_by"])
        assert data[name]["failovers"][0]["standby"] == standby, (name, data[name]["failovers"])
    reload = [m["kind"] for m in data["reload-balancer"]["markers"] if m["source"] == "fault"]
    assert reload == ["reload"], data["reload-balancer"]["markers"]


def test_destroy_leaves_nothing(cluster: Cluster, networks: Networks):
    """`vagrant destroy -f` removes every VM and every volume it made (the networks go with the test's
    fixture, the cached box stays)."""
    began = time.monotonic()
    result = cluster.vagrant("destroy", "-f", timeout=600)
    cluster.timings["destroy"] = time.monotonic() - began
    assert result.returncode == 0, result.stderr
    domains = virsh("list", "--all", "--name").split()
    assert [d for d in domains if d.startswith(f"{networks.prefix}_")] == []
    volumes = virsh("vol-list", POOL).split()
    assert [v for v in volumes if v.startswith(f"{networks.prefix}_")] == []

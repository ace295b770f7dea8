"""Failover, relevo's way vs the seed's, on the same Apache nodes (a benchmark, not a test).

Each run sends an open-loop load (a fixed arrival rate: a stalled request does not slow the others, so
failures are not hidden) through one approach's HAProxy, SIGKILLs web1, starts it again later, and
measures at the client and around it:

- detection: kill -> the watchdog/controller knows (relevo: its DOWN event; seed: its connect failing)
- HAProxy off web1: kill -> HAProxy stops choosing web1 (DOWN, or put in maint by the controller)
- standby serving: kill -> the first client answer from web1bck
- failed requests: no answer, a broken connection or a status other than 200, counted at the client,
  in the kill phase and in the failback phase (after web1 is started again)

relevo runs once per standby temperature (`--temperatures cold,frozen,warm`), each on its own cluster,
kills interleaved so that every row sees the same machine; the detection source is what heard the death
first (pidfd, LXD events, or the tick's probe), from the journal.

The seed's approach: HAProxy with plain TCP `check` (inter 2 s, fall 3, rise 2), timeouts 5 s/50 s/50 s,
no redispatch, the standbys as ordinary round-robin servers (as in the seed's "backup running" runs;
as `backup` they would never serve while web2 is up), and a watchdog that only sees whether the host
answers (on loopback: a TCP connect, every 10 ms where the seed had no sleep at all) and starts or stops
the standby abruptly.

Then, with `--kill-both N` (default 5), both primaries are killed at once N times per temperature at
`--kill-both-rate` (default 1,000 req/s), each on a fresh cluster (benchmarks/kill_both.py's run), and
the requests lost are counted. Last, issue 22's goals table (benchmarks/goals.py): each row's median
and worst beside the issue's "today" and its goal.

    .venv/bin/python benchmarks/failover.py [--kills 5] [--rate 1000] [--temperatures cold,frozen,warm]
        [--kill-both 5] [--kill-both-rate 1000] [--network 127.250.7.0/24]
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from goals import KILL_BOTH_HEADER, SERVING_HEADER, kill_both_row, serving_row  # benchmarks/
from kill_both import one as kill_both_once
from relevo import lifecycle
from relevo.cluster import Cluster
from relevo.controller import daemon
from relevo.controller.events import read_events
from relevo.controller.haproxy_view import parse_servers_state
from relevo.haproxy.runtime import AdminState, RuntimeAPI
from relevo.loadgen import engine
from relevo.loadgen.plan import simple_plan
from relevo.model import Topology
from relevo.procs import ProcessRecord, stop_group
from relevo.providers.base import Fault, NodeState
from relevo.topology import load_topology

KILL_AT_S, RESTART_AT_S, END_AT_S = 2.0, 10.0, 18.0
SEED_PORT_OFFSET = 10

SEED_CONFIG = """global
    stats socket {socket} mode 600 level admin
defaults
    mode http
    timeout connect 5s
    timeout client 50s
    timeout server 50s
frontend www
    bind {address}:{port}
    default_backend web
backend web
    balance roundrobin
{servers}
"""


@dataclass
class Run:
    approach: str
    source: str  # what heard the death first
    detection_s: float | None
    haproxy_off_s: float | None
    serving_s: float | None
    failed_kill: int
    failed_failback: int
    requests: int


def wait_until(predicate: Callable[[], bool], timeout_s: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


class SeedHAProxy:
    """A second HAProxy, with the seed's settings, in front of the same Apache nodes."""

    def __init__(self, topology: Topology, workdir: Path) -> None:
        self.dir = workdir / "seed"
        self.dir.mkdir()
        self.socket = self.dir / "admin.sock"
        self.address = topology.balancer.frontend.address
        self.port = topology.balancer.frontend.port + SEED_PORT_OFFSET
        servers = "\n".join(f"    server {n.name} {n.address}:{n.port} check" for n in topology.nodes)
        config = self.dir / "haproxy.cfg"
        config.write_text(
            SEED_CONFIG.format(socket=self.socket, address=self.address, port=self.port, servers=servers)
        )
        pid_file = self.dir / "haproxy.pid"
        subprocess.run(["haproxy", "-D", "-f", str(config), "-p", str(pid_file)], check=True, timeout=30)
        wait_until(lambda: pid_file.exists() and pid_file.read_text().strip().isdigit(), 10)
        self.record = ProcessRecord.of(int(pid_file.read_text().strip()))
        self.runtime = RuntimeAPI(self.socket)

    def stop(self) -> None:
        if self.record is not None:
            stop_group(self.record)


class Watchdog(threading.Thread):
    """The seed's v_web: is the host there? If not, start the standby; if it is again, stop it."""

    def __init__(self, cluster: Cluster, topology: Topology) -> None:
        super().__init__(daemon=True)
        self.cluster = cluster
        self.target = (topology.node("web1").address, topology.node("web1").port)
        self.stop_event = threading.Event()
        self.noticed_at: float | None = None

    def run(self) -> None:
        while not self.stop_event.wait(0.01):
            try:
                with socket.create_connection(self.target, timeout=0.5):
                    up = True
            except OSError:
                up = False
            standby = self.cluster.status("web1bck")
            if not up and standby is not NodeState.RUNNING:
                self.noticed_at = self.noticed_at or time.time()
                self.cluster.start("web1bck")
            elif up and standby is NodeState.RUNNING:
                self.cluster.stop("web1bck")


def off_web1(runtime: RuntimeAPI) -> bool:
    """HAProxy no longer chooses web1: DOWN, or in maint."""
    try:
        admin, up = parse_servers_state(runtime.show_servers_state(), "web")["web1"]
    except Exception:  # a busy socket for one poll is no answer
        return False
    return admin is not AdminState.READY or not up


def one_run(
    approach: str,
    cluster: Cluster,
    runtime: RuntimeAPI,
    address: str,
    port: int,
    rate: float,
    detected: Callable[[float], tuple[float | None, str]],
) -> Run:
    off_at: list[float] = []

    def monitor(stop: threading.Event) -> None:
        while not stop.wait(0.01):
            if not off_at and killed_at and off_web1(runtime):
                off_at.append(time.time())

    killed_at = 0.0
    stop = threading.Event()
    watcher = threading.Thread(target=monitor, args=(stop,), daemon=True)
    watcher.start()
    # The open model (a stalled request does not slow the others) on up to 1000 connections, its whole
    # run planned in advance; the engine's handle lets the kill and the restart happen meanwhile.
    plan = simple_plan(
        f"http://{address}:{port}/", threads=1000, rate_rps=rate, duration_s=END_AT_S, timeout_s=10.0
    )
    with engine.start(plan, workers=1) as load:
        time.sleep(KILL_AT_S)
        killed_at, killed_ns = time.time(), time.monotonic_ns()
        cluster.fault("web1", Fault.CRASH)
        time.sleep(max(0.0, RESTART_AT_S - load.elapsed_s()))
        failed_kill = load.progress().failed
        cluster.start("web1")
        result = load.wait(timeout_s=END_AT_S + 15)
    stop.set()
    watcher.join()
    total = result.stats.total()
    seen = total.first_served_ns.get("web1bck")
    detection_s, source = detected(killed_at)
    return Run(
        approach=approach,
        source=source,
        detection_s=detection_s,
        haproxy_off_s=off_at[0] - killed_at if off_at else None,
        serving_s=(seen - killed_ns) / 1e9 if seen and seen > killed_ns else None,
        failed_kill=failed_kill,
        failed_failback=total.errors + total.dropped - failed_kill,
        requests=total.count + total.dropped,
    )


def relevo_detection(topology: Topology) -> Callable[[float], tuple[float | None, str]]:
    def detected(killed_at: float) -> tuple[float | None, str]:
        for event in read_events(topology.state_dir / "events.jsonl", 200):
            if (event["kind"], event["node"], event["to"]) == ("health", "web1", "down") and event[
                "ts"
            ] >= killed_at:
                reason = str(event["reason"])
                source = reason.split("first heard by ")[1].rstrip(")") if "heard by" in reason else "tick"
                return float(event["ts"]) - killed_at, source
        return None, "-"

    return detected


# How each temperature's standby rests once the failback is over.
RESTING = {"cold": NodeState.STOPPED, "frozen": NodeState.PAUSED, "warm": NodeState.RUNNING}


def settle_relevo(cluster: Cluster) -> bool:
    resting = RESTING[str(cluster.topology.standby.temperature)]

    def normal() -> bool:
        states = parse_servers_state(cluster.runtime.show_servers_state(), "web")
        return (
            cluster.status("web1bck") is resting
            and states["web1"] == (AdminState.READY, True)
            and states["web1bck"][0] is AdminState.MAINT
        )

    return wait_until(normal)


def settle_seed(cluster: Cluster, seed: SeedHAProxy) -> bool:
    def normal() -> bool:
        states = parse_servers_state(seed.runtime.show_servers_state(), "web")
        return (
            cluster.status("web1bck") is NodeState.STOPPED and states["web1"][1] and not states["web1bck"][1]
        )

    return wait_until(normal)


def summary(runs: list[Run]) -> None:
    def stats(values: list[float | None], unit: str = "s") -> str:
        known = [v for v in values if v is not None]
        missing = len(values) - len(known)
        if not known:
            return "never"
        text = (
            f"{statistics.median(known):7.3f} / {max(known):7.3f}"
            if unit == "s"
            else (f"{statistics.median(known):7.0f} / {max(known):7.0f}")
        )
        return text + (f" ({missing} never)" if missing else "")

    print(
        f"\n{'':14} {'heard by':>9} {'detection s':>17} {'HAProxy off web1 s':>19} "
        f"{'standby serving s':>19} {'failed: kill phase':>19} {'failback phase':>17}   requests/run"
    )
    print(
        f"{'':14} {'':>9} {'median / worst':>17} {'median / worst':>19} {'median / worst':>19} "
        f"{'median / worst':>19} {'median / worst':>17}"
    )
    medians: dict[str, dict[str, float]] = {}
    for approach in dict.fromkeys(r.approach for r in runs):
        mine = [r for r in runs if r.approach == approach]
        sources = "/".join(sorted({r.source for r in mine}))
        cells = [
            stats([r.detection_s for r in mine]).rjust(17),
            stats([r.haproxy_off_s for r in mine]).rjust(19),
            stats([r.serving_s for r in mine]).rjust(19),
            stats([r.failed_kill for r in mine], "n").rjust(19),
            stats([r.failed_failback for r in mine], "n").rjust(17),
        ]
        requests = statistics.median(r.requests for r in mine)
        print(f"{approach:14} {sources:>9} {' '.join(cells)}   {requests:.0f}")
        medians[approach] = {
            "off": statistics.median([r.haproxy_off_s or 0.0 for r in mine]),
            "serving": statistics.median([r.serving_s for r in mine if r.serving_s] or [float("nan")]),
            "failed": statistics.median([r.failed_kill + r.failed_failback for r in mine]),
        }
    s = medians["seed"]
    for approach, r in medians.items():
        if approach == "seed":
            continue
        print(
            f"seed / {approach} (medians): HAProxy off web1 {s['off'] / r['off']:.1f}x slower, standby "
            f"serving {s['serving'] / r['serving']:.1f}x slower, failed requests {s['failed']:.0f} vs "
            f"{r['failed']:.0f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=5, help="kills per approach (default 5)")
    parser.add_argument("--rate", type=float, default=1000.0, help="requests per second (default 1000)")
    parser.add_argument(
        "--network", default="127.250.7.0/24", help="loopback network of the first cluster (the next ones +1)"
    )
    parser.add_argument("--temperatures", default="cold,frozen,warm", help="relevo's standby temperatures")
    parser.add_argument("--kill-both", type=int, default=5, help="kill-both runs per temperature (default 5)")
    parser.add_argument(
        "--kill-both-rate", type=float, default=1000.0, help="kill-both's req/s (default 1000)"
    )
    args = parser.parse_args()
    temperatures = args.temperatures.split(",")
    if "cold" not in temperatures:
        temperatures.insert(0, "cold")  # the seed's watchdog shares the cold cluster's nodes
    workdir = Path(tempfile.mkdtemp(prefix="relevo-bench-", dir="/tmp"))
    first = ipaddress.ip_network(args.network)
    clusters: dict[str, Cluster] = {}
    seed: SeedHAProxy | None = None
    runs: list[Run] = []
    try:
        for i, temperature in enumerate(temperatures):
            network = ipaddress.ip_network((int(first.network_address) + 256 * i, first.prefixlen))
            path = workdir / temperature / "relevo.yaml"
            path.parent.mkdir()
            path.write_text(
                f"name: bench-{temperature}\nnetwork: {network}\nstandby: {{temperature: {temperature}}}\n"
                "nodes:\n  web1: {role: web}\n  web2: {role: web}\n"
                "  web1bck: {role: standby, standby_for: web1}\n"
                "  web2bck: {role: standby, standby_for: web2}\n"
            )
            topology = load_topology(path)
            clusters[temperature] = Cluster(topology)
            lifecycle.up(topology, controller=False)
        cold = clusters["cold"]
        seed = SeedHAProxy(cold.topology, workdir)
        for i in range(args.kills):
            for temperature, cluster in clusters.items():
                topology = cluster.topology
                frontend = topology.balancer.frontend
                daemon.start_background(topology)
                if not settle_relevo(cluster):
                    raise SystemExit(f"relevo's {temperature} cluster did not settle")
                run = one_run(
                    f"relevo {temperature}",
                    cluster,
                    cluster.runtime,
                    frontend.address,
                    frontend.port,
                    args.rate,
                    relevo_detection(topology),
                )
                settle_relevo(cluster)
                daemon.stop_background(topology)
                print(f"kill {i + 1} relevo {temperature}: {run}", flush=True)
                runs.append(run)
            watchdog = Watchdog(cold, cold.topology)
            watchdog.start()
            if not settle_seed(cold, seed):
                raise SystemExit("the seed's cluster did not settle")
            run = one_run(
                "seed",
                cold,
                seed.runtime,
                seed.address,
                seed.port,
                args.rate,
                lambda killed_at, w=watchdog: (
                    (w.noticed_at - killed_at) if w.noticed_at else None,
                    "watchdog",
                ),
            )
            settle_seed(cold, seed)
            watchdog.stop_event.set()
            watchdog.join()
            print(f"kill {i + 1} seed:   {run}", flush=True)
            runs.append(run)
        summary(runs)
        lost = kill_both(
            temperatures,
            args,
            ipaddress.ip_network((int(first.network_address) + 256 * len(temperatures), 24)),
        )
        goals(runs, lost, args.kill_both_rate)
    finally:
        for cluster in clusters.values():
            daemon.stop_background(cluster.topology)
        if seed is not None:
            seed.stop()
        for cluster in clusters.values():
            lifecycle.down(cluster.topology)
        if os.environ.get("RELEVO_KEEP") is None:
            shutil.rmtree(workdir, ignore_errors=True)


def kill_both(
    temperatures: list[str], args: argparse.Namespace, network: ipaddress.IPv4Network | ipaddress.IPv6Network
) -> dict[str, list[int]]:
    """Failed requests of each kill-both run, per temperature (a fresh cluster each, on `network`)."""
    lost: dict[str, list[int]] = {}
    for i in range(args.kill_both):
        for temperature in temperatures:
            failed, serving, kinds = kill_both_once(
                temperature, "100ms", "roundrobin", "500ms", args.kill_both_rate, str(network)
            )
            lost.setdefault(temperature, []).append(failed)
            print(
                f"kill-both {i + 1} {temperature}: {failed} failed, standby serving {serving:.3f} s {kinds}",
                flush=True,
            )
    return lost


def goals(runs: list[Run], lost: dict[str, list[int]], rate: float) -> None:
    """Issue 22's goals beside this run's figures: standby serving (median / worst) and kill-both."""
    print(f"\n{SERVING_HEADER}")
    for temperature in dict.fromkeys(
        r.approach.removeprefix("relevo ") for r in runs if r.approach != "seed"
    ):
        mine = [r for r in runs if r.approach == f"relevo {temperature}"]
        serving = [r.serving_s for r in mine if r.serving_s is not None]
        if serving:
            failed = sum(r.failed_kill for r in mine)
            print(serving_row("local", temperature, statistics.median(serving), max(serving), failed))
    if lost:
        print(f"\n{KILL_BOTH_HEADER}")
        for temperature, failed_runs in lost.items():
            print(kill_both_row(temperature, rate, failed_runs))


if __name__ == "__main__":
    main()

"""Kill-to-standby-serving time on the LXD provider, beside the local provider's (a benchmark, not a test).

For each provider one cluster of the seed's five nodes is brought up; then, `--kills` times: web1 is
crashed (local: SIGKILL to its process group; LXD: a forced stop of its container) and the clock runs
until a client GET through the balancer's frontend is first answered by web1bck; web1 is started again
and the run waits until web1bck is drained and stopped before the next kill. A prober thread sends one
GET every 5 ms and timestamps each answer; a light open-loop load (`--rate`) runs meanwhile so the
balancer is busy as in the tests, and its failed requests are counted.

Network path measured: the client on this host → the balancer's frontend on loopback (local: HAProxy's
own listener; LXD: the container's proxy device, forkproxy, into HAProxy in the container) → the web
containers on the bridge relevo created (NAT, routing and firewall off). The controller probes the web
containers on that bridge directly. Nothing leaves the host.

    sudo .venv/bin/python benchmarks/lxd_failover.py [--kills 5] [--rate 200] [--providers local,lxd]
        [--temperatures cold,frozen] [--lxd-subnet 10.213.250.0/24] [--network 127.219.250.0/24]

Each (provider, temperature) gets its own cluster, one after the other; the table gives, per row, the
median and worst of the kills and what heard each death first (pidfd, LXD events, or the tick).

LXD must be running (`sudo scripts/lxd-daemon start`) and the base image built (`relevo image build`).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

from failover_load import open_load, wait_until  # benchmarks/ is the script's directory
from goals import SERVING_HEADER, serving_row
from relevo import lifecycle
from relevo.cluster import Cluster
from relevo.controller.events import read_events
from relevo.controller.haproxy_view import parse_servers_state
from relevo.haproxy.runtime import AdminState
from relevo.model import Topology
from relevo.providers.base import Fault, NodeState
from relevo.topology import load_topology

LXD_SUBNET = "10.213.250.0/24"
LOCAL_NETWORK = "127.219.250.0/24"


class Prober(threading.Thread):
    """GET / every 5 ms through the frontend; remembers when each server first answered after `mark`."""

    def __init__(self, address: str, port: int) -> None:
        super().__init__(daemon=True)
        self.address, self.port = address, port
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.since = 0.0
        self.first: dict[str, float] = {}

    def mark(self) -> float:
        with self.lock:
            self.since = time.monotonic()
            self.first = {}
            return self.since

    def first_answer(self, server: str) -> float | None:
        with self.lock:
            return self.first.get(server)

    def run(self) -> None:
        while not self.stopping.is_set():
            sent = time.monotonic()
            conn = http.client.HTTPConnection(self.address, self.port, timeout=2)
            with contextlib.suppress(OSError, http.client.HTTPException):
                conn.request("GET", "/")
                reply = conn.getresponse()
                reply.read()
                server = reply.getheader("X-Served-By") or ""
                with self.lock:
                    if sent >= self.since and server not in self.first:
                        self.first[server] = time.monotonic()
            conn.close()
            time.sleep(0.005)


# How each temperature's standby rests once the failback is over.
RESTING = {"cold": NodeState.STOPPED, "frozen": NodeState.PAUSED, "warm": NodeState.RUNNING}


def topology_for(
    provider: str, temperature: str, workdir: Path, image: str | None, lxd_subnet: str, network: str
) -> Topology:
    text = f"name: bench-{provider}\nprovider: {provider}\nstandby: {{temperature: {temperature}}}\n"
    if provider == "lxd":
        text += f"network: {lxd_subnet}\n" + (f"providers:\n  lxd: {{image: '{image}'}}\n" if image else "")
    else:
        text += f"network: {network}\n"
    (workdir / "relevo.yaml").write_text(text)
    return load_topology(workdir / "relevo.yaml")


def rested(cluster: Cluster, resting: NodeState) -> bool:
    """The pair is back to normal: web1 in service, web1bck in maint and resting (stopped, frozen...)."""
    try:
        states = parse_servers_state(cluster.runtime.show_servers_state(), "web")
    except Exception:  # a busy socket for one poll is no answer
        return False
    return (
        states.get("web1") == (AdminState.READY, True)
        and states.get("web1bck", (None, False))[0] is AdminState.MAINT
        and cluster.status("web1bck") is resting
    )


def heard_by(topology: Topology, since: float) -> str:
    """What heard web1's death first, from the journal: pidfd, lxd-events, or the tick's own probes."""
    for event in read_events(topology.state_dir / "events.jsonl", 300):
        if (event["kind"], event["node"], event["to"]) == ("health", "web1", "down") and event["ts"] >= since:
            reason = str(event["reason"])
            return reason.split("first heard by ")[1].rstrip(")") if "heard by" in reason else "tick"
    return "-"


def measure(provider: str, temperature: str, args: argparse.Namespace) -> tuple[list[float], int, set[str]]:
    """Seconds from each crash of web1 to web1bck's first answer, the failed requests meanwhile, and
    what heard the deaths."""
    times: list[float] = []
    sources: set[str] = set()
    failed = 0
    rate, kills = args.rate, args.kills
    with tempfile.TemporaryDirectory(prefix=f"relevo-bench-{provider}-") as tmp:
        topology = topology_for(provider, temperature, Path(tmp), args.image, args.lxd_subnet, args.network)
        resting = RESTING[temperature]
        cluster = Cluster(topology)
        frontend = topology.balancer.frontend
        try:
            lifecycle.up(topology)
            prober = Prober(frontend.address, frontend.port)
            prober.start()
            with open_load(frontend.url + "/", rate, 600) as load:
                for run in range(kills):
                    if not wait_until(lambda: rested(cluster, resting), 120):
                        raise SystemExit(f"{provider}: web1bck is not {resting} before kill {run + 1}")
                    crashed_wall = time.time()
                    crashed = prober.mark()
                    cluster.fault("web1", Fault.CRASH)
                    if not wait_until(lambda: prober.first_answer("web1bck") is not None):
                        raise SystemExit(f"{provider}: web1bck never answered after kill {run + 1}")
                    answered = prober.first_answer("web1bck")
                    assert answered is not None
                    times.append(answered - crashed)
                    source = heard_by(topology, crashed_wall)
                    sources.add(source)
                    print(
                        f"  {provider} {temperature} kill {run + 1}: web1bck serving after "
                        f"{times[-1]:.3f} s (heard by {source})",
                        flush=True,
                    )
                    lifecycle.locked_start(cluster, "web1")
                    if not wait_until(lambda: rested(cluster, resting), 120):
                        raise SystemExit(f"{provider}: no failback after kill {run + 1}")
                load.stop()
                result = load.wait(timeout_s=20)
            failed = result.stats.total().errors
            prober.stopping.set()
            prober.join(5)
        finally:
            if provider == "lxd":
                lifecycle.destroy(topology)
            else:
                lifecycle.down(topology)
    return times, failed, sources


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--providers", default="local,lxd")
    parser.add_argument("--image", default=None, help="LXD image alias (default: relevo/bookworm)")
    parser.add_argument("--temperatures", default="cold,frozen")
    parser.add_argument("--lxd-subnet", default=LXD_SUBNET)
    parser.add_argument("--network", default=LOCAL_NETWORK, help="the local provider's loopback network")
    args = parser.parse_args()
    if os.geteuid() != 0 and "lxd" in args.providers:
        raise SystemExit("the LXD provider needs root (or the lxd group) to reach the daemon")
    rows = []
    for provider in args.providers.split(","):
        for temperature in args.temperatures.split(","):
            times, failed, sources = measure(provider, temperature, args)
            heard = "/".join(sorted(sources))
            rows.append(
                (provider, temperature, heard, statistics.median(times), max(times), len(times), failed)
            )
    print(f"\nkill web1 -> web1bck serving ({args.kills} runs, open loop {args.rate:g} req/s meanwhile)")
    header = f"{'provider':<9}{'standby':<8}{'heard by':>12}{'median s':>10}{'worst s':>10}"
    print(f"{header}{'runs':>6}{'failed':>8}")
    for provider, temperature, heard, median, worst, runs, failed in rows:
        print(f"{provider:<9}{temperature:<8}{heard:>12}{median:>10.3f}{worst:>10.3f}{runs:>6}{failed:>8}")
    print(f"\nissue 22's goals\n{SERVING_HEADER}")
    for provider, temperature, _, median, worst, _, failed in rows:
        print(serving_row(provider, temperature, median, worst, failed))


if __name__ == "__main__":
    main()

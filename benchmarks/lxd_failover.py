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

from relevo import lifecycle
from relevo.cluster import Cluster
from relevo.loadgen import engine
from relevo.loadgen.plan import simple_plan
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


def wait_until(predicate, timeout_s: float = 60.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def topology_for(provider: str, workdir: Path, image: str | None) -> Topology:
    text = f"name: bench-{provider}\nprovider: {provider}\n"
    if provider == "lxd":
        text += f"network: {LXD_SUBNET}\n" + (f"providers:\n  lxd: {{image: '{image}'}}\n" if image else "")
    else:
        text += f"network: {LOCAL_NETWORK}\n"
    (workdir / "relevo.yaml").write_text(text)
    return load_topology(workdir / "relevo.yaml")


def measure(provider: str, kills: int, rate: float, image: str | None) -> tuple[list[float], int]:
    """Seconds from each crash of web1 to web1bck's first answer, and the failed requests meanwhile."""
    times: list[float] = []
    failed = 0
    with tempfile.TemporaryDirectory(prefix=f"relevo-bench-{provider}-") as tmp:
        topology = topology_for(provider, Path(tmp), image)
        cluster = Cluster(topology)
        frontend = topology.balancer.frontend
        try:
            lifecycle.up(topology)
            prober = Prober(frontend.address, frontend.port)
            prober.start()
            plan = simple_plan(frontend.url + "/", threads=200, rate_rps=rate, duration_s=600, timeout_s=10)
            with engine.start(plan, workers=1) as load:
                for run in range(kills):
                    crashed = prober.mark()
                    cluster.fault("web1", Fault.CRASH)
                    if not wait_until(lambda: prober.first_answer("web1bck") is not None):
                        raise SystemExit(f"{provider}: web1bck never answered after kill {run + 1}")
                    answered = prober.first_answer("web1bck")
                    assert answered is not None
                    times.append(answered - crashed)
                    print(f"  {provider} kill {run + 1}: web1bck serving after {times[-1]:.3f} s", flush=True)
                    lifecycle.locked_start(cluster, "web1")
                    if not wait_until(lambda: cluster.status("web1bck") is NodeState.STOPPED, 120):
                        raise SystemExit(f"{provider}: web1bck was not stopped after failback {run + 1}")
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
    return times, failed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--providers", default="local,lxd")
    parser.add_argument("--image", default=None, help="LXD image alias (default: relevo/bookworm)")
    args = parser.parse_args()
    if os.geteuid() != 0 and "lxd" in args.providers:
        raise SystemExit("the LXD provider needs root (or the lxd group) to reach the daemon")
    rows = []
    for provider in args.providers.split(","):
        times, failed = measure(provider, args.kills, args.rate, args.image)
        rows.append((provider, statistics.median(times), max(times), len(times), failed))
    print(f"\nkill web1 -> web1bck serving ({args.kills} runs, open loop {args.rate:g} req/s meanwhile)")
    print(f"{'provider':<10}{'median s':>10}{'worst s':>10}{'runs':>6}{'failed':>8}")
    for provider, median, worst, runs, failed in rows:
        print(f"{provider:<10}{median:>10.3f}{worst:>10.3f}{runs:>6}{failed:>8}")


if __name__ == "__main__":
    main()

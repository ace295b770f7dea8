"""A lost balancer: one HAProxy vs a pair, side by side in one run (a benchmark, not a test).

For each layout (`single`: the seed's one balancer; `pair`: `balancer.peer`) one cluster of the seed's
five web nodes is brought up with its controller; then for each balancer fault, on the first balancer:

- `kill`: its HAProxy SIGKILLed;
- `hang`: its HAProxy SIGSTOPped (alive, answering nothing) until the controller restarts it;
- `lose-host`: the provider's crash of the whole node (local: every process of its group SIGKILLed, which
  is `kill` again; a container would be force-stopped);

an open-loop load of `--rate` req/s (new requests whatever the answers, up to 200 connections) runs from
1 s before the fault until the cluster is whole again, and its failed requests are counted; a prober
sends one GET every 5 ms on a new connection, each with its own thread, and the time until the frontend
answers again is the first probe sent after the fault that was answered, minus the fault's time. The
cluster is let settle (both balancers answering) before the next fault.

Local provider only in this version: the LXD pair (keepalived and the VIP) is rendered and checked but not
yet run by the provider, so its figures are not here (see benchmarks/README.md).

    .venv/bin/python benchmarks/balancer_failover.py [--rate 1000] [--runs 1] [--faults kill,hang,lose-host]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
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
from relevo.providers.base import Fault
from relevo.topology import load_topology

NETWORKS = {"single": "127.219.251.0/24", "pair": "127.219.252.0/24"}
FAULTS = {"kill": Fault.CRASH, "hang": Fault.HANG, "lose-host": Fault.CRASH}
PROBE_EVERY_S = 0.005
PROBE_TIMEOUT_S = 2.0
SETTLE_TIMEOUT_S = 30.0


class Prober(threading.Thread):
    """One GET every 5 ms, each on a new connection in a thread of its own (a probe stuck on a hung
    HAProxy does not delay the next); keeps the send time of every answered probe."""

    def __init__(self, address: str, port: int) -> None:
        super().__init__(daemon=True)
        self.address, self.port = address, port
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.answered: list[float] = []

    def probe(self) -> None:
        sent = time.monotonic()
        conn = http.client.HTTPConnection(self.address, self.port, timeout=PROBE_TIMEOUT_S)
        with contextlib.suppress(OSError, http.client.HTTPException):
            conn.request("GET", "/")
            reply = conn.getresponse()
            reply.read()
            if reply.status == 200:
                with self.lock:
                    self.answered.append(sent)
        conn.close()

    def first_after(self, moment: float) -> float | None:
        with self.lock:
            later = [t for t in self.answered if t >= moment]
        return min(later) if later else None

    def run(self) -> None:
        while not self.stopping.is_set():
            threading.Thread(target=self.probe, daemon=True).start()
            time.sleep(PROBE_EVERY_S)


def wait_until(predicate, timeout_s: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def topology_for(layout: str, workdir: Path) -> Topology:
    text = f"name: bench-{layout}\nnetwork: {NETWORKS[layout]}\n"
    if layout == "pair":
        text += "balancer: {name: ha1, peer: ha2}\n"
    (workdir / "relevo.yaml").write_text(text)
    return load_topology(workdir / "relevo.yaml")


def whole(cluster: Cluster) -> bool:
    """Every balancer answers its Runtime API (restarted by the controller after the fault)."""
    return all(cluster.haproxy_servers(b.name) for b in cluster.topology.balancers)


def one_fault(cluster: Cluster, fault: str, rate: float) -> tuple[int, int, float]:
    """Failed requests of the load, the load's requests, and seconds until the frontend answered."""
    frontend = cluster.topology.balancer.frontend
    prober = Prober(frontend.address, frontend.port)
    prober.start()
    plan = simple_plan(frontend.url + "/", threads=200, rate_rps=rate, duration_s=60, timeout_s=10)
    with engine.start(plan, workers=1) as load:
        time.sleep(1.0)
        at = time.monotonic()
        cluster.kill(cluster.topology.balancer.name, FAULTS[fault])
        if not wait_until(lambda: prober.first_after(at) is not None, SETTLE_TIMEOUT_S):
            raise SystemExit(f"the frontend never answered after {fault}")
        answered = prober.first_after(at)
        assert answered is not None
        if not wait_until(lambda: whole(cluster), SETTLE_TIMEOUT_S):
            raise SystemExit(f"the controller did not bring the balancer back after {fault}")
        time.sleep(1.0)
        load.stop()
        result = load.wait(timeout_s=30)
    prober.stopping.set()
    total = result.stats.total()
    return total.errors, total.count, answered - at


def measure(
    layout: str, faults: list[str], runs: int, rate: float
) -> dict[str, list[tuple[int, int, float]]]:
    found: dict[str, list[tuple[int, int, float]]] = {f: [] for f in faults}
    with tempfile.TemporaryDirectory(prefix=f"relevo-bf-{layout}-", dir="/tmp") as tmp:
        topology = topology_for(layout, Path(tmp))
        cluster = Cluster(topology)
        try:
            lifecycle.up(topology)
            for run in range(runs):
                for fault in faults:
                    failed, requests, gap = one_fault(cluster, fault, rate)
                    found[fault].append((failed, requests, gap))
                    print(
                        f"  {layout} {fault} run {run + 1}: {failed} failed of {requests}, "
                        f"frontend answering again after {gap:.3f} s",
                        flush=True,
                    )
        finally:
            lifecycle.down(topology)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--faults", default="kill,hang,lose-host")
    args = parser.parse_args()
    faults = args.faults.split(",")
    unknown = [f for f in faults if f not in FAULTS]
    if unknown:
        raise SystemExit(f"unknown fault(s) {', '.join(unknown)}; known: {', '.join(FAULTS)}")
    results = {layout: measure(layout, faults, args.runs, args.rate) for layout in ("single", "pair")}
    print(f"\nfirst balancer lost, local provider, open loop {args.rate:g} req/s ({args.runs} run(s) each)")
    print(f"{'fault':<11}{'layout':<8}{'failed':>8}{'of':>8}{'answers again s':>17}")
    for fault in faults:
        for layout in ("single", "pair"):
            rows = results[layout][fault]
            failed = statistics.median(r[0] for r in rows)
            requests = statistics.median(r[1] for r in rows)
            gap = statistics.median(r[2] for r in rows)
            print(f"{fault:<11}{layout:<8}{failed:>8g}{requests:>8g}{gap:>17.3f}")


if __name__ == "__main__":
    main()

"""A lost balancer: one HAProxy vs a pair, side by side in one run (a benchmark, not a test).

For each layout (`single`: the seed's one balancer; `pair`: `balancer.peer`) one cluster of the seed's
five web nodes is brought up with its controller; then for each balancer fault, on the first balancer:

- `kill`: its HAProxy SIGKILLed (on LXD inside its container, which lives on);
- `hang`: its HAProxy SIGSTOPped (alive, answering nothing; on LXD its container frozen) until the
  controller restarts it;
- `lose-host`: the provider's crash of the whole node (local: every process of its group SIGKILLed, which
  is `kill` again; LXD: its container force-stopped);

an open-loop load of `--rate` req/s (new requests whatever the answers, up to 200 connections) runs from
1 s before the fault until the cluster is whole again, and its failed requests are counted; a prober
sends one GET every 5 ms on a new connection, each with its own thread, and the time until the frontend
answers again is the longest time after the fault in which no probe's answer came back. The
cluster is let settle (both balancers answering) before the next fault.

On LXD the pair is two balancer containers with keepalived and a VIP on relevo's bridge: the fault goes
to the balancer holding the VIP (with `nopreempt` it stays where the last fault moved it), and the load
and the prober go to the VIP from this host; the single balancer is reached through its proxy device.

    sudo .venv/bin/python benchmarks/balancer_failover.py [--rate 1000] [--runs 1]
        [--faults kill,hang,lose-host] [--providers local,lxd] [--lxd-subnets 10.213.251.0/24,10.213.252.0/24]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import itertools
import statistics
import tempfile
import threading
import time
from pathlib import Path

from failover_load import open_load, wait_until  # benchmarks/ is the script's directory
from relevo import lifecycle
from relevo.cluster import Cluster
from relevo.errors import RelevoError
from relevo.model import Topology
from relevo.providers.base import Fault, HoldsVip
from relevo.topology import load_topology

NETWORKS = {"single": "127.219.251.0/24", "pair": "127.219.252.0/24"}
LXD_SUBNETS = "10.213.251.0/24,10.213.252.0/24"
FAULTS = {
    "local": {"kill": Fault.CRASH, "hang": Fault.HANG, "lose-host": Fault.CRASH},
    "lxd": {"kill": Fault.CRASH_SERVICE, "hang": Fault.HANG, "lose-host": Fault.CRASH},
}
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
        self.arrived: list[float] = []  # when each answer came back

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
                    self.arrived.append(time.monotonic())
        conn.close()

    def first_after(self, moment: float) -> float | None:
        with self.lock:
            later = [t for t in self.answered if t >= moment]
        return min(later) if later else None

    def longest_gap(self, start: float, end: float) -> float:
        """The longest time from `start` to `end` in which no answer came back: how long the frontend
        did not answer. A fault that takes a while to apply (a container's freeze or forced stop) is
        still being applied while probes are answered, so the gap is measured where it is, not from the
        moment the fault was asked for; and a probe whose SYN was retried lands after the gap, not in it."""
        with self.lock:
            times = sorted(t for t in self.arrived if start <= t <= end)
        points = [start, *times]
        return max((b - a for a, b in itertools.pairwise(points)), default=end - start)

    def run(self) -> None:
        while not self.stopping.is_set():
            threading.Thread(target=self.probe, daemon=True).start()
            time.sleep(PROBE_EVERY_S)


def topology_for(provider: str, layout: str, workdir: Path, lxd_subnets: list[str]) -> Topology:
    if provider == "lxd":
        network = lxd_subnets[0 if layout == "single" else 1]
        text = f"name: bench-lxd-{layout}\nprovider: lxd\nnetwork: {network}\n"
    else:
        text = f"name: bench-{layout}\nnetwork: {NETWORKS[layout]}\n"
    if layout == "pair":
        text += "balancer: {name: ha1, peer: ha2}\n"
    (workdir / "relevo.yaml").write_text(text)
    return load_topology(workdir / "relevo.yaml")


def whole(cluster: Cluster) -> bool:
    """Every balancer answers its Runtime API (restarted by the controller after the fault)."""
    return all(cluster.haproxy_servers(b.name) for b in cluster.topology.balancers)


def serving(cluster: Cluster) -> str:
    """The balancer the clients reach: a pair's VIP holder where the provider tells, else the first."""
    first = cluster.topology.balancer.name
    provider = cluster.provider_for(first)
    if isinstance(provider, HoldsVip):
        holder: list[str | None] = []

        def seen() -> str | None:
            holder.append(provider.vip_holder())
            return holder[-1]

        if wait_until(seen, SETTLE_TIMEOUT_S):
            return str(holder[-1])
    return first


def one_fault(cluster: Cluster, provider: str, fault: str, rate: float) -> tuple[int, int, float]:
    """Failed requests of the load, the load's requests, and seconds until the frontend answered."""
    frontend = cluster.topology.balancer.frontend
    target = serving(cluster)
    prober = Prober(frontend.address, frontend.port)
    prober.start()
    with open_load(frontend.url + "/", rate, 60) as load:
        time.sleep(1.0)
        at = time.monotonic()
        try:
            cluster.fault(target, FAULTS[provider][fault])
        except RelevoError as exc:  # the controller healed it while the fault was being applied
            print(f"  ({provider} {fault} on {target}: {exc}; measured all the same)", flush=True)
        if not wait_until(lambda: prober.first_after(at) is not None, SETTLE_TIMEOUT_S):
            raise SystemExit(f"the frontend never answered after {fault}")
        answered = prober.first_after(at)
        assert answered is not None
        if not wait_until(lambda: whole(cluster), SETTLE_TIMEOUT_S):
            raise SystemExit(f"the controller did not bring the balancer back after {fault}")
        time.sleep(1.0)
        gap = prober.longest_gap(at, time.monotonic())
        load.stop()
        result = load.wait(timeout_s=30)
    prober.stopping.set()
    total = result.stats.total()
    return total.errors, total.count, gap


def measure(
    provider: str, layout: str, faults: list[str], args: argparse.Namespace
) -> dict[str, list[tuple[int, int, float]]]:
    found: dict[str, list[tuple[int, int, float]]] = {f: [] for f in faults}
    with tempfile.TemporaryDirectory(prefix=f"relevo-bf-{layout}-", dir="/tmp") as tmp:
        topology = topology_for(provider, layout, Path(tmp), args.lxd_subnets.split(","))
        cluster = Cluster(topology)
        try:
            lifecycle.up(topology)
            for run in range(args.runs):
                for fault in faults:
                    if not wait_until(lambda: whole(cluster), SETTLE_TIMEOUT_S):
                        raise SystemExit(f"{provider} {layout}: a balancer does not answer before {fault}")
                    time.sleep(1.0)
                    failed, requests, gap = one_fault(cluster, provider, fault, args.rate)
                    found[fault].append((failed, requests, gap))
                    print(
                        f"  {provider} {layout} {fault} run {run + 1}: {failed} failed of {requests}, "
                        f"frontend answering again after {gap:.3f} s",
                        flush=True,
                    )
        finally:
            if provider == "lxd":
                lifecycle.destroy(topology)
            else:
                lifecycle.down(topology)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--faults", default="kill,hang,lose-host")
    parser.add_argument("--providers", default="local,lxd")
    parser.add_argument("--lxd-subnets", default=LXD_SUBNETS, help="the single's and the pair's bridges")
    args = parser.parse_args()
    faults = args.faults.split(",")
    unknown = [f for f in faults if f not in FAULTS["local"]]
    if unknown:
        raise SystemExit(f"unknown fault(s) {', '.join(unknown)}; known: {', '.join(FAULTS['local'])}")
    providers = args.providers.split(",")
    results = {
        (provider, layout): measure(provider, layout, faults, args)
        for provider in providers
        for layout in ("single", "pair")
    }
    print(f"\nthe serving balancer lost, open loop {args.rate:g} req/s ({args.runs} run(s) each)")
    print(f"{'provider':<9}{'fault':<11}{'layout':<8}{'failed':>8}{'of':>8}{'answers again s':>17}")
    for provider in providers:
        for fault in faults:
            for layout in ("single", "pair"):
                rows = results[provider, layout][fault]
                failed = statistics.median(r[0] for r in rows)
                requests = statistics.median(r[1] for r in rows)
                gap = statistics.median(r[2] for r in rows)
                print(f"{provider:<9}{fault:<11}{layout:<8}{failed:>8g}{requests:>8g}{gap:>17.3f}")


if __name__ == "__main__":
    main()

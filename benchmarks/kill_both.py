"""kill-both under several configurations: how many requests are lost while no server is in service, and
which settings make that smallest (a benchmark, not a test).

Both primaries are SIGKILLed together under an open-loop load. Cold standbys: until one is started and
in service, HAProxy has nothing to send a request to, and the requests of that window fail. Warm ones are
also HAProxy `backup` lines, which HAProxy switches to by itself once a refused connect has marked each
primary down (`observe layer4`), before the controller acts. This sweeps what could shorten or bridge
it, each on a fresh cluster (`--network`, stopped afterwards): cold, frozen or warm standbys, the controller's
tick (how soon it sees the deaths), HAProxy's balance algorithm and `timeout connect` (its
retry turn-around is min(timeout connect, 1 s), applied only to asynchronous connect errors and, with
roundrobin, only when retrying the same server).

    .venv/bin/python benchmarks/kill_both.py [--rate 1000] [--quick] [--repeat 3] [--network CIDR]
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import sys
import tempfile
from pathlib import Path

from relevo import lifecycle
from relevo.scenarios.catalogue import catalogue
from relevo.scenarios.runner import LoadOverride, run_scenarios
from relevo.topology import load_topology

NETWORK = "127.199.220.0/24"


def one(
    temperature: str, tick: str, balance: str, connect: str, rate: float, network: str = NETWORK
) -> tuple[int, float, str]:
    workdir = Path(tempfile.mkdtemp(prefix="relevo-killboth-", dir="/tmp"))
    path = workdir / "relevo.yaml"
    path.write_text(
        f"name: killboth\nnetwork: {network}\n"
        f"balancer: {{balance: {balance}, timeout_connect: {connect}}}\n"
        f"standby: {{temperature: {temperature}}}\ncontroller: {{tick: {tick}}}\n"
    )
    topology = load_topology(path)
    try:
        lifecycle.up(topology)
        scenario = catalogue(topology)[0]["kill-both"]
        [result] = run_scenarios(topology, [scenario], override=LoadOverride(rate_rps=rate, duration_s=5.0))
    finally:
        lifecycle.down(topology)
        shutil.rmtree(workdir, ignore_errors=True)
    serving = max((f.until_served_s or 0.0 for f in result.failovers), default=0.0)
    kinds = ", ".join(f"{k} {n}" for k, n in result.report.total.errors_by_kind.items())
    return result.failed, serving, kinds


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--quick", action="store_true", help="temperature x tick only")
    parser.add_argument("--repeat", type=int, default=1, help="kill-both runs per configuration")
    parser.add_argument("--network", default=NETWORK, help="loopback network of the clusters")
    args = parser.parse_args()
    balances = ("roundrobin",) if args.quick else ("roundrobin", "leastconn")
    connects = ("500ms",) if args.quick else ("500ms", "100ms")
    print(f"kill-both at {args.rate:g} req/s (open loop): failed requests, slowest standby serving")
    print(f"{'standbys':9}{'tick':>7}{'balance':>12}{'connect':>9}{'failed':>8}{'serving':>9}  errors")
    for temperature, tick, balance, connect in itertools.product(
        ("cold", "frozen", "warm"), ("100ms", "25ms"), balances, connects
    ):
        for _ in range(args.repeat):
            failed, serving, kinds = one(temperature, tick, balance, connect, args.rate, args.network)
            print(f"{temperature:9}{tick:>7}{balance:>12}{connect:>9}{failed:>8}{serving:>8.3f}s  {kinds}")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

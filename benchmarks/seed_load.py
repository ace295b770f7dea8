"""The seed's own load against a default cluster, before and after a change (a benchmark, not a test).

`relevo bench --threads 1000 --loops 50 --ramp-up 1s` (the seed's JMeter plan: 1000 users, 50 requests
each) is run `--runs` times against a default cluster with its failover controller, with the code of a
baseline commit (`--baseline`, by default the last commit before issue 7's controller work) and with
the code of this checkout, the two sides' runs alternating. Each side gets its own cluster on its own
loopback network, built by that side's own `relevo up` from a `relevo.yaml` that only names the
network, so each side runs with its own defaults. Printed per run: errors, throughput, p99, and what
the controller did meanwhile: how many healthy nodes it declared down and how many failovers it made
(a healthy cluster under load needs none).
Then an open-loop run (`--rate`, wrk2's model) at the throughput the closed runs measured, the cluster's
capacity, for `--open-s` seconds: the same counts.

    .venv/bin/python benchmarks/seed_load.py [--runs 3] [--baseline REF] [--only current|baseline]
    .venv/bin/python benchmarks/seed_load.py --temperatures cold,frozen,warm [--network CIDR]

With `--temperatures`, this checkout's code runs once per standby temperature instead (each cluster on
its own network, the next ones +1): a healthy cluster makes no failover whatever its standbys.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# main just before the controller work of issue 7 (per-server maxconn, probe timeouts, overloaded...).
BASELINE_REF = "e121181"
NETWORKS = {"baseline": "127.199.71.0/24", "current": "127.199.72.0/24"}
# With --temperatures, one side per standby temperature (this checkout's code), each on its own network.
TEMPERATURES = ("cold", "frozen", "warm")
BENCH = ["--threads", "1000", "--loops", "50", "--ramp-up", "1s"]


@dataclass
class Run:
    side: str
    samples: int
    errors: int
    throughput_rps: float
    p99_ms: float
    downs: int  # health events declaring a node down during the run
    failovers: int
    overloaded: int  # `overloaded` events: slow but answering, journalled without acting


def export_source(ref: str, into: Path) -> Path:
    """The `src/` tree of `ref`, extracted with `git archive` (the checkout itself is not touched)."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", ref, "src"],
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True, timeout=60)
    return into / "src"


def relevo(src: Path, workdir: Path, *args: str, timeout_s: float = 300) -> str:
    env = dict(os.environ, PYTHONPATH=str(src))
    env.pop("RELEVO_FILE", None)
    done = subprocess.run(
        [sys.executable, "-m", "relevo", *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    if done.returncode not in (0, 1):
        raise RuntimeError(f"relevo {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return done.stdout


def journal(workdir: Path) -> list[dict[str, object]]:
    path = workdir / ".relevo" / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def json_to_stdout(src: Path) -> list[str]:
    """`--json` is a flag (one JSON document on stdout); a baseline from before it took `--json -`."""
    return ["--json"] if (src / "relevo" / "grammar.py").exists() else ["--json", "-"]


def bench(side: str, src: Path, workdir: Path, args: list[str]) -> Run:
    before = len(journal(workdir))
    report = json.loads(relevo(src, workdir, "bench", *args, *json_to_stdout(src), "-q"))
    new = journal(workdir)[before:]
    return Run(
        side=side,
        samples=int(report["samples"]),
        errors=int(report["errors"]),
        throughput_rps=float(report["throughput_rps"]),
        p99_ms=float(report["p99_ms"]),
        downs=sum(1 for e in new if e["kind"] == "health" and e["to"] == "down"),
        failovers=sum(1 for e in new if e["kind"] == "failover"),
        overloaded=sum(1 for e in new if e["kind"] == "overloaded" and e["to"] == "overloaded"),
    )


def measure(
    sides: dict[str, Path], runs: int, open_s: int, networks: dict[str, str] | None = None
) -> dict[str, list[Run]]:
    """Both sides' clusters up at once, their runs alternating, so that the machine's other work (it is
    shared) weighs on both alike."""
    workdirs: dict[str, Path] = {}
    results: dict[str, list[Run]] = {side: [] for side in sides}
    try:
        for side, src in sides.items():
            workdir = Path(tempfile.mkdtemp(prefix=f"relevo-seed-{side}-", dir="/tmp"))
            workdirs[side] = workdir
            network = (networks or NETWORKS)[side]
            standby = f"standby: {{temperature: {side}}}\n" if side in TEMPERATURES else ""
            (workdir / "relevo.yaml").write_text(f"name: seed{side[:4]}\nnetwork: {network}\n{standby}")
            relevo(src, workdir, "up")
        for _ in range(runs):
            for side, src in sides.items():
                results[side].append(bench(side, src, workdirs[side], list(BENCH)))
                print(f"  {side:8} {fmt(results[side][-1])}", flush=True)
        if open_s > 0:
            # The cluster's capacity: what the closed runs measured, on both sides alike.
            rate = statistics.median(r.throughput_rps for runs_ in results.values() for r in runs_)
            args = ["--rate", f"{rate:.0f}", "--duration", f"{open_s}s", "--threads", "1000"]
            for side, src in sides.items():
                opened = bench(side, src, workdirs[side], args)
                print(f"  {side:8} {fmt(opened)}   <- open loop at {rate:.0f} req/s", flush=True)
                results[side].append(opened)
    finally:
        for side, workdir in workdirs.items():
            relevo(sides[side], workdir, "down")
            shutil.rmtree(workdir, ignore_errors=True)
    return results


def fmt(run: Run) -> str:
    return (
        f"{run.samples:>7} {run.errors:>7} {run.throughput_rps:>9.0f} {run.p99_ms:>8.1f}"
        f" {run.downs:>6} {run.failovers:>9} {run.overloaded:>10}"
    )


HEADER = "  side     samples  errors     req/s  p99 ms  downs failovers overloaded"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--baseline", default=BASELINE_REF, help="git ref whose code is 'before'")
    parser.add_argument("--only", choices=("baseline", "current"))
    parser.add_argument("--open-s", type=int, default=10, help="open-loop run at capacity (0: none)")
    parser.add_argument(
        "--temperatures",
        default="",
        help="instead of baseline vs current: this checkout once per standby temperature (cold,frozen,warm)",
    )
    parser.add_argument("--network", default="127.199.73.0/24", help="with --temperatures: the first network")
    args = parser.parse_args()
    if args.temperatures:
        temperatures = [t for t in args.temperatures.split(",") if t in TEMPERATURES]
        first = ipaddress.ip_network(args.network)
        networks = {
            t: str(ipaddress.ip_network((int(first.network_address) + 256 * i, first.prefixlen)))
            for i, t in enumerate(temperatures)
        }
        print(f"relevo bench {' '.join(BENCH)}, {args.runs} runs per standby temperature")
        print(HEADER)
        results = measure(dict.fromkeys(temperatures, REPO / "src"), args.runs, args.open_s, networks)
        summarize(results)
        return
    with tempfile.TemporaryDirectory(prefix="relevo-baseline-") as tmp:
        sides = {"baseline": export_source(args.baseline, Path(tmp)), "current": REPO / "src"}
        if args.only:
            sides = {args.only: sides[args.only]}
        print(f"relevo bench {' '.join(BENCH)}, {args.runs} runs per side (baseline: {args.baseline})")
        print(HEADER)
        results = measure(sides, args.runs, args.open_s)
    summarize(results)


def summarize(results: dict[str, list[Run]]) -> None:
    print("\nall runs: samples, errors, downs, failovers, overloaded summed; req/s and p99 the median")
    print(HEADER)
    for side, runs in results.items():
        median = Run(
            side=side,
            samples=sum(r.samples for r in runs),
            errors=sum(r.errors for r in runs),
            throughput_rps=statistics.median(r.throughput_rps for r in runs),
            p99_ms=statistics.median(r.p99_ms for r in runs),
            downs=sum(r.downs for r in runs),
            failovers=sum(r.failovers for r in runs),
            overloaded=sum(r.overloaded for r in runs),
        )
        print(f"  {side:8} {fmt(median)}")


if __name__ == "__main__":
    main()

"""The seed's whole experiment, as the seed ran it: JMeter's plan (1000 threads, ramp-up 1 s, 50 loops:
50,000 GETs) against no servers, one, two, two + one standby and two + two standbys in rotation, with
relevo's table printed beside the seed's published rows (a benchmark, not a test).

It brings up its own cluster (the seed's layout on 127.199.210.0/24, in a temporary directory), runs
`relevo scenarios` for the seed's five (add fault scenarios with --only), prints the comparison table
and writes the HTML report, then stops everything it started.

    .venv/bin/python benchmarks/seed_experiment.py [--only NAME,...] [--threads 1000] [--loops 50]
                                                   [--report DIR]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from relevo import lifecycle
from relevo.report.comparison import comparison_text
from relevo.report.html import write_report
from relevo.scenarios.catalogue import SEED_FIVE, catalogue
from relevo.scenarios.runner import LoadOverride, run_scenarios
from relevo.topology import load_topology

NETWORK = "127.199.210.0/24"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", default=",".join(SEED_FIVE), help="scenarios to run, in order")
    parser.add_argument("--threads", type=int, default=1000)
    parser.add_argument("--loops", type=int, default=50)
    parser.add_argument("--report", type=Path, default=Path("seed-experiment-report"))
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="relevo-seed-", dir="/tmp"))
    topology_file = workdir / "relevo.yaml"
    topology_file.write_text(f"name: seed\nnetwork: {NETWORK}\n")
    topology = load_topology(topology_file)
    available, _ = catalogue(topology)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    missing = [n for n in names if n not in available]
    if missing:
        print(f"unknown or unavailable scenarios: {', '.join(missing)}", file=sys.stderr)
        return 2
    seed_plan = LoadOverride(threads=args.threads, loops=args.loops, ramp_up_s=1.0)
    began = time.monotonic()
    try:
        lifecycle.up(topology)
        results = []
        for name in names:
            scenario = available[name]
            # The seed's plan for its five; fault scenarios keep their own (open) load.
            override = seed_plan if scenario.seed_row else None
            results += run_scenarios(
                topology, [scenario], override=override, progress=lambda text: print(text, file=sys.stderr)
            )
    finally:
        lifecycle.down(topology)
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"relevo {args.threads} threads x {args.loops} loops, ramp-up 1 s, vs the seed's published runs")
    print(comparison_text(results), end="")
    written = write_report(results, args.report, title="the seed's experiment")
    print(f"report: {written.html}  ({time.monotonic() - began:.0f} s in all)")
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())

"""`relevo scenarios`: the seed's experiment and the failures it never tried, on the running cluster, with
one comparison table, an HTML report and thresholds."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from relevo.cli.bench import Duration
from relevo.cli.common import err_console, file_option, get_topology, say
from relevo.errors import RelevoError
from relevo.model import Topology
from relevo.providers.base import NodeState

REPORT_DIR = "relevo-report"
RESULTS_NAME = "results.json"


class ScenariosFailed(RelevoError):
    """Every scenario ran, but an expectation or a threshold was broken (exit status 1)."""


def _names(text: str | None) -> list[str]:
    return [n.strip() for n in (text or "").split(",") if n.strip()]


def default_report_dir(topology: Topology) -> Path:
    """`relevo-report/` beside the topology file (or in the directory of the state directory)."""
    return topology.state_dir.parent / REPORT_DIR


@click.command("scenarios")
@file_option
@click.option("--only", metavar="NAME,…", help="Run only these scenarios, in this order.")
@click.option(
    "--scenario-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Run the scenarios of this YAML file (a timeline of faults and a load each) instead of the "
    "built-in ones.",
)
@click.option(
    "--list", "list_only", is_flag=True, help="List the scenarios and what each expects; run nothing."
)
@click.option(
    "-c", "--threads", type=click.IntRange(min=1), help="Virtual users (closed) or connections (open)."
)
@click.option("-n", "--loops", type=click.IntRange(min=1), help="Requests per user: the closed model.")
@click.option("-d", "--duration", type=Duration(), help="How long each scenario's load runs.")
@click.option("--ramp-up", type=Duration(), help="Start the users evenly over this time (closed model).")
@click.option(
    "-r", "--rate", type=click.FloatRange(min=0, min_open=True), help="Requests per second: the open model."
)
@click.option(
    "--model",
    type=click.Choice(["open", "closed"]),
    help="Run every scenario in this model (default: the seed's five closed, fault scenarios open).",
)
@click.option("--timeout", type=Duration(), help="Per-request timeout.")
@click.option("-w", "--workers", type=click.IntRange(min=1), help="Load generator worker processes.")
@click.option(
    "--report",
    "report_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help=f"Write the HTML report, PNG charts and results.json here (default: ./{REPORT_DIR}/ beside "
    "the topology file).",
)
@click.option("--no-report", is_flag=True, help="Write no report files.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object keyed by scenario name.")
@click.option(
    "--repeat",
    type=click.IntRange(min=1, max=1000),
    default=1,
    show_default=True,
    help="Run each scenario N times and report the distribution (median, p95, worst) of failed "
    "requests, detection and time until served; --json carries every run.",
)
@click.option(
    "--max-error-pct",
    type=click.FloatRange(min=0, max=100),
    help="Threshold: fail a scenario with more than this % of failed requests.",
)
@click.option("--max-p99", type=Duration(), help="Threshold: fail a scenario whose p99 is above this.")
@click.option(
    "--max-failover",
    type=Duration(),
    help="Threshold: fail a scenario whose standby took longer than this to serve.",
)
@click.pass_context
def scenarios(ctx: click.Context, /, **opts: Any) -> None:
    """Run scenarios on the running cluster and compare them in one table and one HTML report.

    \b
    The seed's experiment (closed loop, 1000 threads x 50 loops, ramp-up
    1 s), each on a freshly reconciled cluster, the controller off:
      no-servers, one-server, two-servers, two-plus-one-standby,
      two-plus-two-standbys (standbys started and in rotation, as in the
      seed's "backup running" runs)
    Failures under load (open loop, 2000 req/s for 8 s, faults from 1.5 s,
    the controller on):
      kill-web1, kill-web1-no-standby, kill-both, hang-web2,
      hang-web2-workers, flap-web1, recover-web1, maintenance-web1,
      reload-balancer, kill-balancer, kill-controller
    Network faults for a span, healed after it and on any exit (local:
    root, iptables and a delaying proxy; skipped with the reason where
    the provider cannot):
      partition-web1, slow-web2, lossy-web1, flap-network-web1

    Every scenario states what it expects (0 failed requests for a single fault, ...); a broken
    expectation or threshold makes the exit status 1. `--list` shows them all.
    """
    from relevo.scenarios.catalogue import catalogue
    from relevo.scenarios.loader import load_scenarios

    topology = get_topology(ctx)
    if opts["scenario_file"] is not None:
        from relevo.cluster import Cluster
        from relevo.scenarios.faults import refuse_unsupported

        available = load_scenarios(opts["scenario_file"], topology)
        refuse_unsupported(Cluster(topology), available.values(), opts["scenario_file"])
        unavailable: dict[str, str] = {}
    else:
        available, unavailable = catalogue(topology)
    chosen = _choose(available, unavailable, _names(opts["only"]))
    if opts["list_only"]:
        _list(chosen, unavailable)
        return
    _check_up(topology)
    chosen = [scenario for scenario in chosen for _ in range(opts["repeat"])]
    results = _run(topology, chosen, opts)
    _output(topology, results, opts)
    broken = [r.scenario.name for r in results if r.status == "failed"]
    if broken:
        raise ScenariosFailed(
            f"{len(broken)} scenario(s) broke an expectation or threshold: {', '.join(broken)}"
        )


def _choose(available: dict[str, Any], unavailable: dict[str, str], only: list[str]) -> list[Any]:
    if not only:
        return list(available.values())
    chosen = []
    for name in only:
        if name in unavailable:
            raise click.BadParameter(f"{name}: {unavailable[name]}", param_hint="'--only'")
        if name not in available:
            known = ", ".join(available)
            raise click.BadParameter(f"no scenario named {name!r}; known: {known}", param_hint="'--only'")
        chosen.append(available[name])
    return chosen


def _list(chosen: list[Any], unavailable: dict[str, str]) -> None:
    from relevo.report.html import describe_setup

    for scenario in chosen:
        lines = [
            f"{scenario.name}: {scenario.description}",
            f"  load: {scenario.load.describe()}",
            f"  setup: {describe_setup(scenario)}",
        ]
        if scenario.faults:
            lines.append("  faults: " + ", ".join(_fault_text(f) for f in scenario.faults))
        lines.append(f"  expects: {scenario.expect.describe()}")
        for text in lines:
            click.echo(_fold(text))
    for name, why in unavailable.items():
        click.echo(_fold(f"{name}: not available: {why}"))


def _fault_text(fault: Any) -> str:
    after = f" (once the controller's {fault.after} is journalled)" if fault.after else ""
    return f"{fault.at_s:g}s {fault.label}{after}"


def _fold(text: str, width: int = 80) -> str:
    """Wrap at words to `width`, continuation lines indented: readable on any terminal and in a pipe."""
    import textwrap

    return textwrap.fill(text, width, subsequent_indent="      ", break_on_hyphens=False)


def _check_up(topology: Topology) -> None:
    from relevo.cluster import Cluster

    if Cluster(topology).status(topology.balancer.name) is not NodeState.RUNNING:
        raise RelevoError(
            "the cluster is not up: run `relevo up` first (scenarios run on the running cluster)"
        )


def _run(topology: Topology, chosen: list[Any], opts: dict[str, Any]) -> list[Any]:
    from relevo.report.progress import ProgressLine
    from relevo.scenarios.checks import Thresholds
    from relevo.scenarios.model import Model
    from relevo.scenarios.runner import LoadOverride, run_scenarios

    override = LoadOverride(
        threads=opts["threads"],
        loops=opts["loops"],
        duration_s=opts["duration"],
        ramp_up_s=opts["ramp_up"],
        rate_rps=opts["rate"],
        timeout_s=opts["timeout"],
        model=Model(opts["model"]) if opts["model"] else None,
    )
    thresholds = Thresholds(
        max_error_pct=opts["max_error_pct"],
        max_p99_ms=opts["max_p99"] * 1000 if opts["max_p99"] is not None else None,
        max_failover_s=opts["max_failover"],
    )
    current: list[ProgressLine] = []

    def new_line() -> ProgressLine:
        """One progress line per run: a rate from another run's counters was negative."""
        for line in current:
            line.clear()
        current[:] = [ProgressLine()]
        return current[0]

    def step(text: str) -> None:
        for line in current:
            line.clear()
        say(text)

    try:
        return run_scenarios(
            topology,
            chosen,
            override=override,
            thresholds=thresholds,
            workers=opts["workers"],
            progress=step,
            load_progress=new_line,
        )
    finally:
        for line in current:
            line.clear()


def _output(topology: Topology, results: list[Any], opts: dict[str, Any]) -> None:
    from relevo.report.as_json import result_dict
    from relevo.report.comparison import comparison_text
    from relevo.report.html import write_report
    from relevo.scenarios.repeat import distribution, distribution_lines

    data: dict[str, Any] = {r.scenario.name: result_dict(r) for r in results}
    if opts.get("repeat", 1) > 1:
        by_name: dict[str, list[Any]] = {}
        for r in results:
            by_name.setdefault(r.scenario.name, []).append(r)
        data = {
            name: {"runs": [result_dict(r) for r in runs], "distribution": distribution(runs)}
            for name, runs in by_name.items()
        }
    if opts["as_json"]:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    else:
        sys.stdout.write(comparison_text(results))
        if opts.get("repeat", 1) > 1:
            lines = [f"over {opts['repeat']} runs each:"]
            for name, entry in data.items():
                lines += distribution_lines(name, entry["distribution"])
            sys.stdout.write("\n".join(lines) + "\n")
    if opts["no_report"]:
        return
    directory = opts["report_dir"] or default_report_dir(topology)
    # results.json first: whatever happens while the charts are drawn, the numbers are on disk.
    try:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / RESULTS_NAME).write_text(json.dumps(data, indent=2, default=str) + "\n", "utf-8")
    except OSError as exc:
        # The results are already on stdout: say which path failed, lose nothing.
        raise RelevoError(f"could not write the report in {directory}: {exc.strerror or exc}") from None
    try:
        written = write_report(results, directory, title=f"cluster {topology.name}")
    except OSError as exc:
        raise RelevoError(
            f"could not write the report in {directory}: {exc.strerror or exc} "
            f"(the results are in {directory / RESULTS_NAME})"
        ) from None
    except Exception as exc:  # the charting library's own failure: the results are safe, say so
        raise RelevoError(
            f"could not draw the report ({type(exc).__name__}: {exc}); "
            f"the results are in {directory / RESULTS_NAME}"
        ) from None
    err_console.print(f"report: {written.html}  (PNG charts in {written.html.parent / 'png'})")

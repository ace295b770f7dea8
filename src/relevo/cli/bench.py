"""`relevo bench` (load the cluster, JMeter's way, at wrk's speed) and `relevo report` (read a JTL)."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from relevo import __version__
from relevo.cli.common import console, err_console, file_option, get_topology
from relevo.errors import RelevoError
from relevo.grammar import parse_duration
from relevo.loadgen import engine
from relevo.loadgen.feed import LiveFeed
from relevo.loadgen.jmx import read_jmx
from relevo.loadgen.jmx_export import write_jmx
from relevo.loadgen.jtl import read_stats
from relevo.loadgen.plan import (
    DEFAULT_COUNT_HEADER,
    DEFAULT_TIMEOUT_S,
    Plan,
    PlanError,
    simple_plan,
    with_target,
)
from relevo.loadgen.summary import SummaryReport, summarize
from relevo.report.as_json import to_dict
from relevo.report.progress import ProgressLine
from relevo.report.table import print_report
from relevo.safe_open import read_bytes

DEFAULT_DURATION_S = 10.0
EXIT_INTERRUPTED = 130

if TYPE_CHECKING:  # click is generic in its stubs from 8.2 on, not at run time before 8.5
    from relevo.model import Topology

    _FloatParam = click.ParamType[float, Any]
else:
    _FloatParam = click.ParamType

# A request body read with --data-file, at most (it is held in memory and sent with every request).
MAX_BODY_BYTES = 64 << 20


class Duration(_FloatParam):
    """250ms, 30s, 1m30s, 2h, or a plain number of seconds (relevo.yaml's grammar)."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            return parse_duration(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class ThresholdExceeded(RelevoError):
    """The run worked, but broke a threshold (--max-error-pct, --max-p99)."""


class NothingListening(RelevoError):
    """Every connection was refused during the first second: the target is not up."""


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise click.BadParameter(f"{text!r}: expected 'Name: value'", param_hint="'-H'")
    return name.strip(), value.strip()


def _given(ctx: click.Context, name: str) -> bool:
    source = ctx.get_parameter_source(name)
    return source is not None and source is not click.core.ParameterSource.DEFAULT


def _default_url(ctx: click.Context) -> str:
    """The running cluster's frontend, from the topology (relevo's -f option, or ./relevo.yaml)."""
    return get_topology(ctx).balancer.frontend.url + "/"


def _plan(ctx: click.Context, url: str | None, opts: dict[str, Any]) -> tuple[Plan, list[str]]:
    plan_file: Path | None = opts["plan_file"]
    if plan_file is not None:
        given = [f"--{name.replace('_', '-')}" for name in _PLAN_OWNED if _given(ctx, name)]
        if url or given:
            what = ", ".join(["URL"] * bool(url) + given)
            raise PlanError(
                f"{what} cannot be combined with --plan: the plan sets them (use --target for the host)"
            )
        plan, warnings = read_jmx(plan_file)
        if opts["count_header"] != DEFAULT_COUNT_HEADER:
            plan = dataclasses.replace(plan, count_header=opts["count_header"])
        return (with_target(plan, opts["target"]) if opts["target"] else plan), warnings
    if opts["target"]:
        raise PlanError("--target goes with --plan; without a plan, give the URL itself")
    loops, duration, rate = opts["loops"], opts["duration"], opts["rate"]
    if rate is not None and duration is None:
        raise PlanError("--rate needs --duration (how long to hold the rate)")
    if rate is not None and loops is not None:
        raise PlanError(
            "--loops is for the closed model; with --rate the number of requests is rate x duration"
        )
    if loops is None and duration is None:
        duration = DEFAULT_DURATION_S
    if opts["data"] is not None and opts["data_file"] is not None:
        raise PlanError("give the body with --data or --data-file, not both")
    body = opts["data"].encode() if opts["data"] is not None else b""
    if opts["data_file"] is not None:
        try:
            body = read_bytes(opts["data_file"], limit=MAX_BODY_BYTES)
        except OSError as exc:
            raise PlanError(f"--data-file {opts['data_file']}: {exc.strerror}") from None
    plan = simple_plan(
        url or _default_url(ctx),
        threads=opts["threads"],
        loops=loops,
        duration_s=duration,
        ramp_up_s=opts["ramp_up"],
        rate_rps=rate,
        method=opts["method"],
        headers=tuple(_header(h) for h in opts["header"]),
        body=body,
        timeout_s=opts["timeout"],
        keepalive=opts["keepalive"],
        count_header=opts["count_header"],
        label=opts["label"],
    )
    return plan, []


# Options a .jmx plan decides for itself.
_PLAN_OWNED = ("threads", "loops", "duration", "ramp_up", "rate", "method", "header", "data", "data_file")


def _meta(plan: Plan, result: engine.RunResult, jtl: Path | None) -> dict[str, object]:
    targets = sorted({r.url for g in plan.groups for r in g.requests})
    return {
        "generator": f"relevo {__version__}",
        "targets": targets,
        "model": "open" if any(g.rate_rps for g in plan.groups) else "closed",
        "groups": [
            {
                "name": g.name,
                "threads": g.threads,
                "loops": g.loops,
                "duration_s": g.duration_s,
                "ramp_up_s": g.ramp_up_s,
                "rate_rps": g.rate_rps,
            }
            for g in plan.groups
        ],
        "workers": result.workers,
        "event_loop": result.event_loop,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(result.started_at)),
        "elapsed_s": round(result.elapsed_s, 3),
        "jtl": str(jtl) if jtl else None,
    }


def _emit(report: SummaryReport, *, as_json: bool, out: Path | None, quiet: bool, series: bool) -> None:
    """The results on stdout (JSON or the tables) and in `out`. A file that cannot be written loses
    nothing: the results still reach stdout, then the error names the path."""
    text = json.dumps(to_dict(report), indent=2) + "\n"
    failure = None
    if out is not None:
        try:
            out.write_text(text, encoding="utf-8")
        except OSError as exc:
            failure = f"cannot write the results to {out}: {exc.strerror or exc}"
    if as_json or (quiet and failure):
        sys.stdout.write(text)
        sys.stdout.flush()
    elif not quiet:
        print_report(report, console, series=series)
    if failure:
        raise RelevoError(failure)


def _check_writable(path: Path | None, option: str) -> None:
    """Refuse an output file that cannot be written before the run, not after it (exit 2)."""
    if path is None:
        return
    parent = path.parent if str(path.parent) else Path()
    if path.is_dir():
        raise PlanError(f"{option} {path}: is a directory")
    if not parent.is_dir():
        raise PlanError(f"{option} {path}: the directory {parent} does not exist")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise PlanError(f"{option} {path}: not writable")


def _our_cluster(ctx: click.Context, plan: Plan) -> Topology | None:
    """The topology's cluster, when the plan loads it (its frontend or one of its nodes)."""
    try:
        topology = get_topology(ctx)
    except RelevoError:
        return None
    ours = {(topology.balancer.frontend.address, topology.balancer.frontend.port)}
    ours |= {(n.address, n.port) for n in topology.nodes}
    if not any((r.host, r.port) in ours for g in plan.groups for r in g.requests):
        return None
    return topology


def _feed(ctx: click.Context, plan: Plan) -> LiveFeed | None:
    """The live feed the cluster's dashboard follows, when the run loads a cluster that is up."""
    from relevo.paths import StatePaths

    topology = _our_cluster(ctx, plan)
    if topology is None:
        return None
    path = StatePaths(topology.state_dir).held().load_feed
    return LiveFeed(path) if path.parent.is_dir() else None


def _events_during(ctx: click.Context, plan: Plan, result: engine.RunResult) -> list[dict[str, Any]]:
    """The controller's events that fell inside the run, when the run went to the topology's cluster."""
    from relevo.controller.journal import read_events
    from relevo.files import claim_state_dir
    from relevo.paths import StatePaths

    topology = _our_cluster(ctx, plan)
    if topology is None:
        return []
    begin, end = result.started_at, result.started_at + result.elapsed_s

    def inside(event: dict[str, Any]) -> bool:
        ts = event.get("ts")
        return isinstance(ts, int | float) and begin <= ts <= end

    claim_state_dir(topology.state_dir, create=False)  # read through its descriptor, not its name
    return read_events(StatePaths(topology.state_dir).held().events, 1000, keep=inside)


@click.command("bench")
@file_option
@click.argument("url", required=False)
@click.option(
    "-c",
    "--threads",
    "--connections",
    "threads",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Virtual users (JMeter threads), each on its own connection. With --rate: "
    "the most connections opened.",
)
@click.option(
    "-n",
    "--loops",
    type=click.IntRange(min=1),
    help="Requests per user (closed model). Without --loops or --duration: --duration 10s.",
)
@click.option(
    "-d",
    "--duration",
    type=Duration(),
    help="Run this long (30s, 1m, ...): users stop after it, finishing the request in flight.",
)
@click.option(
    "--ramp-up",
    type=Duration(),
    default=0.0,
    help="Start the users evenly over this time, as "
    "JMeter's ramp-up (user i starts at i x ramp-up / threads).",
)
@click.option(
    "-r",
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    help="Open model: this many requests "
    "per second whatever the server does (wrk2's way); latency counts from each request's intended "
    "send time, so a stall is charged to every request it delays.",
)
@click.option("-X", "--method", default="GET", show_default=True, help="HTTP method.")
@click.option(
    "-H", "--header", multiple=True, metavar="'NAME: VALUE'", help="Add a request header (repeatable)."
)
@click.option("--data", help="Request body, as text.")
@click.option(
    "--data-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Request body, from a file.",
)
@click.option(
    "--timeout",
    type=Duration(),
    default=f"{DEFAULT_TIMEOUT_S:g}s",
    show_default=True,
    help="Per-request timeout, connect included; a request past it counts as a 'timeout' error.",
)
@click.option(
    "--keepalive/--no-keepalive",
    default=True,
    show_default=True,
    help="Reuse connections (HTTP/1.1 keep-alive), or open one per request.",
)
@click.option(
    "--count-header",
    default=DEFAULT_COUNT_HEADER,
    show_default=True,
    help="Count responses by this header's value (which server answered); '' to turn off.",
)
@click.option("--label", help="The label of the samples (default: 'METHOD /path').")
@click.option(
    "-w",
    "--workers",
    type=click.IntRange(min=1),
    help="Worker processes, whose results are merged exactly (default: one per core, half the cores "
    "when the target is on this machine, which it needs too).",
)
@click.option(
    "--plan",
    "plan_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Run a JMeter test plan (.jmx): its thread groups and HTTP samplers.",
)
@click.option("--target", help="With --plan: send every request to this URL's host and port instead.")
@click.option(
    "--export-jmx",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the plan as a JMeter 5.x test plan to this file and exit without sending anything.",
)
@click.option(
    "--jtl",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Stream every sample to this JMeter CSV result file (readable by `relevo report` and `jmeter -g`).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the results as one JSON document on stdout.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the results as JSON to this file.",
)
@click.option("--series", is_flag=True, help="Also print the per-second table.")
@click.option(
    "--max-error-pct",
    type=click.FloatRange(min=0, max=100),
    help="Exit with status 1 when more than this % of samples failed.",
)
@click.option(
    "--max-p99",
    type=Duration(),
    help="Exit with status 1 when the 99th percentile response time is above this (e.g. 250ms).",
)
@click.option(
    "--progress-interval",
    type=Duration(),
    default="5s",
    show_default=True,
    help="Without a terminal, print a progress line this often (on a terminal it is live).",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress line and no table (--out still written).")
@click.pass_context
def bench(ctx: click.Context, /, url: str | None, **opts: Any) -> None:
    """Send HTTP load to URL (default: the cluster's frontend) and print JMeter's Summary Report.

    \b
    Closed model, like a JMeter thread group (the seed's plan):
      relevo bench --threads 1000 --loops 50 --ramp-up 1s
    Open model, like wrk2 (no coordinated omission):
      relevo bench --rate 5000 --duration 30s
    A JMeter plan, run by relevo's engine against the cluster:
      relevo bench --plan test.jmx --target http://127.0.0.1:8080

    Errors are counted by kind: the HTTP status (4xx, 5xx; 3xx succeeds, as in JMeter), refused, reset,
    timeout, incomplete. Progress goes to stderr; --json keeps stdout for one JSON document.
    Exit status: 0 done, 1 a threshold broken or nothing listening, 2 bad usage, 130 interrupted
    (Ctrl-C: the samples finished so far are still reported, marked interrupted).
    """
    plan, warnings = _plan(ctx, url, opts)
    for warning in warnings:
        err_console.print(f"[yellow]warning:[/] {warning}")
    if opts["export_jmx"] is not None:
        for warning in write_jmx(plan, opts["export_jmx"]):
            err_console.print(f"[yellow]warning:[/] {warning}")
        err_console.print(f"wrote {opts['export_jmx']}")
        return
    quiet = opts["quiet"]
    _check_writable(opts["jtl"], "--jtl")
    _check_writable(opts["out"], "--out")
    line = ProgressLine(interval_s=opts["progress_interval"]) if not quiet else None
    feed = _feed(ctx, plan)
    on_progress = feed.tee(line) if feed is not None else line
    if feed is not None:
        feed.begin("relevo bench")
    try:
        result = engine.run(plan, workers=opts["workers"], jtl=opts["jtl"], on_progress=on_progress)
    finally:
        if line is not None:
            line.clear()
        if feed is not None:
            feed.end()
    if result.nothing_listening:
        targets = ", ".join(sorted({r.url for g in plan.groups for r in g.requests}))
        raise NothingListening(f"nothing is listening at {targets} — is the cluster up? (`relevo up`)")
    meta = _meta(plan, result, opts["jtl"])
    events = _events_during(ctx, plan, result)
    meta["events"] = events
    report = summarize(
        result.stats, meta=meta, interrupted=result.interrupted, planned=result.plan.total_samples
    )
    _emit(report, as_json=opts["as_json"], out=opts["out"], quiet=quiet, series=opts["series"])
    if events and not (opts["as_json"] or quiet):
        from relevo.cli.controller import event_line

        console.print("[bold]The controller during the run[/]")
        for event in events:
            console.print(event_line(event), soft_wrap=not console.is_terminal)
    if result.interrupted:
        sys.exit(EXIT_INTERRUPTED)
    _check_thresholds(report, opts["max_error_pct"], opts["max_p99"])


def _check_thresholds(report: SummaryReport, max_error_pct: float | None, max_p99_s: float | None) -> None:
    total = report.total
    if max_error_pct is not None and total.error_pct > max_error_pct:
        raise ThresholdExceeded(f"{total.error_pct:.2f}% of samples failed (limit {max_error_pct:g}%)")
    if max_p99_s is not None and total.percentile_ms(99.0) > max_p99_s * 1000:
        raise ThresholdExceeded(
            f"the 99th percentile is {total.percentile_ms(99.0):.1f} ms (limit {max_p99_s * 1000:g} ms)"
        )


@click.command("report")
@click.argument("jtl", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON document on stdout.")
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="Also write the report as JSON here."
)
@click.option("--series", is_flag=True, help="Also print the per-second table.")
def report(jtl: Path, as_json: bool, out: Path | None, series: bool) -> None:
    """Print JMeter's Summary Report for a JMeter CSV result file (.jtl).

    Reads JMeter 2.13's and 5.x's columns, with a header line or without one, and relevo's own --jtl
    files. The numbers follow JMeter's definitions, plus percentiles and errors by kind.
    """
    summary = summarize(read_stats(jtl), meta={"source": str(jtl)})
    _emit(summary, as_json=as_json, out=out, quiet=False, series=series)

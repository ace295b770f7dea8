"""Running scenarios: for each, the cluster put as it wants, the load started through the engine's
handle, the faults done at their times on the load's clock, then the results gathered: the Summary
Report, a per-second series (requests, errors, p50/p99, answers per server), the controller's events
that fell inside the run, the failover times and the verdicts. After the last scenario the cluster is
put back as the topology declares it, controller on.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from relevo.cluster import Cluster
from relevo.controller.journal import read_events
from relevo.loadgen import engine
from relevo.loadgen.feed import LiveFeed
from relevo.loadgen.histogram import Histogram
from relevo.loadgen.jtl import read_samples
from relevo.loadgen.plan import Plan, simple_plan
from relevo.loadgen.stats import FINE_S, RunStats, TimeSeries
from relevo.loadgen.summary import summarize
from relevo.model import Topology
from relevo.progress import Progress, quiet
from relevo.scenarios.checks import Thresholds, check_expectation, check_thresholds, check_vip
from relevo.scenarios.environment import describe_environment
from relevo.scenarios.faults import unsupported
from relevo.scenarios.model import LoadSettings, Model, Scenario, Setup
from relevo.scenarios.prepare import prepare
from relevo.scenarios.result import (
    Bucket,
    ScenarioResult,
    ScenarioSecond,
    SteadyCheck,
    Verdict,
    failovers_from_events,
    markers_from_events,
)
from relevo.scenarios.steady import (
    BEFORE_WITHIN_S,
    SteadyState,
    after_within_s,
    expected_after,
    expected_before,
    observe,
)
from relevo.scenarios.steady import check as check_steady
from relevo.scenarios.timeline import Timeline
from relevo.scenarios.vip_after import watch_vip

# Events journalled this long after the load's end still belong to it (a failback's drain finishing).
EVENTS_AFTER_S = 1.0
# A run may not outlast its plan by more than this (a stall the engine's timeouts should have ended).
RUN_MARGIN_S = 120.0


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadOverride:
    """Load options given on the command line: they replace each scenario's own."""

    threads: int | None = None
    loops: int | None = None
    duration_s: float | None = None
    ramp_up_s: float | None = None
    rate_rps: float | None = None
    timeout_s: float | None = None
    model: Model | None = None

    def apply(self, load: LoadSettings) -> LoadSettings:
        """The scenario's load with these options in place. A rate means the open model and loops the
        closed one, unless `model` says otherwise; a switched model starts from its defaults."""
        model = self.model
        if model is None and self.rate_rps is not None:
            model = Model.OPEN
        if model is None and self.loops is not None:
            model = Model.CLOSED
        if model is not None and model is not load.model:
            base = LoadSettings.open_loop() if model is Model.OPEN else LoadSettings.seed()
            load = replace(base, timeout_s=load.timeout_s)
        values: dict[str, Any] = {}
        for key in ("threads", "loops", "duration_s", "ramp_up_s", "rate_rps", "timeout_s"):
            value = getattr(self, key)
            if value is not None:
                values[key] = value
        if load.model is Model.CLOSED and "duration_s" in values and "loops" not in values:
            values["loops"] = None  # a closed run for a duration, as `relevo bench --duration`
        if load.model is Model.OPEN:
            values.pop("loops", None)
        return replace(load, **values)


def plan_for(topology: Topology, load: LoadSettings) -> Plan:
    url = topology.balancer.frontend.url + "/"
    if load.model is Model.OPEN:
        return simple_plan(
            url,
            threads=load.threads,
            loops=None,
            duration_s=load.duration_s,
            rate_rps=load.rate_rps,
            timeout_s=load.timeout_s,
        )
    return simple_plan(
        url,
        threads=load.threads,
        loops=load.loops,
        duration_s=load.duration_s,
        ramp_up_s=load.ramp_up_s,
        timeout_s=load.timeout_s,
    )


def run_scenarios(
    topology: Topology,
    scenarios: Sequence[Scenario],
    *,
    override: LoadOverride | None = None,
    thresholds: Thresholds | None = None,
    workers: int | None = None,
    progress: Progress = quiet,
    load_progress: Callable[[], engine.ProgressCallback] | None = None,
) -> list[ScenarioResult]:
    """Run each scenario in turn (see the module doc). `progress` hears the steps; `load_progress` makes
    one callback per run for the load's counters (a callback shared by two runs would compare them)."""
    cluster = Cluster(topology)
    results = []
    for healed in cluster.heal_all():  # what a relevo that died mid-span left in force
        progress(f"healed {healed} (left by an earlier run)")
    environment = describe_environment(topology)
    feed = LiveFeed(cluster.paths.held().load_feed)
    try:
        for n, scenario in enumerate(scenarios, 1):
            if override is not None:
                scenario = replace(scenario, load=override.apply(scenario.load))
            progress(f"[{n}/{len(scenarios)}] {scenario.name}: {scenario.description}")
            reasons = [r for r in (unsupported(cluster, f) for f in scenario.faults) if r]
            if reasons:
                progress("  skipped: " + "; ".join(reasons))
                results.append(skipped_result(scenario, "; ".join(reasons)))
                continue
            feed.begin(f"relevo scenarios: {scenario.name}")
            try:
                result = run_one(
                    cluster,
                    scenario,
                    thresholds=thresholds or Thresholds(),
                    workers=workers,
                    on_progress=feed.tee(load_progress() if load_progress else None),
                    feed=feed,
                )
            finally:
                feed.end()
            result = replace(result, environment=environment)
            broken = [v.what for v in result.verdicts if not v.ok]
            broken += [f"not steady {c.when}: {c.detail}" for c in result.steady if not c.ok]
            progress(
                f"  {result.report.total.samples} samples, {result.failed} failed: "
                + ("FAILED " + "; ".join(broken) if broken else "ok")
            )
            results.append(result)
    finally:
        progress("putting the cluster back as the topology declares it")
        prepare(cluster, Setup())
    return results


def run_one(
    cluster: Cluster,
    scenario: Scenario,
    *,
    thresholds: Thresholds,
    workers: int | None = None,
    on_progress: engine.ProgressCallback | None = None,
    feed: LiveFeed | None = None,
) -> ScenarioResult:
    topology = cluster.topology
    prepare(cluster, scenario.setup)
    before = steady_check(cluster, "before", expected_before(topology, scenario.setup), BEFORE_WITHIN_S)
    if not before.ok:  # as Chaos Toolkit: no experiment on a cluster that is not as declared
        return not_steady_result(scenario, before)
    plan = plan_for(topology, scenario.load)
    with tempfile.TemporaryDirectory(prefix="relevo-scenario-") as scratch:
        jtl = Path(scratch) / "samples.jtl"
        handle = engine.start(plan, workers=workers, jtl=jtl, on_progress=on_progress)
        # A hang's workers stay stopped until the next preparation resumes every node (unless spanned).
        timeline = Timeline(cluster, scenario, handle, feed)
        try:
            with handle:
                timeline.play()
                limit = (plan.duration_s or 0.0) + RUN_MARGIN_S
                result = handle.wait(timeout_s=None if plan.duration_s is None else limit)
        finally:
            timeline.close()  # every fault still in force healed: the load's end, an error, Ctrl-C
        markers, fault_verdicts = timeline.markers, timeline.verdicts
        latencies = per_second_latency(jtl, result.started_at)
        sent_latency = latency_by_send(jtl, result.started_at)
    events = _events_during(cluster.paths.held().events, result.started_at, result.elapsed_s)
    after = steady_check(cluster, "after", expected_after(topology, scenario), after_within_s(topology))
    back, hit = scenario.expect.vip_back, timeline.in_charge
    vip = watch_vip(cluster, hit.name, back=back) if back is not None and hit is not None else None
    report = summarize(
        result.stats,
        meta=_meta(scenario, result),
        interrupted=result.interrupted,
        planned=plan.total_samples,
    )
    failovers = failovers_from_events(events, result.started_at)
    verdicts = [
        *(steady_verdict(c) for c in (before, after)),
        *fault_verdicts,
        *check_expectation(scenario.expect, report, events),
        *check_vip(scenario.expect, vip),
        *check_thresholds(thresholds, report, failovers),
    ]
    series = result.stats.series
    seconds = tuple(
        ScenarioSecond(
            t_s=i,
            requests=series.requests[i],
            errors=series.errors[i],
            p50_ms=latencies.get(i, (0.0, 0.0))[0],
            p99_ms=latencies.get(i, (0.0, 0.0))[1],
            served_by=dict(series.served[i]),
        )
        for i in range(len(series))
    )
    all_markers = sorted([*markers, *markers_from_events(events, result.started_at)], key=lambda m: m.t_s)
    load_end_s = plan.duration_s if plan.duration_s is not None else result.elapsed_s
    buckets, charted_s, tail = chart_buckets(result.stats.fine, sent_latency, load_end_s)
    return ScenarioResult(
        scenario=scenario,
        report=report,
        seconds=seconds,
        markers=tuple(all_markers),
        events=tuple(events),
        failovers=tuple(failovers),
        verdicts=tuple(verdicts),
        buckets=buckets,
        charted_s=charted_s,
        tail=tail,
        steady=(before, after),
    )


def steady_check(cluster: Cluster, when: str, expected: SteadyState, within_s: float) -> SteadyCheck:
    return check_steady(when, expected, lambda e: observe(cluster, e), within_s=within_s)


def steady_verdict(check: SteadyCheck) -> Verdict:
    return Verdict(what=check.what, ok=check.ok, detail=check.detail)


def not_steady_result(scenario: Scenario, before: SteadyCheck) -> ScenarioResult:
    """A scenario whose cluster was not as declared before its load: not run, and failed with what
    differed (a result on a broken cluster would measure the breakage, not the scenario)."""
    report = summarize(RunStats(), meta={"scenario": scenario.name, "not steady": before.detail})
    return ScenarioResult(
        scenario=scenario, report=report, seconds=(), verdicts=(steady_verdict(before),), steady=(before,)
    )


def skipped_result(scenario: Scenario, reason: str) -> ScenarioResult:
    """A scenario not run, with why: no samples, no verdicts, neither passed nor failed."""
    report = summarize(RunStats(), meta={"scenario": scenario.name, "skipped": reason})
    return ScenarioResult(scenario=scenario, report=report, seconds=(), skipped=reason)


def chart_buckets(
    fine: TimeSeries, sent_latency: Mapping[int, tuple[float, float]], load_end_s: float
) -> tuple[tuple[Bucket, ...], float, str]:
    """The 100 ms buckets the charts draw: whole buckets up to the load's end only. A last, partial bucket
    (and the responses that completed after the load's end) would draw a cliff to ~0 that says nothing
    about the cluster: left out, and said so."""
    whole = int(load_end_s / FINE_S + 1e-6)
    charted_s = whole * FINE_S
    buckets = tuple(
        Bucket(
            t_s=round(i * FINE_S, 3),
            requests=fine.requests[i] if i < len(fine) else 0,
            errors=fine.errors[i] if i < len(fine) else 0,
            p50_ms=sent_latency[i][0] if i in sent_latency else None,
            p99_ms=sent_latency[i][1] if i in sent_latency else None,
            served_by=dict(fine.served[i]) if i < len(fine) else {},
        )
        for i in range(whole)
    )
    after = sum(fine.requests[whole:])
    tail = (
        f"not drawn: {after:,} response{'s' if after != 1 else ''} that completed after {charted_s:.1f} s "
        "(the load's end, in whole "
        f"{FINE_S * 1000:.0f} ms buckets): a partial last bucket would show a cliff that is not the cluster's"
        if after
        else ""
    )
    return buckets, charted_s, tail


def latency_by_send(jtl: Path, started_at: float) -> dict[int, tuple[float, float]]:
    """p50 and p99 (ms) of the requests *sent* in each 100 ms bucket (the JTL's timeStamp is the send
    time, the intended one in the open model), so a stall shows where it began."""
    histograms: dict[int, Histogram] = {}
    start_ms = started_at * 1000
    width_ms = FINE_S * 1000
    for sample in read_samples(jtl):
        bucket = max(0, int((sample.timestamp_ms - start_ms) // width_ms))
        histogram = histograms.get(bucket)
        if histogram is None:
            histogram = histograms[bucket] = Histogram()
        histogram.record(sample.elapsed_ms * 1000)
    return {
        bucket: (h.value_at_percentile(50.0) / 1000, h.value_at_percentile(99.0) / 1000)
        for bucket, h in histograms.items()
    }


def per_second_latency(jtl: Path, started_at: float) -> dict[int, tuple[float, float]]:
    """p50 and p99 (ms) of the samples that ended in each second of the run, from the JTL."""
    histograms: dict[int, Histogram] = {}
    start_ms = started_at * 1000
    for sample in read_samples(jtl):
        second = max(0, int((sample.timestamp_ms + sample.elapsed_ms - start_ms) // 1000))
        histogram = histograms.get(second)
        if histogram is None:
            histogram = histograms[second] = Histogram()
        histogram.record(sample.elapsed_ms * 1000)
    return {
        second: (h.value_at_percentile(50.0) / 1000, h.value_at_percentile(99.0) / 1000)
        for second, h in histograms.items()
    }


def _events_during(journal: Path, started_at: float, elapsed_s: float) -> list[dict[str, Any]]:
    end = started_at + elapsed_s + EVENTS_AFTER_S

    def inside(event: Mapping[str, Any]) -> bool:
        ts = event.get("ts")
        return isinstance(ts, int | float) and started_at - 0.05 <= ts <= end

    time.sleep(min(EVENTS_AFTER_S, 0.5))  # let the controller journal what it saw last
    return read_events(journal, keep=inside)


def _meta(scenario: Scenario, result: engine.RunResult) -> dict[str, object]:
    return {
        "scenario": scenario.name,
        "description": scenario.description,
        "load": scenario.load.describe(),
        "model": str(scenario.load.model),
        "workers": result.workers,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(result.started_at)),
        "elapsed_s": round(result.elapsed_s, 3),
    }

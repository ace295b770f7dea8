"""What one scenario's run produced: the Summary Report, the per-second series, the faults and the
controller's events on the same time axis, the failover times, and the verdicts. Renderers (the
comparison table, the HTML report, `--json`) only format this."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from relevo.loadgen.stats import FINE_S
from relevo.loadgen.summary import SummaryReport
from relevo.scenarios.model import Action, Scenario

# Controller event kinds drawn as markers; `action` lines (every Runtime API call) would bury them.
HIDDEN_EVENT_KINDS = frozenset({"action"})


@dataclass(frozen=True, slots=True, kw_only=True)
class ScenarioSecond:
    """One second of the run, counted by the second in which each request ended."""

    t_s: int
    requests: int
    errors: int
    p50_ms: float
    p99_ms: float
    served_by: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True, kw_only=True)
class Bucket:
    """100 ms of the run (`t_s` is its start). `requests`, `errors` and `served_by` count the responses that
    completed in it; `p50_ms`/`p99_ms` are the latencies of the requests *sent* in it (None: none sent), so
    a stall shows when the stalled requests went out, not seconds later when they gave up."""

    t_s: float
    requests: int
    errors: int
    p50_ms: float | None
    p99_ms: float | None
    served_by: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultSpan:
    """A fault's time on the charts: from when it was done until it was undone (`end_s` None: it lasted to
    the end of the run; equal to `start_s`: an instant, such as a reload)."""

    start_s: float
    end_s: float | None
    label: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Marker:
    """Something that happened at `t_s` seconds after the load started: a fault relevo injected, or an
    event the controller journalled."""

    t_s: float
    source: str  # "fault" or "controller"
    kind: str  # the fault's action, or the event's kind (failover, health, drained, ...)
    label: str
    # A fault that lasted (a network fault, a hang with `for:`): when it was healed; None for an instant.
    end_t_s: float | None = None
    means: str = ""  # how the provider did it (a lasting fault): "iptables statistic ...", "netem", ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Failover:
    """A standby put in service, with the controller's own timings (seconds)."""

    standby: str
    at_s: float
    detection_s: float | None
    standby_start_s: float | None
    until_served_s: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class VipAfter:
    """Where a pair's VIP was once the scenario's faults were over (scenarios/vip_after.py looks)."""

    hit: str  # the balancer the scenario's faults hit (the one in charge at its first fault)
    other: str
    whole: bool  # both balancers' HAProxy answered their checker's GET before the looks began
    holders: tuple[str | None, ...]  # the VIP's holder at each look, in order (None: none seen)


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    what: str  # "expect: 0 failed requests", "threshold: p99 <= 200 ms"
    ok: bool
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SteadyCheck:
    """One check of the steady state: `when` is "before" (the load) or "after" (the faults healed)."""

    when: str
    ok: bool
    took_s: float  # until it held (or the bound, when it never did)
    within_s: float
    expected: str
    differences: tuple[str, ...] = ()

    @property
    def what(self) -> str:
        return (
            "steady state before the load"
            if self.when == "before"
            else f"steady state after the faults healed (within {self.within_s:g} s)"
        )

    @property
    def detail(self) -> str:
        if self.ok:
            return f"held after {self.took_s:.2f} s"
        return "; ".join(self.differences)


@dataclass(frozen=True, slots=True, kw_only=True)
class ScenarioResult:
    scenario: Scenario
    report: SummaryReport
    seconds: tuple[ScenarioSecond, ...]
    markers: tuple[Marker, ...] = ()
    events: tuple[Mapping[str, Any], ...] = ()
    failovers: tuple[Failover, ...] = ()
    verdicts: tuple[Verdict, ...] = ()
    # Why the scenario did not run (a fault its provider cannot do here): neither passed nor failed.
    skipped: str | None = None
    # The 100 ms series the charts draw, up to `charted_s` (the load's end, whole buckets only); `tail`
    # says what was left out after it (responses still completing once no more were sent).
    buckets: tuple[Bucket, ...] = ()
    bucket_s: float = FINE_S
    charted_s: float = 0.0
    tail: str = ""
    # Where the run's environment was described (host, versions, provider, the topology's settings).
    environment: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    # The steady state checked before the load and after the faults healed (none when not run).
    steady: tuple[SteadyCheck, ...] = ()

    @property
    def spans(self) -> tuple[FaultSpan, ...]:
        return fault_spans(self.markers)

    @property
    def failed(self) -> int:
        return self.report.total.errors

    @property
    def passed(self) -> bool:
        return self.skipped is None and all(v.ok for v in self.verdicts)

    @property
    def status(self) -> str:
        """passed, failed or skipped."""
        if self.skipped is not None:
            return "skipped"
        return "passed" if self.passed else "failed"

    @property
    def servers(self) -> tuple[str, ...]:
        """Every server that answered, in order of first answer, then by name."""
        seen: dict[str, None] = {}
        for bucket in self.buckets:
            for name in sorted(bucket.served_by):
                seen.setdefault(name, None)
        for second in self.seconds:
            for name in sorted(second.served_by):
                seen.setdefault(name, None)
        for name in self.report.total.served_by:
            seen.setdefault(name, None)
        return tuple(seen)


# A fault ends when a later one on the same node undoes it; a reload is an instant.
UNDOES = {
    Action.START: (Action.KILL, Action.KILL_SERVICE, Action.STOP),
    Action.RESUME: (Action.HANG, Action.HANG_WORKERS),
    Action.READY: (Action.MAINTENANCE,),
    Action.START_CONTROLLER: (Action.KILL_CONTROLLER,),
}
INSTANT = frozenset({Action.RELOAD})


def fault_spans(markers: Sequence[Marker]) -> tuple[FaultSpan, ...]:
    """The faults relevo did, as spans: each from its marker to the marker of the fault that undid it on
    the same node (a kill to the next start, a hang to its resume ...), else to the end of the run."""
    spans: list[FaultSpan] = []
    open_: dict[str, int] = {}  # node -> index in spans of the fault still in force there
    for marker in sorted((m for m in markers if m.source == "fault"), key=lambda m: m.t_s):
        try:
            action = Action(marker.kind)
        except ValueError:
            action = None
        node = marker.label.split(" ", 1)[1] if " " in marker.label else ""
        undone = UNDOES.get(action) if action is not None else None
        if undone is not None:
            i = open_.pop(node, None)
            if i is not None:
                spans[i] = FaultSpan(start_s=spans[i].start_s, end_s=marker.t_s, label=spans[i].label)
            continue
        end = marker.t_s if action in INSTANT else None
        spans.append(FaultSpan(start_s=marker.t_s, end_s=end, label=marker.label))
        if end is None:
            open_[node] = len(spans) - 1
    return tuple(spans)


def shares(result: ScenarioResult) -> dict[str, float]:
    """Each server's share of the answered requests, in %, by server name."""
    served = result.report.total.served_by
    total = sum(served.values())
    return {name: 100.0 * served[name] / total for name in sorted(served)} if total else {}


def markers_from_events(events: Sequence[Mapping[str, Any]], started_at: float) -> list[Marker]:
    """The controller's journal lines as markers, placed by their wall time relative to the load's start."""
    out = []
    for event in events:
        kind = str(event.get("kind", "?"))
        if kind in HIDDEN_EVENT_KINDS:
            continue
        ts = event.get("ts")
        if not isinstance(ts, int | float):
            continue
        label = f"{event.get('node', '?')} {event.get('from', '?')}→{event.get('to', '?')}"
        out.append(Marker(t_s=float(ts) - started_at, source="controller", kind=kind, label=label))
    return out


def failovers_from_events(events: Sequence[Mapping[str, Any]], started_at: float) -> list[Failover]:
    def number(durations: Mapping[str, Any], key: str) -> float | None:
        value = durations.get(key)
        return float(value) if isinstance(value, int | float) else None

    out = []
    for event in events:
        if event.get("kind") != "failover" or not isinstance(event.get("ts"), int | float):
            continue
        durations = event.get("durations") or {}
        out.append(
            Failover(
                standby=str(event.get("node", "?")),
                at_s=float(event["ts"]) - started_at,
                detection_s=number(durations, "detection_s"),
                standby_start_s=number(durations, "standby_start_s"),
                until_served_s=number(durations, "until_served_s"),
            )
        )
    return out

"""JMeter's Summary Report as data: one row per label and a TOTAL row, built from relevo's accumulators.

The columns and their definitions are JMeter's (`Calculator`, `SummaryReport`): # Samples; Average,
Min, Max in ms (the table shows them truncated to whole ms, as JMeter's `(long) getMean()`); Std. Dev.
(population); Error % (failed / all, 2xx and 3xx succeed); Throughput (samples / (last end - first
start)); Received and Sent KB/sec (bytes / that window / 1024); Avg. Bytes. relevo adds percentiles from
its histogram, errors by kind, requests per server, and a per-second series. Renderers (`table`,
`as_json`) only format these numbers: tests check the data, not the text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from relevo.loadgen.stats import LabelStats, RunStats

TOTAL_LABEL = "TOTAL"
PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)


def _frozen(counts: Mapping[str, int]) -> Mapping[str, int]:
    """Counts sorted from most to least frequent (then by name), read-only."""
    return MappingProxyType(dict(sorted(counts.items(), key=lambda item: (-item[1], item[0]))))


@dataclass(frozen=True, slots=True, kw_only=True)
class SummaryRow:
    label: str
    samples: int
    errors: int
    average_ms: float
    min_ms: float
    max_ms: float
    stddev_ms: float
    error_pct: float  # 0-100
    throughput_rps: float
    received_kb_s: float
    sent_kb_s: float
    avg_bytes: float
    # Open model: requests due while every connection was busy, never sent (not samples).
    dropped: int = 0
    # Requests of the plan a stop left without a sample (never sent, or cut off in flight).
    unfinished: int = 0
    percentiles_ms: Mapping[float, float] = field(default_factory=lambda: MappingProxyType({}))
    errors_by_kind: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    codes: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    served_by: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))

    def percentile_ms(self, percentile: float) -> float:
        return self.percentiles_ms[percentile]


@dataclass(frozen=True, slots=True, kw_only=True)
class SecondRow:
    """One second of the run: samples that ended in it."""

    second: int
    samples: int
    errors: int
    average_ms: float
    max_ms: float
    received_kb: float
    dropped: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class SummaryReport:
    rows: tuple[SummaryRow, ...]
    total: SummaryRow
    series: tuple[SecondRow, ...] = ()
    # Where the numbers come from and how they were made (target, workers, file, ...), for the reader.
    meta: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))
    interrupted: bool = False
    # The plan's count of requests when fixed in advance (None when time decides): every one of them is
    # a sample, dropped or unfinished (`accounted`).
    planned: int | None = None

    @property
    def accounted(self) -> int:
        """Samples + dropped + unfinished: equals `planned` whenever the plan fixes a count."""
        total = self.total
        return total.samples + total.dropped + total.unfinished


def row_of(stats: LabelStats) -> SummaryRow:
    """One Summary Report row in JMeter's definitions (see the module doc)."""
    n = stats.count
    window_s = stats.window_s
    per_s = 1.0 / window_s if window_s > 0 else 0.0
    hist = stats.hist
    return SummaryRow(
        label=stats.label,
        samples=n,
        errors=stats.errors,
        average_ms=stats.mean_us / 1000,
        min_ms=hist.min / 1000 if n else 0.0,
        max_ms=hist.max / 1000 if n else 0.0,
        stddev_ms=stats.stddev_us / 1000,
        error_pct=100.0 * stats.errors / n if n else 0.0,
        throughput_rps=n * per_s,
        received_kb_s=stats.bytes * per_s / 1024,
        sent_kb_s=stats.sent_bytes * per_s / 1024,
        avg_bytes=stats.bytes / n if n else 0.0,
        dropped=stats.dropped,
        unfinished=stats.unfinished,
        percentiles_ms=MappingProxyType({p: hist.value_at_percentile(p) / 1000 for p in PERCENTILES}),
        errors_by_kind=_frozen(stats.error_kinds),
        codes=_frozen(stats.codes),
        served_by=_frozen(stats.served_by),
    )


def summarize(
    stats: RunStats,
    *,
    meta: Mapping[str, object] | None = None,
    interrupted: bool = False,
    planned: int | None = None,
) -> SummaryReport:
    """The report of a run or a JTL file: rows in first-seen label order, then TOTAL."""
    rows = tuple(row_of(s) for s in stats.labels.values() if s.count or s.dropped or s.unfinished)
    series = stats.series
    seconds = tuple(
        SecondRow(
            second=i,
            samples=series.requests[i],
            errors=series.errors[i],
            average_ms=series.total_us[i] / series.requests[i] / 1000 if series.requests[i] else 0.0,
            max_ms=series.max_us[i] / 1000,
            received_kb=series.bytes[i] / 1024,
            dropped=series.dropped[i],
        )
        for i in range(len(series))
    )
    return SummaryReport(
        rows=rows,
        total=row_of(stats.total(TOTAL_LABEL)),
        series=seconds,
        meta=MappingProxyType(dict(meta or {})),
        interrupted=interrupted,
        planned=planned,
    )

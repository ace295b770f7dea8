"""A run's per-second series while it runs: each worker's seconds as it last sent them, merged on demand."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from relevo.loadgen.histogram import Histogram
from relevo.loadgen.stats import TimeSeries

SparseHistogram = tuple[int, int, int, dict[int, int]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Second:
    """One second of a run (from its start instant): the samples that ended in it."""

    second: int
    requests: int
    errors: int
    dropped: int  # open model: due in this second, never sent (every connection was busy)
    average_ms: float
    max_ms: float
    received_kb: float
    # Answers by the count header's value (X-Served-By: which server answered).
    served_by: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))


def seconds_of(series: TimeSeries) -> tuple[Second, ...]:
    return tuple(
        Second(
            second=i,
            requests=series.requests[i],
            errors=series.errors[i],
            dropped=series.dropped[i],
            average_ms=series.total_us[i] / series.requests[i] / 1000 if series.requests[i] else 0.0,
            max_ms=series.max_us[i] / 1000,
            received_kb=series.bytes[i] / 1024,
            served_by=MappingProxyType(dict(series.served[i])),
        )
        for i in range(len(series))
    )


class LiveSeries:
    """Written by the threads that hear from the workers, read by whoever observes the run."""

    def __init__(self, workers: int) -> None:
        self._lock = threading.Lock()
        self._parts = [TimeSeries() for _ in range(workers)]
        self._hists: list[SparseHistogram | None] = [None] * workers

    def put(self, worker: int, start: int, part: TimeSeries, hist: SparseHistogram | None = None) -> None:
        with self._lock:
            self._parts[worker].put(start, part)
            if hist is not None:
                self._hists[worker] = hist

    def percentile_ms(self, percentile: float) -> float | None:
        """The response time at `percentile` over every sample so far (as of the workers' last report,
        at most a second old); None before any."""
        hist = self.histogram()
        return hist.value_at_percentile(percentile) / 1000 if hist.count else None

    def histogram(self) -> Histogram:
        """Every sample's response time so far, as of each worker's last report (cumulative)."""
        with self._lock:
            parts = [h for h in self._hists if h is not None]
        return Histogram.from_sparse(parts)

    def buckets(self) -> dict[int, int]:
        """The same, as its non-empty buckets only (cheap: for the live window, Histogram.between)."""
        with self._lock:
            parts = [h[3] for h in self._hists if h is not None]
        total: dict[int, int] = {}
        for part in parts:
            for index, n in part.items():
                total[index] = total.get(index, 0) + n
        return total

    def replace(self, worker: int, series: TimeSeries) -> None:
        """The worker's final series (from its result)."""
        with self._lock:
            self._parts[worker] = series

    def merged(self) -> TimeSeries:
        total = TimeSeries()
        with self._lock:
            for part in self._parts:
                total.merge(part)
        return total

"""Constant-memory accumulators for samples: per label, per second, and their exact merge.

The numbers follow JMeter's `Calculator` (what its Summary Report shows): a sample succeeds when its
response code is 2xx or 3xx; the window for throughput runs from the first sample's start to the last
sample's end; the standard deviation is the population one. Latencies are kept in microseconds so that
sub-millisecond loopback requests still have a shape; the report turns them into JMeter's milliseconds.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping

from relevo.loadgen.histogram import Histogram

NS_PER_S = 1_000_000_000
# The charts' resolution: `RunStats.fine` counts per 100 ms (a 100-200 ms failover is invisible per second).
FINE_NS = 100_000_000
FINE_S = FINE_NS / NS_PER_S


class ErrorKind(enum.StrEnum):
    """Why a sample failed, when it is not an HTTP status code."""

    REFUSED = "refused"  # nobody listens: the connection was refused
    RESET = "reset"  # the peer reset the connection (or the socket broke) mid-request
    TIMEOUT = "timeout"  # no complete answer within the per-request timeout
    INCOMPLETE = "incomplete"  # the connection closed before a complete response arrived
    CONNECT = "connect"  # any other failure to connect (no route, no free local port, ...)
    PROTOCOL = "protocol"  # the answer was not HTTP/1.x


def is_success(status: int) -> bool:
    """JMeter's rule for HTTP samplers: 2xx and 3xx succeed, anything else is an error."""
    return 200 <= status < 400


def bump(counter: dict[str, int], key: str, n: int = 1) -> None:
    counter[key] = counter.get(key, 0) + n


def add_counts(into: dict[str, int], other: Mapping[str, int]) -> None:
    for key, n in other.items():
        into[key] = into.get(key, 0) + n


class LabelStats:
    """Everything JMeter's Summary Report needs for one label, plus percentiles and error kinds."""

    __slots__ = (
        "bytes",
        "codes",
        "count",
        "dropped",
        "error_kinds",
        "errors",
        "first_served_ns",
        "first_start_ns",
        "hist",
        "label",
        "last_end_ns",
        "sent_bytes",
        "served_by",
        "squares_us2",
        "total_us",
        "unfinished",
    )

    def __init__(self, label: str) -> None:
        self.label = label
        self.count = 0
        self.errors = 0
        # Exact integer sums give the mean (no float drift before JMeter's truncation to whole ms) and the
        # variance: Python's integers do not overflow, so sum-of-squares has no cancellation to fear here,
        # and it costs the hot path one multiply-add where Welford's float update costs five operations.
        self.total_us = 0
        self.squares_us2 = 0
        self.hist = Histogram()
        self.bytes = 0
        self.sent_bytes = 0
        self.first_start_ns = 0
        self.last_end_ns = 0
        self.codes: dict[str, int] = {}
        self.error_kinds: dict[str, int] = {}
        self.served_by: dict[str, int] = {}
        # When each server's first answer ended (monotonic ns): when a standby began to serve.
        self.first_served_ns: dict[str, int] = {}
        # Open model: requests due while every connection was busy and still unsent when the run ended
        # (k6's dropped_iterations). Not samples: nothing was sent, so they are in no other number.
        self.dropped = 0
        # Requests of the plan that a stop (Ctrl-C, `stop()`, nothing listening) left without a sample:
        # never sent, or cut off in flight. samples + dropped + unfinished = the plan's count, always.
        self.unfinished = 0

    def add(
        self,
        *,
        start_ns: int,
        end_ns: int,
        code: str,
        success: bool,
        received: int = 0,
        sent: int = 0,
        error_kind: str | None = None,
        served_by: str | None = None,
    ) -> None:
        """Record one sample (the general path: JTL rows, failures; the engine inlines the common case)."""
        elapsed_us = max(0, (end_ns - start_ns) // 1000)
        self.count += 1
        self.total_us += elapsed_us
        self.squares_us2 += elapsed_us * elapsed_us
        self.hist.record(elapsed_us)
        self.bytes += received
        self.sent_bytes += sent
        if self.count == 1 or start_ns < self.first_start_ns:
            self.first_start_ns = start_ns
        if end_ns > self.last_end_ns:
            self.last_end_ns = end_ns
        bump(self.codes, code)
        if not success:
            self.errors += 1
            bump(self.error_kinds, error_kind or code)
        if served_by:
            if served_by not in self.served_by:
                self.first_served_ns[served_by] = end_ns
            bump(self.served_by, served_by)

    def merge(self, other: LabelStats) -> None:
        """Fold `other` into this one, exactly as if one accumulator had seen both streams."""
        self.dropped += other.dropped
        self.unfinished += other.unfinished
        if other.count == 0:
            return
        if self.count == 0:
            self.first_start_ns = other.first_start_ns
        self.count += other.count
        self.errors += other.errors
        self.total_us += other.total_us
        self.squares_us2 += other.squares_us2
        self.hist.merge(other.hist)
        self.bytes += other.bytes
        self.sent_bytes += other.sent_bytes
        self.first_start_ns = min(self.first_start_ns, other.first_start_ns)
        self.last_end_ns = max(self.last_end_ns, other.last_end_ns)
        add_counts(self.codes, other.codes)
        add_counts(self.error_kinds, other.error_kinds)
        add_counts(self.served_by, other.served_by)
        for name, at in other.first_served_ns.items():
            mine = self.first_served_ns.get(name)
            self.first_served_ns[name] = at if mine is None else min(mine, at)

    # Derived numbers, in JMeter's definitions.
    @property
    def mean_us(self) -> float:
        return self.total_us / self.count if self.count else 0.0

    @property
    def stddev_us(self) -> float:
        """Population standard deviation (JMeter divides by n, not n - 1): sqrt(n * sum(x^2) - sum(x)^2) / n,
        exact in integers up to the root."""
        n = self.count
        return math.sqrt(n * self.squares_us2 - self.total_us * self.total_us) / n if n else 0.0

    @property
    def window_s(self) -> float:
        """From the first sample's start to the last sample's end: JMeter's throughput window."""
        return max(0, self.last_end_ns - self.first_start_ns) / NS_PER_S if self.count else 0.0


def merge_labels(name: str, parts: Iterable[LabelStats]) -> LabelStats:
    total = LabelStats(name)
    for part in parts:
        total.merge(part)
    return total


class TimeSeries:
    """Per-second totals, indexed by whole seconds since the run's start: memory grows with seconds only.

    `served` counts, per second, the answers by the value of the count header (which server answered);
    `dropped` the open model's requests dropped in that second (see `LabelStats.dropped`).
    """

    __slots__ = ("bytes", "dropped", "errors", "max_us", "requests", "served", "total_us")

    def __init__(self) -> None:
        self.requests: list[int] = []
        self.errors: list[int] = []
        self.total_us: list[int] = []
        self.max_us: list[int] = []
        self.bytes: list[int] = []
        self.dropped: list[int] = []
        self.served: list[dict[str, int]] = []

    def _int_columns(self) -> tuple[list[int], ...]:
        return (self.requests, self.errors, self.total_us, self.max_us, self.bytes, self.dropped)

    def grow(self, seconds: int) -> None:
        """Make room for index `seconds - 1`."""
        missing = seconds - len(self.requests)
        if missing > 0:
            for column in self._int_columns():
                column.extend([0] * missing)
            self.served.extend({} for _ in range(missing))

    def add(self, second: int, *, elapsed_us: int, error: bool, received: int) -> None:
        second = max(second, 0)
        if second >= len(self.requests):
            self.grow(second + 1)
        self.requests[second] += 1
        self.errors[second] += error
        self.total_us[second] += elapsed_us
        self.bytes[second] += received
        if elapsed_us > self.max_us[second]:
            self.max_us[second] = elapsed_us

    def merge(self, other: TimeSeries) -> None:
        self.grow(len(other.requests))
        for mine, theirs in (
            (self.requests, other.requests),
            (self.errors, other.errors),
            (self.total_us, other.total_us),
            (self.bytes, other.bytes),
            (self.dropped, other.dropped),
        ):
            for i, value in enumerate(theirs):
                mine[i] += value
        for i, value in enumerate(other.max_us):
            self.max_us[i] = max(self.max_us[i], value)
        for i, counts in enumerate(other.served):
            add_counts(self.served[i], counts)

    def tail(self, start: int) -> TimeSeries:
        """A copy of seconds `start`... (what a worker sends the parent while it runs)."""
        part = TimeSeries()
        for mine, theirs in zip(part._int_columns(), self._int_columns(), strict=True):
            mine.extend(theirs[start:])
        part.served.extend(dict(counts) for counts in self.served[start:])
        return part

    def put(self, start: int, part: TimeSeries) -> None:
        """Overwrite seconds `start`... with `part` (a later `tail` of the same worker's series)."""
        self.grow(start + len(part))
        for mine, theirs in zip(self._int_columns(), part._int_columns(), strict=True):
            mine[start : start + len(theirs)] = theirs
        self.served[start : start + len(part.served)] = part.served

    def __len__(self) -> int:
        return len(self.requests)


class RunStats:
    """One run's (or one JTL file's) accumulators: one per label, in first-seen order, plus the series."""

    __slots__ = ("fine", "labels", "series")

    def __init__(self) -> None:
        self.labels: dict[str, LabelStats] = {}
        self.series = TimeSeries()
        # The same counts per FINE_NS bucket (by completion; dropped by when they were due), for charts.
        self.fine = TimeSeries()

    def label(self, name: str) -> LabelStats:
        stats = self.labels.get(name)
        if stats is None:
            stats = self.labels[name] = LabelStats(name)
        return stats

    def merge(self, other: RunStats) -> None:
        for name, stats in other.labels.items():
            self.label(name).merge(stats)
        self.series.merge(other.series)
        self.fine.merge(other.fine)

    def total(self, name: str = "TOTAL") -> LabelStats:
        return merge_labels(name, self.labels.values())

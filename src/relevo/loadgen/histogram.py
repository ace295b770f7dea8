"""A log-linear histogram of integer values (HdrHistogram's layout) that merges exactly across processes.

Values are microseconds. Every value below 2**SUB_BUCKET_BITS has its own counter; above that each power
of two is cut into HALF linear sub-buckets, so any recorded value is known to within 1/HALF (0.1 %) of
itself whatever its size, in a fixed number of counters. Two histograms with the same layout merge by
adding counters, which is what lets each worker process keep its own and the parent add them up.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping

# 2**11 counters per magnitude: three significant decimal digits, as HdrHistogram's usual setting.
SUB_BUCKET_BITS = 11
HALF_BITS = SUB_BUCKET_BITS - 1
HALF = 1 << HALF_BITS
# 2**40 µs is about 12.7 days: nothing a load test measures is longer; larger values are clamped.
MAX_VALUE_BITS = 40
MAX_VALUE = (1 << MAX_VALUE_BITS) - 1
COUNTS_LEN = (MAX_VALUE_BITS - SUB_BUCKET_BITS + 2) << HALF_BITS


def index_of(value: int) -> int:
    """The counter that holds `value` (clamped to 0..MAX_VALUE)."""
    if value <= 0:
        return 0
    if value > MAX_VALUE:
        value = MAX_VALUE
    shift = value.bit_length() - SUB_BUCKET_BITS
    if shift < 0:
        shift = 0
    return (shift << HALF_BITS) + (value >> shift)


def bounds_of(index: int) -> tuple[int, int]:
    """The lowest and highest value that land in counter `index`."""
    if index < 2 * HALF:
        return index, index
    shift = (index >> HALF_BITS) - 1
    sub = index - (shift << HALF_BITS)
    return sub << shift, ((sub + 1) << shift) - 1


class Histogram:
    """Counts of values in log-linear buckets, plus the exact total, minimum and maximum."""

    __slots__ = ("count", "counts", "max", "min")

    def __init__(self) -> None:
        # A flat list: the hot path increments one item, and a list index is the cheapest Python has.
        self.counts: list[int] = [0] * COUNTS_LEN
        self.count = 0
        self.min = MAX_VALUE + 1
        self.max = -1

    def record(self, value: int, times: int = 1) -> None:
        self.counts[index_of(value)] += times
        self.count += times
        value = min(max(value, 0), MAX_VALUE)
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value

    def merge(self, other: Histogram) -> None:
        """Add `other`'s counts to this one: the result is what one histogram seeing both streams holds."""
        if other.count == 0:
            return
        mine = self.counts
        for index, n in enumerate(other.counts):
            if n:
                mine[index] += n
        self.count += other.count
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    def sparse(self) -> tuple[int, int, int, dict[int, int]]:
        """(count, min, max, non-empty buckets): small enough to send between processes often."""
        return self.count, self.min, self.max, {i: n for i, n in enumerate(self.counts) if n}

    @classmethod
    def from_sparse(cls, parts: Iterable[tuple[int, int, int, dict[int, int]]]) -> Histogram:
        """The sum of `sparse()` snapshots (of several workers)."""
        hist = cls()
        for count, low, high, buckets in parts:
            for index, n in buckets.items():
                hist.counts[index] += n
            hist.count += count
            hist.min = min(hist.min, low)
            hist.max = max(hist.max, high)
        return hist

    @classmethod
    def between(cls, before: Mapping[int, int], after: Mapping[int, int]) -> Histogram:
        """The values recorded between two snapshots of one stream's non-empty buckets (`sparse()`'s,
        added up over workers): counts subtracted, in time proportional to the buckets in use. The
        window's own extremes are unknown, so its minimum and maximum are its buckets' bounds."""
        window = cls()
        counts = window.counts
        for index, now in after.items():
            added = now - before.get(index, 0)
            if added > 0:
                counts[index] = added
                window.count += added
                low, high = bounds_of(index)
                window.min = min(window.min, low)
                window.max = max(window.max, high)
        return window

    def value_at_percentile(self, percentile: float) -> int:
        """The smallest recorded value that at least `percentile` % of the values do not exceed.

        Reported as the highest value of its bucket (HdrHistogram's choice: never below the truth), then
        held within the exact minimum and maximum so that p0 and p100 are the real extremes.
        """
        if self.count == 0:
            return 0
        percentile = min(max(percentile, 0.0), 100.0)
        # The rank of the wanted value, 1-based; at least 1 so that p0 is the minimum.
        rank = max(1, math.ceil(percentile / 100.0 * self.count))
        seen = 0
        for index, n in enumerate(self.counts):
            if n:
                seen += n
                if seen >= rank:
                    high = bounds_of(index)[1]
                    return min(max(high, self.min), self.max)
        return self.max

    def buckets(self) -> Iterator[tuple[int, int, int]]:
        """Each non-empty bucket as (lowest value, highest value, count), in increasing order."""
        for index, n in enumerate(self.counts):
            if n:
                low, high = bounds_of(index)
                yield low, high, n

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Histogram):
            return NotImplemented
        return (self.count, self.min, self.max, self.counts) == (
            other.count,
            other.min,
            other.max,
            other.counts,
        )

    __hash__ = None  # type: ignore[assignment]  # mutable: equal by content, so not hashable

"""The log-linear histogram: bucket layout, precision, percentiles and exact merging."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from relevo.loadgen.histogram import COUNTS_LEN, HALF, MAX_VALUE, Histogram, bounds_of, index_of

values = st.integers(min_value=0, max_value=MAX_VALUE)


def exact_percentile(sorted_values: list[int], percentile: float) -> int:
    """The nearest-rank percentile: the smallest value with at least p % of values at or below it."""
    rank = max(1, math.ceil(percentile / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def test_small_values_have_their_own_bucket() -> None:
    """Below 2 * HALF every value is counted exactly."""
    for value in (0, 1, 7, 1000, 2 * HALF - 1):
        assert bounds_of(index_of(value)) == (value, value)


@given(values)
def test_every_value_lands_in_a_bucket_that_contains_it(value: int) -> None:
    """A value's bucket spans it, and is at most 1/HALF of the value wide (three significant digits)."""
    index = index_of(value)
    low, high = bounds_of(index)
    assert 0 <= index < COUNTS_LEN
    assert low <= value <= high
    assert high - low <= max(0, value) / HALF


def test_buckets_are_contiguous() -> None:
    """Each bucket starts right after the previous one ends: no value falls between two."""
    previous_high = -1
    for index in range(COUNTS_LEN):
        low, high = bounds_of(index)
        assert low == previous_high + 1
        previous_high = high
    assert previous_high == MAX_VALUE


def test_out_of_range_values_are_clamped() -> None:
    """Negative values count as 0 and huge ones as the largest: nothing is lost from the count."""
    hist = Histogram()
    hist.record(-5)
    hist.record(MAX_VALUE * 4)
    assert hist.count == 2
    assert (hist.min, hist.max) == (0, MAX_VALUE)


def test_percentiles_of_hand_made_values() -> None:
    """1..100 ms in µs: p50 is 50 ms, p90 90 ms, p100 the maximum, within a bucket's width."""
    hist = Histogram()
    for ms in range(1, 101):
        hist.record(ms * 1000)
    for percentile, expected in ((50, 50_000), (90, 90_000), (99, 99_000), (100, 100_000)):
        got = hist.value_at_percentile(percentile)
        assert expected <= got <= expected * (1 + 1 / HALF)
    assert hist.value_at_percentile(0) == 1000


@given(st.lists(values, min_size=1, max_size=300), st.floats(min_value=0, max_value=100))
def test_percentiles_are_within_the_precision_of_the_exact_ones(data: list[int], percentile: float) -> None:
    """The reported value is never below the exact one and above it by at most one bucket width."""
    hist = Histogram()
    for value in data:
        hist.record(value)
    exact = exact_percentile(sorted(data), percentile)
    got = hist.value_at_percentile(percentile)
    assert exact <= got <= max(exact + exact // HALF, exact)
    assert hist.min <= got <= hist.max


@given(st.lists(values, max_size=200), st.lists(values, max_size=200))
def test_merge_equals_recording_both_streams_in_one(first: list[int], second: list[int]) -> None:
    """What two workers' histograms add up to is what one histogram of all values holds."""
    a, b, both = Histogram(), Histogram(), Histogram()
    for value in first:
        a.record(value)
        both.record(value)
    for value in second:
        b.record(value)
        both.record(value)
    a.merge(b)
    assert a == both


def test_an_empty_histogram_reports_zero() -> None:
    """No samples: every percentile is 0 rather than an error."""
    assert Histogram().value_at_percentile(99) == 0


def test_between_holds_only_the_values_recorded_after_the_earlier_snapshot() -> None:
    """A live window's percentiles: the buckets of a later snapshot minus an earlier one's are exactly the
    histogram of the values recorded in between (so a slow tail after a fast start shows at once)."""
    hist = Histogram()
    for value in range(1, 1001):  # 1..1000 µs before the first snapshot
        hist.record(value)
    earlier = dict(hist.sparse()[3])
    later = Histogram()
    for value in (50_000, 60_000, 70_000, 80_000):
        hist.record(value)
        later.record(value)
    window = Histogram.between(earlier, hist.sparse()[3])
    assert window.count == 4
    assert list(window.buckets()) == list(later.buckets())
    assert window.value_at_percentile(50.0) == later.value_at_percentile(50.0)
    assert 60_000 <= window.value_at_percentile(50.0) <= 60_000 * 1.001
    assert Histogram.between(earlier, earlier).count == 0

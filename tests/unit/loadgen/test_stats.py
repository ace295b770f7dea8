"""The accumulators against hand-computed values and JMeter's definitions."""

from __future__ import annotations

import math
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relevo.loadgen.client import Sampler
from relevo.loadgen.plan import HttpRequest
from relevo.loadgen.recorder import SampleRecorder
from relevo.loadgen.stats import ErrorKind, LabelStats, RunStats, TimeSeries, is_success

MS = 1_000_000  # ns


def add_ms(stats: LabelStats, start_ms: int, elapsed_ms: int, code: str = "200", received: int = 100) -> None:
    stats.add(
        start_ns=start_ms * MS,
        end_ns=(start_ms + elapsed_ms) * MS,
        code=code,
        success=is_success(int(code)),
        received=received,
        sent=50,
    )


def test_hand_computed_summary() -> None:
    """1, 2, 3, 4, 10 ms: mean 4, population std dev sqrt(10), window from first start to last end."""
    stats = LabelStats("GET /")
    for start, elapsed in ((0, 1), (100, 2), (200, 3), (300, 4), (990, 10)):
        add_ms(stats, start, elapsed)
    assert stats.count == 5
    assert stats.mean_us == 4000
    # Population variance: ((-3)² + (-2)² + (-1)² + 0² + 6²) / 5 = 50 / 5 = 10 ms².
    assert stats.stddev_us == pytest.approx(math.sqrt(10) * 1000)
    assert stats.window_s == pytest.approx(1.0)  # 0 ms → 990 + 10 ms
    assert (stats.hist.min, stats.hist.max) == (1000, 10000)
    assert stats.bytes == 500 and stats.sent_bytes == 250


def test_3xx_succeeds_4xx_and_5xx_fail() -> None:
    """JMeter's HTTP rule: 2xx and 3xx are successes; the error kind of an HTTP failure is its code."""
    stats = LabelStats("x")
    for code in ("200", "204", "302", "304", "404", "503", "503"):
        add_ms(stats, 0, 1, code)
    assert stats.errors == 3
    assert stats.error_kinds == {"404": 1, "503": 2}
    assert stats.codes["302"] == 1


def test_failures_without_a_response_keep_their_kind() -> None:
    """A refused connection is an error of kind 'refused', counted with its elapsed time."""
    stats = LabelStats("x")
    stats.add(start_ns=0, end_ns=2 * MS, code="Non HTTP", success=False, error_kind=ErrorKind.REFUSED)
    assert stats.errors == 1
    assert stats.error_kinds == {"refused": 1}


@given(
    st.lists(st.integers(min_value=0, max_value=10**7), min_size=1, max_size=60),
    st.lists(st.integers(min_value=0, max_value=10**7), min_size=1, max_size=60),
)
def test_merged_sums_match_the_textbook_formulas(first: list[int], second: list[int]) -> None:
    """Mean and population std dev of merged accumulators equal those of all values together."""
    a, b = LabelStats("x"), LabelStats("x")
    for stats, values in ((a, first), (b, second)):
        for i, us in enumerate(values):
            stats.add(start_ns=i * 1000, end_ns=i * 1000 + us * 1000, code="200", success=True)
    a.merge(b)
    values = first + second
    assert a.count == len(values)
    assert a.mean_us == pytest.approx(statistics.fmean(values))
    assert a.stddev_us == pytest.approx(statistics.pstdev(values), rel=1e-6, abs=1e-6)
    assert (a.hist.min, a.hist.max) == (min(values), max(values))


def test_merge_keeps_the_widest_window_and_adds_counters() -> None:
    """Merging takes the earliest start and the latest end, and adds errors, bytes, codes, servers."""
    a, b = LabelStats("x"), LabelStats("x")
    a.add(start_ns=5 * MS, end_ns=6 * MS, code="200", success=True, received=10, served_by="web1")
    b.add(start_ns=1 * MS, end_ns=9 * MS, code="503", success=False, received=20, served_by="web2")
    a.merge(b)
    assert (a.first_start_ns, a.last_end_ns) == (1 * MS, 9 * MS)
    assert a.errors == 1 and a.bytes == 30
    assert a.served_by == {"web1": 1, "web2": 1}
    assert a.codes == {"200": 1, "503": 1}


def test_merging_into_an_empty_accumulator_copies_it() -> None:
    """An empty side (a worker with no sample of this label) changes nothing."""
    a, b = LabelStats("x"), LabelStats("x")
    add_ms(b, 10, 5)
    a.merge(b)
    a.merge(LabelStats("x"))
    assert (a.count, a.mean_us, a.first_start_ns) == (1, 5000, 10 * MS)


def test_recorder_hot_path_equals_the_general_path() -> None:
    """`SampleRecorder.response` (inlined for speed) leaves the same accumulator as `LabelStats.add`."""
    recorder = SampleRecorder(t0_ns=0)
    sampler = Sampler(
        HttpRequest(label="GET /", host="127.0.0.1", port=80), recorder.label("GET /"), ("127.0.0.1", 80)
    )
    reference = LabelStats("GET /")
    samples = [(0, 1_500_000, 200, "web1"), (MS, 40 * MS, 503, None), (3 * MS, 3 * MS + 123_456, 302, "web2")]
    for start, end, status, served in samples:
        recorder.response(sampler, start, end, status, 400, served)
        reference.add(
            start_ns=start,
            end_ns=end,
            code=str(status),
            success=is_success(status),
            received=400,
            sent=sampler.sent,
            served_by=served,
        )
    got = recorder.stats.labels["GET /"]
    for attr in (
        "count",
        "errors",
        "total_us",
        "squares_us2",
        "bytes",
        "sent_bytes",
        "first_start_ns",
        "last_end_ns",
    ):
        assert getattr(got, attr) == getattr(reference, attr), attr
    assert got.hist == reference.hist
    assert (got.codes, got.error_kinds, got.served_by) == (
        reference.codes,
        reference.error_kinds,
        reference.served_by,
    )
    assert (recorder.done, recorder.failed) == (3, 1)


def test_time_series_buckets_by_the_second_a_sample_ended() -> None:
    """Samples land in the second (from the run's start) in which they ended; merging adds per second."""
    recorder = SampleRecorder(t0_ns=0)
    sampler = Sampler(
        HttpRequest(label="x", host="127.0.0.1", port=80), recorder.label("x"), ("127.0.0.1", 80)
    )
    recorder.response(sampler, 0, 500 * MS, 200, 10, None)
    recorder.response(sampler, 900 * MS, 1_200 * MS, 503, 10, None)
    recorder.failure(sampler, 2_000 * MS, 2_100 * MS, ErrorKind.TIMEOUT, sent=sampler.sent)
    series = recorder.stats.series
    assert series.requests == [1, 1, 1]
    assert series.errors == [0, 1, 1]
    assert series.max_us == [500_000, 300_000, 100_000]
    other = TimeSeries()
    other.add(3, elapsed_us=7, error=False, received=1)
    series.merge(other)
    assert series.requests == [1, 1, 1, 1]


def test_run_stats_total_merges_labels_in_order() -> None:
    """TOTAL is every label merged; labels keep the order they were first seen in."""
    run = RunStats()
    add_ms(run.label("b"), 0, 2)
    add_ms(run.label("a"), 0, 4)
    assert list(run.labels) == ["b", "a"]
    total = run.total()
    assert (total.label, total.count, total.mean_us) == ("TOTAL", 2, 3000)

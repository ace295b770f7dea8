"""The Summary Report as data, and its renderers: JMeter's cell formats, JSON keys."""

from __future__ import annotations

import io
import json
import math
import re

import pytest
from rich.console import Console

from relevo.loadgen.stats import RunStats
from relevo.loadgen.summary import TOTAL_LABEL, row_of, summarize
from relevo.report.as_json import to_dict
from relevo.report.table import jmeter_cells, print_report, rate_text

MS = 1_000_000


def sample_run() -> RunStats:
    """web1/web2 answering 4 requests in 2 s, one of them a 503."""
    run = RunStats()
    label = run.label("GET /")
    for start_ms, elapsed_ms, code, server in (
        (0, 10, "200", "web1"),
        (500, 20, "200", "web2"),
        (1000, 5, "503", None),
        (1990, 10, "302", "web1"),
    ):
        label.add(
            start_ns=start_ms * MS,
            end_ns=(start_ms + elapsed_ms) * MS,
            code=code,
            success=code != "503",
            received=1024,
            sent=100,
            served_by=server,
        )
        run.series.add(
            (start_ms + elapsed_ms) // 1000, elapsed_us=elapsed_ms * 1000, error=code == "503", received=1024
        )
    return run


def test_row_follows_jmeter_definitions() -> None:
    """Average 11.25 ms, population std dev, 25 % errors, 4 samples / 2 s, 4 KiB / 2 s."""
    row = row_of(sample_run().labels["GET /"])
    assert row.samples == 4 and row.errors == 1
    assert row.average_ms == pytest.approx(11.25)
    values = [10, 20, 5, 10]
    assert row.stddev_ms == pytest.approx(math.sqrt(sum((v - 11.25) ** 2 for v in values) / 4))
    assert row.error_pct == pytest.approx(25.0)
    assert row.throughput_rps == pytest.approx(2.0)  # 4 samples from 0 ms to 2000 ms
    assert row.received_kb_s == pytest.approx(2.0) and row.sent_kb_s == pytest.approx(400 / 2 / 1024)
    assert row.avg_bytes == 1024
    assert dict(row.errors_by_kind) == {"503": 1}
    assert dict(row.served_by) == {"web1": 2, "web2": 1}


def test_cells_are_formatted_as_jmeter_does() -> None:
    """Times truncated to whole ms, std dev and KB/sec with 2 decimals, rates per sec/min/hour."""
    cells = jmeter_cells(row_of(sample_run().labels["GET /"]))
    assert cells == ("GET /", "4", "11", "5", "20", "5.45", "25.00%", "2.0/sec", "2.00", "0.20", "1024.0")
    assert rate_text(0.5) == "30.0/min"
    assert rate_text(0.001) == "3.6/hour"


def test_report_has_a_total_row_and_series() -> None:
    """TOTAL merges the labels; the per-second series keeps each second."""
    report = summarize(sample_run(), meta={"source": "test"})
    assert report.total.label == TOTAL_LABEL and report.total.samples == 4
    assert [s.samples for s in report.series] == [2, 1, 1]
    assert report.series[1].errors == 1


def test_json_has_the_documented_keys() -> None:
    """Scripts can rely on these top-level keys (TOTAL's numbers), plus labels and the series."""
    data = to_dict(summarize(sample_run()))
    for key in (
        "samples",
        "errors",
        "error_pct",
        "average_ms",
        "min_ms",
        "max_ms",
        "stddev_ms",
        "throughput_rps",
        "p50_ms",
        "p90_ms",
        "p95_ms",
        "p99_ms",
        "p999_ms",
        "served_by",
        "errors_by_kind",
        "timeseries",
    ):
        assert key in data, key
    assert data["samples"] == 4 and data["error_pct"] == 25.0 and data["served_by"] == {"web1": 2, "web2": 1}
    assert data["labels"][0]["label"] == "GET /"
    json.dumps(data)  # serialisable as it is


def test_table_text_shows_jmeter_columns() -> None:
    """The printed report carries JMeter's column names, the TOTAL row, and the served-by counts."""
    out = io.StringIO()
    print_report(summarize(sample_run()), Console(file=out, width=80))
    text = out.getvalue()
    # A file gets the whole table, not one cut to 80 columns.
    assert re.search(r"TOTAL\s*│\s*4\s*│\s*11\s*│\s*5\s*│\s*20\s*│\s*5.45\s*│\s*25.00%", text)
    for heading in (
        "# Samples",
        "Std. Dev.",
        "Error %",
        "Throughput",
        "Received KB/sec",
        "TOTAL",
        "web2",
        "503",
    ):
        assert heading in text

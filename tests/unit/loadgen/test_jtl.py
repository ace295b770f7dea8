"""JTL files: JMeter 2.13's real output, 5.x's columns, header or not, and relevo's own round trip."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relevo.loadgen.jtl import COLUMNS_2_13, COLUMNS_5, JtlError, JtlSample, read_samples, read_stats, to_text
from relevo.loadgen.summary import summarize
from relevo.report.table import jmeter_cells

# A copy of shared/fixtures' file: written by a real JMeter 2.13 (10 threads x 20 loops of GET /).
FIXTURE = Path(__file__).parent / "data" / "jmeter-2.13-200-samples.jtl"


def fixture_rows() -> list[dict[str, str]]:
    with FIXTURE.open(newline="") as handle:
        return list(csv.DictReader(handle))


def jmeter_expectations(rows: list[dict[str, str]]) -> dict[str, float]:
    """The Summary Report's numbers for these rows, by JMeter's Calculator definitions."""
    elapsed = [int(r["elapsed"]) for r in rows]
    starts = [int(r["timeStamp"]) for r in rows]
    ends = [s + e for s, e in zip(starts, elapsed, strict=True)]
    n = len(rows)
    mean = sum(elapsed) / n
    window_s = (max(ends) - min(starts)) / 1000
    received = sum(int(r["bytes"]) for r in rows)
    return {
        "samples": n,
        "average": int(mean),  # the table's Average: (long) getMean()
        "min": min(elapsed),
        "max": max(elapsed),
        "stddev": math.sqrt(sum(e * e for e in elapsed) / n - mean * mean),  # population
        "error_pct": 100 * sum(r["success"] != "true" for r in rows) / n,
        "throughput": n / window_s,
        "received_kb_s": received / window_s / 1024,
        "avg_bytes": received / n,
    }


def check(path: Path, expected: dict[str, float]) -> None:
    report = summarize(read_stats(path))
    total = report.total
    assert total.samples == expected["samples"]
    assert int(total.average_ms) == expected["average"]
    assert (total.min_ms, total.max_ms) == (expected["min"], expected["max"])
    assert total.stddev_ms == pytest.approx(expected["stddev"])
    assert total.error_pct == pytest.approx(expected["error_pct"])
    assert total.throughput_rps == pytest.approx(expected["throughput"])
    assert total.received_kb_s == pytest.approx(expected["received_kb_s"])
    assert total.avg_bytes == pytest.approx(expected["avg_bytes"])
    cells = jmeter_cells(total)
    assert cells[2] == str(expected["average"])
    assert cells[7] == f"{expected['throughput']:.1f}/sec"


def test_jmeter_213_file_with_header() -> None:
    """`relevo report` on JMeter 2.13's own file gives JMeter's Summary Report numbers."""
    rows = fixture_rows()
    check(FIXTURE, jmeter_expectations(rows))


def test_headerless_213_and_5x_files_give_the_same_report(tmp_path: Path) -> None:
    """Without a header the columns are known by their count: 2.13's 12 or 5.x's 17."""
    rows = fixture_rows()
    expected = jmeter_expectations(rows)
    old = tmp_path / "old.jtl"
    with old.open("w", newline="") as handle:
        writer = csv.writer(handle)
        for row in rows:
            writer.writerow([row[c] for c in COLUMNS_2_13])
    check(old, expected)
    new = tmp_path / "new.jtl"
    with new.open("w", newline="") as handle:
        writer = csv.writer(handle)
        for row in rows:
            full = {
                **row,
                "failureMessage": "",
                "sentBytes": "120",
                "URL": "http://h/",
                "IdleTime": "0",
                "Connect": "1",
            }
            writer.writerow([full[c] for c in COLUMNS_5])
    check(new, expected)
    assert summarize(read_stats(new)).total.sent_kb_s > 0


def test_label_rows_in_first_seen_order(tmp_path: Path) -> None:
    """Several labels give one row each, in the order they first appear, then TOTAL."""
    samples = [
        JtlSample(timestamp_ms=1000, elapsed_ms=10, label="login", response_code="200"),
        JtlSample(timestamp_ms=1005, elapsed_ms=20, label="home", response_code="200"),
        JtlSample(timestamp_ms=1010, elapsed_ms=30, label="login", response_code="503", success=False),
    ]
    path = tmp_path / "two.jtl"
    path.write_text(to_text(samples))
    report = summarize(read_stats(path))
    assert [r.label for r in report.rows] == ["login", "home"]
    assert report.rows[0].errors_by_kind == {"503": 1}
    assert report.total.samples == 3 and report.total.error_pct == pytest.approx(100 / 3)


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("Non HTTP response code: org.apache.http.conn.HttpHostConnectException", "refused"),
        ("Non HTTP response code: java.net.ConnectException", "refused"),
        ("Non HTTP response code: java.net.SocketTimeoutException", "timeout"),
        ("Non HTTP response code: java.net.SocketException", "reset"),
        ("Non HTTP response code: org.apache.http.NoHttpResponseException", "incomplete"),
        ("503", "503"),
    ],
)
def test_jmeter_failures_map_to_relevo_kinds(code: str, kind: str) -> None:
    """JMeter's exception names for failed connections become relevo's error kinds."""
    assert (
        JtlSample(timestamp_ms=0, elapsed_ms=1, label="x", response_code=code, success=False).error_kind
        == kind
    )


text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),  # type: ignore[arg-type]
    max_size=20,
)
samples = st.builds(
    JtlSample,
    timestamp_ms=st.integers(min_value=0, max_value=2**42),
    elapsed_ms=st.integers(min_value=0, max_value=10**6),
    label=text,
    response_code=text,
    response_message=text,
    thread_name=text,
    success=st.booleans(),
    failure_message=text,
    bytes=st.integers(min_value=0, max_value=10**9),
    sent_bytes=st.integers(min_value=0, max_value=10**6),
    url=text,
)


@settings(deadline=None)  # a time limit per example fails on a loaded machine, not on a slow parser
@given(st.lists(samples, min_size=1, max_size=20))
def test_round_trip(rows: list[JtlSample]) -> None:
    """Whatever the text (commas, quotes, line breaks), rows written are the rows read back."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.jtl"
        path.write_text(to_text(rows), encoding="utf-8", newline="")
        assert list(read_samples(path)) == rows


def test_unknown_layouts_are_refused(tmp_path: Path) -> None:
    """A headerless file with an unknown column count, or an XML result file, is a clear error."""
    odd = tmp_path / "odd.jtl"
    odd.write_text("1,2,3\n")
    with pytest.raises(JtlError, match="columns"):
        list(read_samples(odd))
    xml = tmp_path / "x.jtl"
    xml.write_text('<?xml version="1.0"?><testResults/>')
    with pytest.raises(JtlError, match="XML"):
        list(read_samples(xml))
    bad = tmp_path / "bad.jtl"
    bad.write_text("timeStamp,elapsed,label,success\n2024/01/01,5,x,true\n")
    with pytest.raises(JtlError, match=r"bad\.jtl:2"):
        list(read_samples(bad))

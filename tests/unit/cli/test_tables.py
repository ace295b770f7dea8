"""Every table a person reads fits 80 columns without losing a cell, and prints whole at 120 and in
pipes: bench's Summary Report, status, events."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from relevo.cli.cluster import status_table
from relevo.cli.controller import event_line
from relevo.loadgen.stats import RunStats
from relevo.loadgen.summary import summarize
from relevo.report.table import JMETER_COLUMNS, PIPE_WIDTH, jmeter_cells, print_report, render

WIDTHS = [80, 120]


def shown(renderable: object, width: int) -> str:
    console = Console(width=width, file=io.StringIO(), color_system=None)
    console.print(renderable)
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert max(len(line) for line in out.splitlines()) <= width
    assert "…" not in out, "a cell was cut short"
    return out


def a_report(labels: tuple[str, ...] = ("GET /", "GET /search?q=relevo&page=2")):
    stats = RunStats()
    for label in labels:
        st = stats.label(label)
        for i in range(2000):
            start = i * 1_000_000
            st.add(
                start_ns=start,
                end_ns=start + (i % 70 + 1) * 1_300_000,
                code="200",
                success=True,
                received=10_240,
                sent=96,
                served_by=f"web{i % 2 + 1}",
            )
        st.add(start_ns=0, end_ns=12_345_000_000, code="503", success=False, received=0, sent=96)
    return summarize(stats)


@pytest.mark.parametrize("width", WIDTHS)
def test_summary_report_fits(width: int) -> None:
    """Every cell of JMeter's Summary Report (each label and TOTAL) is shown whole at 80 and 120 columns."""
    report = a_report()
    out = shown(render(report, width=width), width)
    for row in [*report.rows, report.total]:
        for cell in jmeter_cells(row):
            assert cell in out
    for column in JMETER_COLUMNS[1:]:
        assert column in out


def test_summary_report_is_jmeters_layout_when_it_fits() -> None:
    """With room (a pipe gets 160 columns), one row per label as JMeter prints it; unchanged by the
    terminal's width."""
    report = a_report(("GET /",))
    out = io.StringIO()
    print_report(report, Console(file=out, width=80))  # a StringIO is not a terminal: a pipe
    header = next(line for line in out.getvalue().splitlines() if "# Samples" in line)
    assert all(column in header for column in JMETER_COLUMNS)
    assert max(len(line) for line in out.getvalue().splitlines()) <= PIPE_WIDTH


def status_of(address: str = "127.210.123.12:8080") -> dict[str, object]:
    nodes = []
    for name, role, primary in [
        ("ha1", "balancer", None),
        ("web1", "web", None),
        ("web2", "web", None),
        ("web1bck", "standby", "web1"),
        ("web2bck", "standby", "web2"),
    ]:
        nodes.append(
            {
                "name": name,
                "role": role,
                "standby_for": primary,
                "provider": "local",
                "state": "running",
                "health": "MAINT" if primary else "UP",
                "address": address,
                "current_sessions": 1234,
                "total_requests": 123_456_789,
            }
        )
    return {"nodes": nodes}


@pytest.mark.parametrize("width", WIDTHS)
def test_status_fits(width: int) -> None:
    """`relevo status`'s table shows each node's name, role, state, health, address and counters whole,
    one line per node, at 80 and 120 columns."""
    out = shown(status_table(status_of(), "cluster 'seed' (cold standbys)"), width)
    for name in ("ha1", "web1", "web2", "web1bck", "web2bck"):
        line = next(line for line in out.splitlines() if line.startswith(name + " "))
        assert "127.210.123.12:8080" in line and "123456789" in line and "running" in line
    assert "standby→web1" in out


@pytest.mark.parametrize("width", WIDTHS)
def test_events_fit(width: int) -> None:
    """A long failover event wraps at word boundaries within 80 columns, nothing lost."""
    event = {
        "ts": 1_760_000_000.25,
        "kind": "failover",
        "node": "web1bck",
        "from": "stopped",
        "to": "serving",
        "reason": "web1 is DOWN after 3 failed probes (connection refused); standby started",
        "durations": {"detected": 0.61, "standby_up": 0.35, "serving": 1.02},
    }
    out = shown(event_line(event), width)
    words = " ".join(out.split())
    for part in (
        "failover",
        "web1bck",
        "stopped → serving",
        "connection refused",
        "standby started",
        "610 ms",
    ):
        assert part in words

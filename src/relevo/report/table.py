"""The Summary Report for a terminal: JMeter's table as JMeter formats it, then relevo's extras."""

from __future__ import annotations

import io

from rich.console import Console, Group, RenderableType
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from relevo.loadgen.summary import PERCENTILES, SummaryReport, SummaryRow

JMETER_COLUMNS = (
    "Label",
    "# Samples",
    "Average",
    "Min",
    "Max",
    "Std. Dev.",
    "Error %",
    "Throughput",
    "Received KB/sec",
    "Sent KB/sec",
    "Avg. Bytes",
)


def rate_text(rate: float) -> str:
    """JMeter's RateRenderer: per second, or per minute / hour when that would read below 1."""
    unit = "sec"
    if rate < 1.0:
        rate, unit = rate * 60.0, "min"
    if rate < 1.0:
        rate, unit = rate * 60.0, "hour"
    return f"{rate:.1f}/{unit}"


def jmeter_cells(row: SummaryRow) -> tuple[str, ...]:
    """A row's cells exactly as JMeter's Summary Report shows them (times truncated to whole ms)."""
    return (
        row.label,
        str(row.samples),
        str(int(row.average_ms)),
        str(int(row.min_ms)),
        str(int(row.max_ms)),
        f"{row.stddev_ms:.2f}",
        f"{row.error_pct:.2f}%",
        rate_text(row.throughput_rps),
        f"{row.received_kb_s:.2f}",
        f"{row.sent_kb_s:.2f}",
        f"{row.avg_bytes:.1f}",
    )


def _pct_name(p: float) -> str:
    return f"p{p:g}"


def summary_table(report: SummaryReport, width: int | None = None) -> Table:
    """JMeter's table, one row per label, when it fits in `width` columns (None: always); else the same
    cells turned on their side (one row per column, one column per label), which fits 80 columns."""
    table = Table(title="Summary Report", title_justify="left", header_style="bold")
    for i, name in enumerate(JMETER_COLUMNS):
        table.add_column(name, justify="left" if i == 0 else "right", no_wrap=True)
    rows = [*report.rows, report.total]
    for i, row in enumerate(rows):
        style = "bold" if i == len(rows) - 1 else None
        table.add_row(*jmeter_cells(row), style=style, end_section=i == len(rows) - 2)
    if width is None or fits(table, width):
        return table
    return tall_summary_table(report)


def tall_summary_table(report: SummaryReport) -> Table:
    table = Table(title="Summary Report", title_justify="left", header_style="bold")
    table.add_column("", no_wrap=True)
    rows = [*report.rows, report.total]
    for i, row in enumerate(rows):
        table.add_column(
            row.label, justify="right", overflow="fold", style="bold" if i == len(rows) - 1 else None
        )
    cells = [jmeter_cells(row) for row in rows]
    for k, name in enumerate(JMETER_COLUMNS[1:], start=1):
        table.add_row(name, *(c[k] for c in cells))
    return table


def fits(table: Table, width: int) -> bool:
    """Whether `table` shows whole at `width` columns (rich would otherwise squeeze or cut cells)."""
    console = Console(width=10_000, color_system=None, file=io.StringIO())
    return Measurement.get(console, console.options, table).maximum <= width


def latency_table(report: SummaryReport) -> Table:
    table = Table(
        title="Response times (ms, from relevo's histogram)", title_justify="left", header_style="bold"
    )
    table.add_column("Label", overflow="fold")
    for p in PERCENTILES:
        table.add_column(_pct_name(p), justify="right")
    table.add_column("max", justify="right")
    rows = [*report.rows, report.total]
    for i, row in enumerate(rows):
        cells = [f"{row.percentile_ms(p):.2f}" for p in PERCENTILES]
        table.add_row(row.label, *cells, f"{row.max_ms:.2f}", end_section=i == len(rows) - 2)
    return table


def counts_table(title: str, what: str, counts: dict[str, int], samples: int) -> Table:
    table = Table(title=title, title_justify="left", header_style="bold")
    table.add_column(what, overflow="fold")
    table.add_column("samples", justify="right")
    table.add_column("% of all", justify="right")
    for name, n in counts.items():
        table.add_row(name, str(n), f"{100.0 * n / samples:.2f}%" if samples else "-")
    return table


def series_table(report: SummaryReport) -> Table:
    table = Table(title="Per second", title_justify="left", header_style="bold")
    for name in ("second", "samples", "errors", "average ms", "max ms", "received KB"):
        table.add_column(name, justify="right")
    for s in report.series:
        table.add_row(
            str(s.second),
            str(s.samples),
            str(s.errors),
            f"{s.average_ms:.2f}",
            f"{s.max_ms:.2f}",
            f"{s.received_kb:.1f}",
        )
    return table


def render(report: SummaryReport, *, series: bool = False, width: int | None = None) -> RenderableType:
    """Everything a person reads after a run, in reading order, laid out for `width` columns."""
    total = report.total
    parts: list[RenderableType] = [summary_table(report, width), latency_table(report)]
    if total.errors_by_kind:
        parts.append(counts_table("Errors by kind", "kind", dict(total.errors_by_kind), total.samples))
    if total.served_by:
        parts.append(counts_table("Served by", "server", dict(total.served_by), total.samples))
    dropped = total.dropped
    if dropped:
        parts.append(
            Text(
                f"dropped: {dropped} requests were due while every connection was busy and never sent "
                "(raise --threads/--connections, or lower --rate)",
                style="yellow",
            )
        )
    if series and report.series:
        parts.append(series_table(report))
    if report.interrupted:
        cut = f" ({total.unfinished:,} requests of the plan not sent or cut off)" if total.unfinished else ""
        parts.append(
            Text(f"interrupted: these are the samples finished before the stop{cut}", style="yellow")
        )
    return Group(*parts)


# A file or a pipe gets every table whole, at this width, whatever the terminal (if any) is.
PIPE_WIDTH = 160


def print_report(report: SummaryReport, console: Console, *, series: bool = False) -> None:
    if not console.is_terminal:
        console = Console(file=console.file, width=PIPE_WIDTH, color_system=None)
    console.print(render(report, series=series, width=console.width))

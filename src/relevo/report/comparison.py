"""One comparison table for many scenarios, in 80 columns: per scenario the Summary Report's numbers
plus p50/p95/p99, then a line with failed requests, failover times and each server's share. The seed's
published row sits under each of its five, marked as theirs. Plain text: it reads the same on a
terminal, in a pipe and in a CI log."""

from __future__ import annotations

from collections.abc import Sequence

from relevo.report.table import rate_text
from relevo.scenarios.result import ScenarioResult, SteadyCheck, shares
from relevo.scenarios.seed import SEED_ROWS, SeedRow

WIDTH = 80
# (header, width): every cell right-aligned but the first; the widths add up to at most WIDTH.
COLUMNS = (
    ("scenario", 21),
    ("samples", 7),
    ("avg", 5),
    ("min", 4),
    ("max", 6),
    ("sd", 7),
    ("err%", 7),
    ("req/s", 8),
    ("p50", 5),
    ("p95", 5),
    ("p99", 5),
)
NOTE = (
    "times in ms (avg/min/max truncated to whole ms as JMeter does; sd: std. dev.); p50-p99 from "
    "relevo's histogram; "
    "'theirs': the seed's published JMeter run (1000 threads x 50 loops, one run each)"
)


def _row(cells: Sequence[str]) -> str:
    parts = []
    for i, ((_, width), cell) in enumerate(zip(COLUMNS, cells, strict=True)):
        if len(cell) > width - (0 if i == 0 else 1):
            cell = cell[: width - 2] + "…" if i == 0 else cell
        parts.append(cell.ljust(width) if i == 0 else cell.rjust(width))
    return "".join(parts).rstrip()


def _ms(value: float) -> str:
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def _rate(rps: float) -> str:
    return rate_text(rps).removesuffix("/sec")


def ours(result: ScenarioResult) -> str:
    t = result.report.total
    pct = t.percentiles_ms
    return _row(
        (
            result.scenario.name,
            str(t.samples),
            str(int(t.average_ms)),
            str(int(t.min_ms)),
            str(int(t.max_ms)),
            f"{t.stddev_ms:.1f}",
            f"{t.error_pct:.2f}",
            _rate(t.throughput_rps),
            _ms(pct.get(50.0, 0.0)),
            _ms(pct.get(95.0, 0.0)),
            _ms(pct.get(99.0, 0.0)),
        )
    )


def theirs(row: SeedRow) -> str:
    return _row(
        (
            "  theirs (seed)",
            str(row.samples),
            str(row.mean_ms),
            str(row.min_ms),
            str(row.max_ms),
            f"{row.stddev_ms:.1f}",
            f"{row.error_pct:.2f}",
            f"{row.throughput_rps:.1f}",
            "-",
            "-",
            "-",
        )
    )


def details(result: ScenarioResult) -> list[str]:
    """The second line of a scenario: failures, failover times, shares; wrapped to WIDTH."""
    if result.skipped is not None:
        return _wrap([f"skipped: {result.skipped}"], indent="  ")
    failed = result.failed
    words = [f"failed {failed}"]
    kinds = result.report.total.errors_by_kind
    if kinds:
        words[0] += " (" + ", ".join(f"{k}: {n}" for k, n in list(kinds.items())[:3]) + ")"
    for f in result.failovers:
        timing = []
        if f.detection_s is not None:
            timing.append(f"detect {f.detection_s:.2f}s")
        if f.until_served_s is not None:
            timing.append(f"serving {f.until_served_s:.2f}s")
        words.append(f"→{f.standby}" + (" " + " ".join(timing) if timing else ""))
    share = shares(result)
    if share:
        words.append(" ".join(f"{name} {pct:.0f}%" for name, pct in share.items()))
    if result.steady:
        words.append("steady " + ", ".join(_steady(c) for c in result.steady))
    if result.verdicts:
        broken = [v for v in result.verdicts if not v.ok]
        words.append("FAILED: " + "; ".join(v.what for v in broken) if broken else "ok")
    for check in result.steady:
        if not check.ok:  # what differs, in full: the point of the check
            words.extend(f"not steady {check.when}: {d}" for d in check.differences)
    return _wrap(words, indent="  ")


def _steady(check: SteadyCheck) -> str:
    if not check.ok:
        return f"{check.when} NO"
    return f"{check.when} ok" + (f" in {check.took_s:.1f}s" if check.when == "after" else "")


def _wrap(words: Sequence[str], *, indent: str) -> list[str]:
    lines: list[str] = []
    line = indent
    for word in words:
        piece = word if line == indent else " · " + word
        if len(line) + len(piece) > WIDTH and line != indent:
            lines.append(line)
            line = indent + word
        else:
            line += piece
    lines.append(line)
    return [text[: WIDTH - 1] + "…" if len(text) > WIDTH else text for text in lines]


def comparison_lines(results: Sequence[ScenarioResult]) -> list[str]:
    lines = [_row([name for name, _ in COLUMNS]), "-" * WIDTH]
    for result in results:
        lines.append(ours(result))
        seed = SEED_ROWS.get(result.scenario.seed_row or "")
        if seed is not None:
            lines.append(theirs(seed))
        lines.extend(details(result))
    lines.append("-" * WIDTH)
    lines.extend(_fold(NOTE))
    return lines


def _fold(text: str) -> list[str]:
    lines: list[str] = []
    line = ""
    for word in text.split(" "):
        if line and len(line) + 1 + len(word) > WIDTH:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return lines


def comparison_text(results: Sequence[ScenarioResult]) -> str:
    return "\n".join(comparison_lines(results)) + "\n"

"""The scenarios' report as one self-contained HTML file (inline CSS and SVG, no script, nothing fetched
from the network), plus one PNG per scenario with the same charts, in a directory of their own.

    DIR/report.html
    DIR/png/<scenario>.png
    DIR/results.json        (written by the command, the same object as `--json`)
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from relevo.report.charts import METRICS, draw, slug
from relevo.report.table import rate_text
from relevo.scenarios.model import Scenario
from relevo.scenarios.result import ScenarioResult, shares
from relevo.scenarios.seed import SEED_ROWS

REPORT_NAME = "report.html"
PNG_DIR = "png"


@dataclass(frozen=True, slots=True)
class WrittenReport:
    html: Path
    pngs: tuple[Path, ...]


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("relevo.report", "templates"),
        undefined=jinja2.StrictUndefined,
        autoescape=True,
    )


def write_report(results: Sequence[ScenarioResult], directory: Path, *, title: str) -> WrittenReport:
    """Draw every scenario, write the PNGs and the HTML page; returns what was written."""
    directory.mkdir(parents=True, exist_ok=True)
    views = []
    pngs = []
    for result in results:
        png = directory / PNG_DIR / f"{slug(result.scenario.name)}.png"
        chart = draw(result, png=png)
        pngs.append(png)
        views.append(_view(result, chart.svg, chart.zooms))
    html = (
        _environment()
        .get_template("scenarios.html.j2")
        .render(
            title=title,
            generated=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            results=views,
            metrics=METRICS,
            environment=dict(results[0].environment) if results else {},
        )
    )
    path = directory / REPORT_NAME
    # UTF-8 whatever the locale (the page says so in its <meta charset>); replaced in one step.
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)
    return WrittenReport(html=path, pngs=tuple(pngs))


def _view(result: ScenarioResult, svg: str, zooms: Sequence[str] = ()) -> dict[str, Any]:
    t = result.report.total
    pct = t.percentiles_ms
    serving = [f"{f.standby} {f.until_served_s:.2f} s" for f in result.failovers if f.until_served_s]
    broken = [v.what for v in result.verdicts if not v.ok]
    return {
        "name": result.scenario.name,
        "slug": slug(result.scenario.name),
        "description": result.scenario.description,
        "load": result.scenario.load.describe(),
        "setup": describe_setup(result.scenario),
        "samples": t.samples,
        "average": int(t.average_ms),
        "min": int(t.min_ms),
        "max": int(t.max_ms),
        "stddev": f"{t.stddev_ms:.2f}",
        "error_pct": f"{t.error_pct:.2f}",
        "throughput": rate_text(t.throughput_rps),
        "p50": f"{pct.get(50.0, 0.0):.1f}",
        "p95": f"{pct.get(95.0, 0.0):.1f}",
        "p99": f"{pct.get(99.0, 0.0):.1f}",
        "failed": t.errors,
        "failover": ", ".join(serving) or "–",
        "shares": " ".join(f"{name} {p:.0f}%" for name, p in shares(result).items()) or "–",
        "passed": result.passed,
        "verdict": ("skipped: " + result.skipped)
        if result.skipped is not None
        else ("ok" if result.passed else "FAILED: " + "; ".join(broken))
        if result.verdicts
        else "–",
        "verdicts": result.verdicts,
        "markers": result.markers,
        "seed": SEED_ROWS.get(result.scenario.seed_row or ""),
        "svg": svg,
        "zooms": [(span, zoom) for span, zoom in zip(result.spans, zooms, strict=False)],
        "tail": result.tail,
        "spans": result.spans,
    }


def describe_setup(scenario: Scenario) -> str:
    setup = scenario.setup
    parts = []
    if setup.running is None:
        parts.append("the topology's nodes as it declares them")
    else:
        parts.append("running: " + (", ".join(setup.running) or "no web server"))
    if setup.in_rotation:
        parts.append("in rotation with the primaries: " + ", ".join(setup.in_rotation))
    parts.append("failover controller on" if setup.controller else "failover controller off")
    return "; ".join(parts)

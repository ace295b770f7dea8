"""The comparison table (80 columns, the seed's rows beside ours) and the HTML report with its charts."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import replace

import pytest

from relevo.report.charts import METRICS
from relevo.report.comparison import WIDTH, comparison_lines
from relevo.report.html import write_report
from relevo.scenarios.catalogue import catalogue
from relevo.scenarios.result import Failover, Marker, Verdict
from relevo.topology import parse_topology

from .factory import make_result


def results(tmp_path):
    available, _ = catalogue(parse_topology("", source=None, state_dir=tmp_path / ".relevo"))
    markers = (
        Marker(t_s=3.0, source="fault", kind="kill", label="kill web1"),
        Marker(t_s=3.4, source="controller", kind="failover", label="web1bck maint→ready"),
    )
    failover = Failover(
        standby="web1bck", at_s=3.4, detection_s=0.31, standby_start_s=0.1, until_served_s=0.52
    )
    return [
        make_result(available["two-plus-two-standbys"], servers=("web1", "web2", "web1bck", "web2bck")),
        make_result(
            available["kill-web1"],
            markers=markers,
            failovers=(failover,),
            verdicts=(Verdict(what="expect: at most 0 failed requests", ok=False, detail="5 failed"),),
        ),
    ]


def test_the_comparison_table_fits_80_columns_and_marks_the_seeds_rows(tmp_path):
    """Every line fits 80 columns; the seed's published row follows its scenario, marked as theirs;
    failover times, failures and shares are on the detail line."""
    lines = comparison_lines(results(tmp_path))
    assert all(len(line) <= WIDTH for line in lines), max(lines, key=len)
    text = "\n".join(lines)
    assert re.search(r"^two-plus-two-standbys\s+300\s", text, re.M)
    theirs = next(line for line in lines if line.startswith("  theirs (seed)"))
    assert "50000" in theirs and "408" in theirs and "2298.0" in theirs
    assert "→web1bck detect 0.31s serving 0.52s" in text
    assert re.search(r"web1 \d+% web1bck \d+% web2 \d+% web2bck \d+%", text)
    assert "FAILED: expect: at most 0 failed requests" in text


def test_the_html_report_is_one_file_with_a_chart_per_metric_and_event_markers(tmp_path):
    """One HTML file with no external reference, an SVG panel per metric per scenario, a marker per
    event on every panel, the summary table with the seed's row; a PNG per scenario."""
    written = write_report(results(tmp_path), tmp_path / "out", title="test")
    html = written.html.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), "the page must not fetch anything"
    assert "<script" not in html
    for name in ("two-plus-two-standbys", "kill-web1"):
        for metric in METRICS:
            assert html.count(f'id="{name}--chart--{metric}"') == 1
    for metric in METRICS:
        assert f'id="kill-web1--marker--{metric}--0"' in html
        assert f'id="kill-web1--marker--{metric}--1"' in html
    assert "theirs (the seed, two + two backups running)" in html
    ids = re.findall(r'\sid="([^"]+)"', html)
    assert len(ids) == len(set(ids)), "ids collide between the inline SVGs"
    svg = html[html.index("<svg") : html.index("</svg>") + 6]
    ET.fromstring(svg)  # noqa: S314 - our own output: each inline SVG is well-formed XML
    assert [p.name for p in written.pngs] == ["two-plus-two-standbys.png", "kill-web1.png"]
    for png in written.pngs:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_description_with_dollars_is_drawn_as_text(tmp_path):
    """`costs $x^$` reaches the charts as text (no mathtext parsing, which raised) and the page shows it."""
    available, _ = catalogue(parse_topology("", source=None, state_dir=tmp_path / ".relevo"))
    scenario = replace(available["kill-web1"], description="costs $x^$ and $\\frac{1}{0}$")
    written = write_report([make_result(scenario)], tmp_path / "out", title="dollars")
    html = written.html.read_text(encoding="utf-8")
    assert "costs $x^$ and $\\frac{1}{0}$" in html


def test_results_json_is_written_before_the_report_is_drawn(tmp_path, monkeypatch):
    """A charting failure loses no data: results.json is on disk and the error says where it is."""
    import json

    from relevo.cli import scenarios as cli_scenarios
    from relevo.errors import RelevoError
    from relevo.report import html as report_html

    def broken(*_args, **_kwargs):
        raise ValueError("the charting library fell over")

    monkeypatch.setattr(report_html, "write_report", broken)
    topology = parse_topology("", source=None, state_dir=tmp_path / ".relevo")
    out = tmp_path / "report"
    opts = {"as_json": True, "no_report": False, "report_dir": out}
    with pytest.raises(RelevoError, match=r"could not draw the report .*results\.json"):
        cli_scenarios._output(topology, results(tmp_path), opts)
    data = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert set(data) == {"two-plus-two-standbys", "kill-web1"}

"""The comparison table (80 columns, the seed's rows beside ours) and the HTML report with its charts."""

from __future__ import annotations

import itertools
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
from .recorded import recorded


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


def test_a_recorded_kill_web1_is_charted_at_100_ms_after_its_causes_and_without_an_end_cliff(tmp_path):
    """kill-web1 as a cluster ran it: 100 ms steps, each drawn from its bucket's end; web1's answers stop
    no earlier than the kill, web1bck's first step comes no earlier than the failover and within the
    100 ms after its first answers; the last step is the run's level, not a cliff (the tail after the
    load's end is left out and said so); the JSON carries the same series."""
    from relevo.report.as_json import series_100ms
    from relevo.report.charts import chart_series

    result = recorded("kill-web1", tmp_path)
    series = chart_series(result.buckets, result.servers)
    xs, throughput = series["throughput"]["responses"]
    assert all(round(b - a, 6) == 0.1 for a, b in itertools.pairwise(xs))
    assert xs[0] == 0.1 and xs[-1] == result.charted_s == 8.0
    (kill,) = [m for m in result.markers if m.source == "fault"]
    (failover,) = result.failovers
    x1, web1 = series["servers"]["web1"]
    last_web1 = max(x for x, y in zip(x1, web1, strict=True) if y > 0)
    first_gone = min(x for x, y in zip(x1, web1, strict=True) if x > kill.t_s and y == 0)
    assert first_gone >= kill.t_s and last_web1 >= kill.t_s, "web1's share may only fall after the kill"
    x2, standby = series["servers"]["web1bck"]
    first_step = min(x for x, y in zip(x2, standby, strict=True) if y > 0)
    first_bucket = next(b for b in result.buckets if b.served_by.get("web1bck"))
    assert first_step == round(first_bucket.t_s + 0.1, 3), "drawn from the end of its 100 ms"
    assert first_step >= failover.at_s, "the standby's step may not precede the failover"
    median = sorted(throughput)[len(throughput) // 2]
    assert min(throughput[-5:]) >= 0.4 * median, "an end cliff"
    assert "not drawn" in result.tail
    data = series_100ms(result)
    assert data["bucket_s"] == 0.1 and len(data["buckets"]) == len(xs)
    assert [b["requests"] for b in data["buckets"]] == [int(y) for y in throughput]


def test_markers_numbers_never_share_a_row_within_a_numbers_width():
    """kill-both's crowd of events: no two numbers in one row of the events strip closer than their width."""
    from relevo.report.charts import AXES_PT, LABEL_PT, marker_rows

    markers = [Marker(t_s=2.0 + 0.01 * i, source="controller", kind="health", label=str(i)) for i in range(9)]
    rows = marker_rows(markers, 0.0, 8.0)
    gap = 8.0 * LABEL_PT / AXES_PT
    for a in range(len(markers)):
        for b in range(a + 1, len(markers)):
            if rows[a] == rows[b]:
                assert abs(markers[a].t_s - markers[b].t_s) >= gap

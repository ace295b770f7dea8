"""The scenarios' HTML report, opened in a real headless Chromium with no network."""

from __future__ import annotations

import shutil

import pytest

from relevo.report.charts import METRICS
from relevo.report.html import write_report
from relevo.scenarios.catalogue import catalogue
from relevo.scenarios.result import Marker
from relevo.topology import parse_topology

from ..unit.scenarios.factory import make_result
from .chromium import Browser, Page

pytestmark = pytest.mark.integration

# What the page looks like to a reader: each scenario's section, its panels, and the markers drawn.
SURVEY = """(() => {
  const out = {};
  for (const section of document.querySelectorAll("section.scenario")) {
    const name = section.id.replace("scenario-", "");
    const charts = {};
    for (const metric of %s) {
      const panel = section.querySelector(`[id="${name}--chart--${metric}"]`);
      const box = panel ? panel.getBoundingClientRect() : null;
      charts[metric] = {
        drawn: !!box && box.width > 100 && box.height > 50,
        markers: section.querySelectorAll(`[id^="${name}--marker--${metric}--"]`).length,
      };
    }
    out[name] = charts;
  }
  return {scenarios: out, summaryRows: document.querySelectorAll("#summary-table tbody tr").length,
          theirs: document.querySelectorAll("#summary-table tr.theirs").length};
})()"""


def test_the_report_renders_in_chromium_with_every_chart_and_marker_and_no_console_error(tmp_path):
    """Chromium opens the report from disk: one drawn chart per metric per scenario, the event markers
    on each, the seed's rows in the summary, and nothing on the console; a screenshot is kept."""
    available, _ = catalogue(parse_topology("", source=None, state_dir=tmp_path / ".relevo"))
    markers = (
        Marker(t_s=3.0, source="fault", kind="kill", label="kill web1"),
        Marker(t_s=3.3, source="controller", kind="health", label="web1 up→down"),
        Marker(t_s=3.5, source="controller", kind="failover", label="web1bck maint→ready"),
    )
    results = [
        make_result(available["two-servers"]),
        make_result(available["kill-web1"], markers=markers, servers=("web1", "web2", "web1bck")),
    ]
    report = write_report(results, tmp_path / "report", title="browser test")
    browser = Browser(tmp_path / "profile")
    try:
        page = Page(browser, report.html.as_uri())
        survey = page.evaluate(SURVEY % list(METRICS))
        screenshot = tmp_path / "report-screenshot.png"
        page.screenshot(screenshot)
        errors = page.console_errors()
    finally:
        browser.close()
    assert set(survey["scenarios"]) == {"two-servers", "kill-web1"}
    for name, charts in survey["scenarios"].items():
        assert set(charts) == set(METRICS)
        assert all(chart["drawn"] for chart in charts.values()), (name, charts)
        expected = len(markers) if name == "kill-web1" else 0
        assert all(chart["markers"] == expected for chart in charts.values()), (name, charts)
    assert survey["theirs"] == 1  # two-servers has the seed's row; kill-web1 has none
    assert survey["summaryRows"] == 3
    assert errors == []
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert screenshot.stat().st_size > 20_000, "a blank page would be a tiny PNG"
    print(f"screenshot kept: {screenshot}")
    assert shutil.which("chromium")

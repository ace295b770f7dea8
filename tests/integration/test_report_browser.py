"""The scenarios' HTML report, opened in a real headless Chromium with no network."""

from __future__ import annotations

import shutil

import pytest

from relevo.report.charts import METRICS
from relevo.report.html import write_report
from relevo.scenarios.catalogue import catalogue
from relevo.scenarios.result import Marker, Verdict
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
  return {scenarios: out,
          summaryRows: document.querySelectorAll("#summary-table tbody tr:not(.detail)").length,
          theirs: document.querySelectorAll("#summary-table tr.theirs:not(.detail)").length};
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


# Where every verdict cell and the page's width are, and every pair of text labels in a chart that overlap.
GEOMETRY = """(() => {
  const cells = "#summary-table td.verdict, #summary-table th:nth-child(2)";
  const verdicts = [...document.querySelectorAll(cells)].map(e => {
    const r = e.getBoundingClientRect();
    return {right: r.right, bottom: r.bottom, width: r.width};
  });
  const overlaps = [];
  const texts = {};
  for (const svg of document.querySelectorAll("section.scenario svg")) {
    const boxes = [...svg.querySelectorAll("text")]
      .map(t => ({t: t.textContent.trim(), r: t.getBoundingClientRect()}))
      .filter(b => b.t && b.r.width > 0);
    const owner = svg.closest("[id]").id;
    texts[owner] = (texts[owner] || 0) + boxes.length;
    for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
      const a = boxes[i].r, b = boxes[j].r;
      const w = Math.min(a.right, b.right) - Math.max(a.left, b.left);
      const h = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
      if (w > 1 && h > 1) overlaps.push([owner, boxes[i].t, boxes[j].t]);
    }
  }
  const labels = [...document.querySelectorAll('[id*="--label--"]')].length;
  return {verdicts, scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth,
          overlaps, texts, labels,
          zooms: document.querySelectorAll("div.zoom svg").length,
          env: document.querySelectorAll("dl.env dt").length,
          noData: [...document.querySelectorAll("svg text")]
            .filter(t => t.textContent.startsWith("no data")).length};
})()"""


def test_the_report_at_1280_shows_every_verdict_and_no_label_overlaps_another(tmp_path):
    """Chromium at 1280x800: the verdict column is on screen without scrolling (no horizontal scroll at
    all), every scenario has its charts and a zoom per fault, no two labels of a chart overlap (from the
    rendered boxes of kill-both's crowd of events, flap-web1 and kill-web1 as recorded), the empty
    panel says "no data", the environment is described, and the page asks the network for nothing."""
    from dataclasses import replace

    from ..unit.scenarios.recorded import recorded

    available, _ = catalogue(parse_topology("", source=None, state_dir=tmp_path / ".relevo"))
    environment = {"host_cores": 2, "kernel": "Linux 6", "haproxy": "HAProxy 2.6", "apache": "Apache 2.4"}
    broken = replace(
        make_result(available["no-servers"], servers=()),
        verdicts=(Verdict(what="expect: every request fails with the 503 page", ok=False, detail="x" * 90),),
    )
    results = [
        replace(r, environment=environment)
        for r in (
            broken,
            recorded("kill-web1", tmp_path),
            recorded("kill-both", tmp_path),
            recorded("flap-web1", tmp_path),
        )
    ]
    report = write_report(results, tmp_path / "report", title="1280 test")
    browser = Browser(tmp_path / "profile")
    try:
        page = Page(browser, report.html.as_uri(), width=1280, height=800)
        survey = page.evaluate(SURVEY % list(METRICS))
        geometry = page.evaluate(GEOMETRY)
        first = tmp_path / "report-1280-first-screen.png"
        page.viewport_screenshot(first)
        whole = tmp_path / "report-1280.png"
        page.screenshot(whole)
        requests = page.requests()
        errors = page.console_errors()
    finally:
        browser.close()
    print(f"screenshots kept: {first} {whole}")
    assert geometry["scrollWidth"] <= geometry["innerWidth"] == 1280, geometry["scrollWidth"]
    assert all(v["right"] <= 1280 and v["bottom"] <= 800 for v in geometry["verdicts"]), geometry["verdicts"]
    assert len(geometry["verdicts"]) == 1 + len(results)
    assert set(survey["scenarios"]) == {"no-servers", "kill-web1", "kill-both", "flap-web1"}
    for name, charts in survey["scenarios"].items():
        assert all(chart["drawn"] for chart in charts.values()), (name, charts)
    assert geometry["overlaps"] == [], geometry["overlaps"][:10]
    assert geometry["zooms"] == 1 + 2 + 2, "a zoom per fault: kill-web1 1, kill-both 2, flap-web1 2"
    assert geometry["noData"] >= 1
    assert geometry["env"] == len(environment)
    assert [u for u in requests if not u.startswith(("file:", "data:"))] == []
    assert errors == []

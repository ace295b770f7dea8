"""Scenario results recorded from real runs (tests/unit/scenarios/data/*.json: the keys of results.json the
charts need), rebuilt as `ScenarioResult`s so the renderers can be tested on what a cluster really did."""

from __future__ import annotations

import json
from pathlib import Path

from relevo.loadgen.stats import RunStats
from relevo.loadgen.summary import summarize
from relevo.scenarios.catalogue import catalogue
from relevo.scenarios.result import Bucket, Failover, Marker, ScenarioResult
from relevo.topology import parse_topology

DATA = Path(__file__).parent / "data"


def recorded(name: str, tmp_path: Path) -> ScenarioResult:
    available, _ = catalogue(parse_topology("", source=None, state_dir=tmp_path / ".relevo"))
    data = json.loads((DATA / f"{name}.json").read_text(encoding="utf-8"))[name]
    series = data["timeseries_100ms"]
    return ScenarioResult(
        scenario=available[name],
        report=summarize(RunStats()),
        seconds=(),
        markers=tuple(Marker(**m) for m in data["markers"]),
        failovers=tuple(Failover(**f) for f in data["failovers"]),
        buckets=tuple(Bucket(**b) for b in series["buckets"]),
        bucket_s=series["bucket_s"],
        charted_s=series["charted_s"],
        tail=series["tail"],
    )

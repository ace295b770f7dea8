"""docs/grafana-dashboard.json: valid JSON whose relevo queries name metrics the controller exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from relevo.controller.metrics import ControllerMetrics
from relevo.topology import parse_topology

DASHBOARD = Path(__file__).parents[3] / "docs" / "grafana-dashboard.json"


def expressions() -> list[str]:
    data = json.loads(DASHBOARD.read_text())
    found = [t["expr"] for p in data["panels"] for t in p.get("targets", [])]
    return found + [a["expr"] for a in data["annotations"]["list"]]


def test_every_relevo_metric_the_dashboard_queries_is_exported():
    """Each relevo_* name in a panel or annotation query is one the controller's registry exposes, so a
    renamed metric cannot leave an empty panel behind; HAProxy's panels are there too."""
    topology = parse_topology("{}\n", source=None, state_dir=Path("/x/.relevo"))
    names = set()
    for family in ControllerMetrics(topology).registry.collect():
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}.get(family.type, [""])
        names |= {family.name + suffix for suffix in suffixes}
    queried = {name for expr in expressions() for name in re.findall(r"\brelevo_\w+", expr)}
    assert queried, "no relevo metric queried"
    assert queried <= names, f"not exported: {sorted(queried - names)}"
    assert any("haproxy_server_" in expr for expr in expressions())

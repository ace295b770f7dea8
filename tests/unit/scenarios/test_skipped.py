"""A scenario whose fault the node's provider cannot do is skipped with the provider's reason: neither
passed nor failed, and every renderer says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from relevo.cluster import Cluster
from relevo.providers import base
from relevo.report.as_json import result_dict
from relevo.report.comparison import comparison_text
from relevo.report.html import write_report
from relevo.scenarios.faults import unsupported
from relevo.scenarios.model import Action, FaultStep, LoadSettings, Scenario
from relevo.scenarios.runner import skipped_result
from relevo.topology import parse_topology


class Refusing(base.Provider):
    """A provider that can do nothing but crash a node."""

    def __init__(self, topology: object) -> None:
        self.name = "refusing"

    def cannot(self, node: str, fault: base.Fault) -> str | None:
        return None if fault is base.Fault.CRASH else f"no means for {fault} here"


def test_the_providers_reason_makes_the_scenario_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`unsupported` asks the node's provider; the skipped result is neither passed nor failed, keeps the
    reason in --json, and the comparison table and the HTML report show it."""
    monkeypatch.setitem(base.PROVIDERS, "refusing", f"{__name__}:Refusing")
    topology = parse_topology("provider: refusing\n", source=None, state_dir=tmp_path / ".relevo")
    cluster = Cluster(topology)
    kill = FaultStep(at_s=1.0, action=Action.KILL, node="web1")
    reload = FaultStep(at_s=2.0, action=Action.RELOAD, node="ha1")
    assert unsupported(cluster, kill) is None
    assert unsupported(cluster, reload) == "reload ha1: no means for reload here"
    assert unsupported(cluster, FaultStep(at_s=0.0, action=Action.KILL_CONTROLLER)) is None

    scenario = Scenario(name="r", description="d", load=LoadSettings.open_loop(), faults=(kill, reload))
    result = skipped_result(scenario, "reload ha1: no means for reload here")
    assert (result.status, result.passed) == ("skipped", False)
    data = json.loads(json.dumps(result_dict(result), default=str))
    assert (data["status"], data["passed"], data["skipped"]) == (
        "skipped",
        None,
        "reload ha1: no means for reload here",
    )
    assert "skipped: reload ha1: no means for reload here" in comparison_text([result])
    written = write_report([result], tmp_path / "report", title="t")
    assert "no means for reload here" in written.html.read_text()


def test_a_scenario_file_with_a_fault_the_provider_lacks_is_refused_at_its_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a user's file (unlike the built-in catalogue, where it is skipped) a fault the provider cannot
    do is an input error at that fault's line: exit status 2, before anything runs."""
    from relevo.scenarios.faults import refuse_unsupported
    from relevo.scenarios.loader import ScenarioFileError, parse_scenarios

    monkeypatch.setitem(base.PROVIDERS, "refusing", f"{__name__}:Refusing")
    topology = parse_topology("provider: refusing\n", source=None, state_dir=tmp_path / ".relevo")
    text = (
        "scenarios:\n  s:\n    load: {rate: 100, duration: 4s}\n    faults:\n"
        "      - {at: 1s, kill: web1}\n      - {at: 2s, for: 1s, partition: web2}\n"
    )
    loaded = parse_scenarios(text, source=tmp_path / "s.yaml", topology=topology)
    with pytest.raises(ScenarioFileError) as caught:
        refuse_unsupported(Cluster(topology), loaded.values(), tmp_path / "s.yaml")
    assert (caught.value.line, caught.value.exit_status) == (6, 2)
    assert "partition web2 for 1 s: the refusing provider has no lasting faults" in str(caught.value)

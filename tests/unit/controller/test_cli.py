"""`relevo events` and `relevo watch --help`, through click's test runner."""

from __future__ import annotations

import json

from click.testing import CliRunner

from relevo.cli import cli
from relevo.controller.events import Event, EventKind, EventLog

from .fakes import NODES


def journal(tmp_path):
    path = tmp_path / "relevo.yaml"
    path.write_text(f"name: t\nnetwork: 127.9.8.0/24\n{NODES}")
    log = EventLog(tmp_path / ".relevo" / "events.jsonl")
    log.append(Event(kind=EventKind.HEALTH, node="web1", from_="up", to="down", reason="process stopped"))
    log.append(
        Event(
            kind=EventKind.FAILOVER,
            node="web1bck",
            from_="maint",
            to="ready",
            reason="web1 is down",
            durations={"detection_s": 0.1, "until_served_s": 0.25},
        )
    )
    return path


def test_events_json_is_the_journal(tmp_path):
    """`events --json` prints the journal's objects as a JSON array, oldest first."""
    result = CliRunner().invoke(cli, ["-f", str(journal(tmp_path)), "events", "--json"])
    assert result.exit_code == 0, result.output
    records = json.loads(result.output)
    assert [(r["kind"], r["node"]) for r in records] == [("health", "web1"), ("failover", "web1bck")]


def test_events_text_shows_transitions_and_durations(tmp_path):
    """The text view has the node, from -> to, the reason and durations in milliseconds."""
    result = CliRunner().invoke(cli, ["-f", str(journal(tmp_path)), "events", "--kind", "failover"])
    assert result.exit_code == 0, result.output
    assert "web1bck maint → ready" in result.output
    assert "detected 100 ms" in result.output and "serving 250 ms" in result.output
    assert "web1 up" not in result.output


def test_watch_help_explains_the_loop():
    """`watch --help` says what the controller does and that only one runs per cluster."""
    result = CliRunner().invoke(cli, ["watch", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "standby.hold" in text and "only one controller runs per cluster" in text
    assert "--state-dir" not in result.output

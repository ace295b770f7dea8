"""Faults that last: `{at: 2s, for: 3s, delay: web1, ms: 200}` in scenario files, refused at their line
when wrong, and played on the load's clock with every span healed (at its end, and on any exit)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from relevo.providers.base import Fault, Impairment
from relevo.scenarios.loader import ScenarioFileError, parse_scenarios
from relevo.scenarios.model import Action
from relevo.topology import parse_topology

HEAD = "scenarios:\n  s:\n    load: {rate: 100, duration: 8s}\n    faults:\n"


@pytest.fixture
def topology(tmp_path):
    return parse_topology("", source=None, state_dir=tmp_path / ".relevo")


def error_of(faults: str, topology) -> ScenarioFileError:
    with pytest.raises(ScenarioFileError) as info:
        parse_scenarios(HEAD + faults, source=Path("my.yaml"), topology=topology)
    return info.value


def test_lasting_faults_are_read_with_their_amounts_and_spans(topology):
    """Each network fault keeps its amount and span; a hang may have a span (healed by a resume)."""
    text = HEAD + (
        "      - {at: 2s, for: 3s, delay: web1, ms: 200, jitter: 20}\n"
        "      - {at: 1s, loss: web2, pct: 5}\n"
        "      - {at: 1s, for: 1s, partition: web1}\n"
        "      - {at: 3s, for: 2s, slow: web2, ms: 300}\n"
        "      - {at: 4s, for: 1s, bandwidth: web1, kbit: 512}\n"
        "      - {at: 5s, for: 1s, hang: web2}\n"
        "      - {at: 1s, for: 2s, cpu-starve: web1, pct: 10}\n"
        "      - {at: 1s, for: 2s, disk-full: web2}\n"
    )
    faults = parse_scenarios(text, source=None, topology=topology)["s"].faults
    delay = next(f for f in faults if f.action is Action.DELAY)
    assert (delay.at_s, delay.for_s, delay.heal_at_s, delay.line) == (2.0, 3.0, 5.0, 5)
    assert delay.amount is not None and (delay.amount.fault, delay.amount.ms, delay.amount.jitter_ms) == (
        Fault.DELAY,
        200.0,
        20.0,
    )
    assert delay.label == "delay web1 200 ms +- 20 ms for 3 s"
    loss = next(f for f in faults if f.action is Action.LOSS)
    assert loss.for_s is None and loss.amount is not None and loss.amount.pct == 5.0
    assert next(f for f in faults if f.action is Action.HANG).for_s == 1.0
    starve = next(f for f in faults if f.action is Action.CPU_STARVE)
    assert starve.amount == Impairment(fault=Fault.CPU_STARVE, pct=10.0)
    assert starve.label == "cpu-starve web1 10 % of a core for 2 s"
    full = next(f for f in faults if f.action is Action.DISK_FULL)
    assert full.amount == Impairment(fault=Fault.DISK_FULL) and full.label == "disk-full web2 for 2 s"


@pytest.mark.parametrize(
    ("fault", "at", "words"),
    [
        ("{at: 2s, for: 3s, jam: web1}", "jam", "unknown key 'jam'"),
        ("{at: 6s, for: 3s, partition: web1}", "3s", "after the load's end at 8 s"),
        ("{at: 2s, for: -1s, partition: web1}", "-1s", "expected a duration"),
        ("{at: 2s, delay: web1, ms: -5}", "-5", "expected milliseconds from 1 to 60000"),
        ("{at: 2s, delay: web1, ms: 1e9}", "1e9", "expected milliseconds"),
        ("{at: 2s, loss: web1, pct: 150}", "150", "expected a percentage from 0.01 to 100"),
        ("{at: 2s, delay: web1}", "{", "delay needs `ms:`"),
        ("{at: 2s, partition: web1, ms: 5}", "5}", "partition takes no amount"),
        ("{at: 2s, for: 1s, kill: web1}", "1s", "kill has no span"),
        ("{at: 2s, delay: web9, ms: 5}", "web9", "no node named 'web9'"),
        ("{at: 2s, delay: web1, ms: 5, jitter: 9}", "9}", "at most the delay itself"),
        ("{at: 2s, cpu-starve: web1}", "{", "cpu-starve needs `pct:`"),
        ("{at: 2s, cpu-starve: web1, pct: 0.5}", "0.5", "expected a percentage of one core from 1 to 100"),
        ("{at: 2s, disk-full: web1, pct: 5}", "5}", "disk-full takes no amount"),
    ],
)
def test_bad_timed_faults_are_refused_at_their_line_and_column(topology, fault, at, words):
    """Unknown kinds, spans past the load's end, negative or absurd amounts, a missing or foreign amount
    and an unknown node: each refused at its own line and column (exit status 2), nothing run."""
    line = f"      - {fault}"
    error = error_of(line + "\n", topology)
    assert (error.line, error.column, error.exit_status) == (5, line.rindex(at) + 1, 2), str(error)
    assert words in str(error)


class FakeClock:
    """The load's clock, advanced by the timeline's own sleeps: no real time passes."""

    def __init__(self, duration_s: float) -> None:
        self.now = 0.0
        self.duration_s = duration_s

    @property
    def done(self) -> bool:
        return self.now >= self.duration_s

    def elapsed_s(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.001)


class Recorder:
    """A cluster that records the faults and heals the timeline asks for, at the clock's time."""

    def __init__(self, clock: FakeClock, tmp_path: Path) -> None:
        from relevo.paths import StatePaths

        self.clock = clock
        self.paths = StatePaths(tmp_path / ".relevo")
        self.topology = parse_topology("", source=None, state_dir=tmp_path / ".relevo")
        self.calls: list[tuple[float, str, str]] = []

    def impair(self, node, impairment):
        self.calls.append((round(self.clock.now, 2), "impair", f"{impairment.fault} {node}"))
        return "test means"

    def heal(self, node):
        self.calls.append((round(self.clock.now, 2), "heal", node))

    def fault(self, node, fault):
        self.calls.append((round(self.clock.now, 2), "fault", f"{fault} {node}"))


def test_the_timeline_heals_each_span_at_its_end_and_everything_left_on_close(
    topology, tmp_path, monkeypatch
):
    """A spanned fault is healed at at + for; one without a span (and one in force when the run is cut
    short) is healed by `close`; the markers carry the span and the means."""
    from relevo.scenarios import timeline as timeline_module
    from relevo.scenarios.timeline import Timeline

    text = HEAD + (
        "      - {at: 1s, for: 2s, partition: web1}\n"
        "      - {at: 2s, loss: web2, pct: 5}\n"
        "      - {at: 4s, for: 1s, hang: web2}\n"
    )
    scenario = parse_scenarios(text, source=None, topology=topology)["s"]
    clock = FakeClock(8.0)
    cluster = Recorder(clock, tmp_path)
    monkeypatch.setattr(timeline_module, "fault_lock", lambda cluster, fault: _null())
    line = Timeline(cluster, scenario, clock)  # type: ignore[arg-type]
    line.play(sleep=clock.sleep)
    assert [c[1:] for c in cluster.calls] == [
        ("impair", "partition web1"),
        ("impair", "loss web2"),
        ("heal", "web1"),
        ("fault", "hang web2"),
        ("fault", "resume web2"),
    ]
    times = [c[0] for c in cluster.calls]
    assert math.isclose(times[2], 3.0, abs_tol=0.02) and math.isclose(times[4], 5.0, abs_tol=0.02)
    line.close()
    assert cluster.calls[-1][1:] == ("heal", "web2")  # the loss, which had no span
    spans = {m.label: (m.t_s, m.end_t_s, m.means) for m in line.markers}
    assert spans["partition web1 for 2 s"][2] == "test means"
    assert spans["loss web2 5 %"][1] is not None
    assert not line.verdicts


def _null():
    import contextlib

    return contextlib.nullcontext()


def test_the_timeline_tells_the_live_feed_each_fault_as_applied_and_healed(topology, tmp_path, monkeypatch):
    """With a live feed (the dashboard's), each fault is told when it is applied, and a spanned one
    again when healed, with its end: both at the load's clock moved to epoch seconds."""
    import json

    from relevo.loadgen.feed import LiveFeed
    from relevo.scenarios import timeline as timeline_module
    from relevo.scenarios.timeline import Timeline

    text = HEAD + "      - {at: 1s, for: 2s, partition: web1}\n      - {at: 4s, kill: web2}\n"
    scenario = parse_scenarios(text, source=None, topology=topology)["s"]
    clock = FakeClock(8.0)
    cluster = Recorder(clock, tmp_path)
    monkeypatch.setattr(timeline_module, "fault_lock", lambda cluster, fault: _null())
    path = tmp_path / "load.jsonl"
    feed = LiveFeed(path)
    feed.begin("relevo scenarios: s")
    Timeline(cluster, scenario, clock, feed).play(sleep=clock.sleep)  # type: ignore[arg-type]
    told = [json.loads(line) for line in path.read_text().splitlines()][1:]
    assert [(m["label"], m["end"] is None) for m in told] == [
        ("partition web1 for 2 s", True),
        ("partition web1 for 2 s", False),
        ("kill web2", True),
    ]
    assert told[0]["t"] == told[1]["t"]
    assert math.isclose(told[1]["end"] - told[1]["t"], 2.0, abs_tol=0.05)
    assert math.isclose(told[2]["t"] - told[0]["t"], 3.0, abs_tol=0.05)

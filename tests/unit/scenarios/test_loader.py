"""The user's scenario file: what it accepts, and the file:line:column of everything it refuses."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from relevo.scenarios.loader import ScenarioFileError, load_scenarios, parse_scenarios
from relevo.scenarios.model import Action, Model
from relevo.topology import parse_topology

GOOD = """\
version: 1
scenarios:
  double:
    description: web1 dies, web2 hangs
    load: {rate: 800, duration: 6s}
    setup: {running: [web1, web2], controller: true}
    faults:
      - {at: 3.5s, hang: web2}
      - {at: 3s, kill: web1}
      - {at: 5s, kill-controller: true}
      - {at: 4s, after: failover, start: web1}
    expect: {max_failed: 0, served_by: [web1bck], events: [failover]}
  closed:
    load: {threads: 50, loops: 20, ramp_up: 500ms}
"""


@pytest.fixture
def topology(tmp_path):
    return parse_topology("", source=None, state_dir=tmp_path / ".relevo")


def error_of(text: str, topology=None) -> ScenarioFileError:
    with pytest.raises(ScenarioFileError) as info:
        parse_scenarios(text, source=Path("my.yaml"), topology=topology)
    return info.value


def test_a_good_file_gives_scenarios_in_file_order_with_faults_sorted_by_time(topology):
    """Every section is read: the open model is implied by a rate, faults are put in time order."""
    scenarios = parse_scenarios(GOOD, source=None, topology=topology)
    assert list(scenarios) == ["double", "closed"]
    double = scenarios["double"]
    assert double.load.model is Model.OPEN
    assert (double.load.rate_rps, double.load.duration_s, double.load.loops) == (800.0, 6.0, None)
    assert [(f.at_s, f.action, f.node, f.after) for f in double.faults] == [
        (3.0, Action.KILL, "web1", None),
        (3.5, Action.HANG, "web2", None),
        (4.0, Action.START, "web1", "failover"),
        (5.0, Action.KILL_CONTROLLER, None, None),
    ]
    assert double.setup.running == ("web1", "web2")
    assert double.expect.max_failed == 0
    assert double.expect.served_by == ("web1bck",)
    closed = scenarios["closed"]
    assert (closed.load.model, closed.load.threads, closed.load.loops) == (Model.CLOSED, 50, 20)
    assert closed.load.ramp_up_s == 0.5


@pytest.mark.parametrize(
    ("text", "line", "column", "words"),
    [
        ("scenarios:\n  a:\n    faults:\n      - {at: 3s, kill: web1\n", 5, 1, "not valid YAML"),
        ("scenarios:\n  a:\n    faults:\n      - {at: 3s, explode: web1}\n", 4, 18, "unknown key 'explode'"),
        ("scenarios:\n  a:\n    faults:\n      - {kill: web1}\n", 4, 9, "missing `at:`"),
        ("scenarios:\n  a:\n    faults:\n      - {at: soon, kill: web1}\n", 4, 14, "expected a duration"),
        ("scenarios:\n  a:\n    faults:\n      - {at: 1s, kill: web9}\n", 4, 24, "no node named 'web9'"),
        (
            "scenarios:\n  a:\n    faults:\n      - {at: 1s, hang-workers: ha1}\n",
            4,
            32,
            "ha1 is the balancer",
        ),
        ("scenarios:\n  a:\n    faults:\n      - {at: 1s, kill: web1, hang: web2}\n", 4, 9, "exactly one"),
        (
            "scenarios:\n  a:\n    faults:\n      - {at: 1s, after: soon, start: web1}\n",
            4,
            25,
            "expected a controller event, one of: health, failover",
        ),
        ("scenarios:\n  a:\n    load: {rate: 10, loops: 3}\n", 3, 29, "no loops"),
        ("scenarios:\n  a:\n    load: {model: closed, rate: 10}\n", 3, 33, "needs `model: open`"),
        ("scenarios:\n  a:\n    setup: {running: [web1], in_rotation: [web1bck]}\n", 3, 43, "also be in"),
        ("scenarios:\n  a:\n    setup: {in_rotation: [web1]}\n", 3, 27, "web1 is the web"),
        ("scenarios:\n  Bad Name: {}\n", 2, 3, "not a safe name"),
        ("version: 1\n", 1, 1, "missing `scenarios:`"),
    ],
)
def test_mistakes_are_reported_at_their_line_and_column(topology, text, line, column, words):
    """Each mistake names the file, the line and column, and what was expected."""
    error = error_of(text, topology)
    assert (error.line, error.column) == (line, column), str(error)
    assert words in str(error)
    assert str(error).startswith(f"my.yaml:{line}:{column}: ")
    assert error.exit_status == 2


def test_a_missing_file_and_a_binary_file_are_input_errors(tmp_path):
    """A path that is not there, or bytes that are not UTF-8, give exit status 2 and the file's name."""
    with pytest.raises(ScenarioFileError, match="no such scenario file") as missing:
        load_scenarios(tmp_path / "nope.yaml")
    assert missing.value.exit_status == 2
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"scenarios:\n  a: \xff\xfe\n")
    with pytest.raises(ScenarioFileError, match="not UTF-8"):
        load_scenarios(binary)


def test_a_fifo_a_device_and_deep_nesting_are_input_errors_not_hangs(tmp_path):
    """A scenario file is read like the topology: a FIFO or /dev/zero is refused at once (no hang, no
    unbounded read), and YAML nested too deeply is an error, not a RecursionError traceback."""
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    with pytest.raises(ScenarioFileError, match="not a regular file"):
        load_scenarios(fifo)
    with pytest.raises(ScenarioFileError, match="not a regular file"):
        load_scenarios(Path("/dev/zero"))
    deep = tmp_path / "deep.yaml"
    deep.write_text("scenarios: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ScenarioFileError, match="nested too deeply"):
        load_scenarios(deep)

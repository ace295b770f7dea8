"""Property tests of relevo's file readers (the journal's are in controller/test_journal.py): random bytes
and valid files garbled at random give either a value or the reader's own typed error (which the command
line turns into exit status 2), never another exception (a traceback)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relevo.errors import RelevoError
from relevo.loadgen.jmx import read_jmx
from relevo.loadgen.jtl import JtlError, read_stats
from relevo.loadgen.plan import PlanError
from relevo.scenarios.loader import ScenarioFileError, load_scenarios
from relevo.topology import parse_topology
from tests.unit.loadgen.test_jmx import PLAN
from tests.unit.scenarios.test_loader import GOOD

JTL = (Path(__file__).parent / "loadgen" / "data" / "jmeter-2.13-200-samples.jtl").read_bytes()[:3000]

# What a garbling may insert: the formats' own punctuation, huge numbers, odd bytes.
TOKENS = st.sampled_from(
    [
        b"",
        b"\n",
        b",",
        b'"',
        b"<",
        b">",
        b"</hashTree>",
        b"&amp;",
        b"&#0;",
        b"${",
        b":",
        b"- ",
        b"{",
        b"[",
        b"!!binary",
        b"9" * 5000,
        b"-1",
        b"1e999",
        b"nan",
        b"\x00",
        b"\xff",
        b"\t",
    ]
)
EDITS = st.lists(
    st.tuples(st.floats(0, 1), st.integers(0, 40), TOKENS | st.binary(max_size=8)), min_size=1, max_size=6
)
SETTINGS = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def garble(data: bytes, edits: list[tuple[float, int, bytes]]) -> bytes:
    for where, cut, insert in edits:
        at = int(where * len(data))
        data = data[:at] + insert + data[at + cut :]
    return data


def inputs(valid: bytes) -> st.SearchStrategy[bytes]:
    return st.binary(max_size=400) | EDITS.map(lambda edits: garble(valid, edits))


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@SETTINGS
@given(content=inputs(JTL))
def test_the_jtl_reader_gives_stats_or_a_jtl_error(scratch: Path, content: bytes):
    """Any bytes as a JTL file: its stats, or a JtlError (exit 2)."""
    path = scratch / "run.jtl"
    path.write_bytes(content)
    try:
        read_stats(path)
    except JtlError as exc:
        assert exc.exit_status == 2 and str(exc)


@SETTINGS
@given(content=inputs(PLAN.encode()))
def test_the_jmx_reader_gives_a_plan_or_a_plan_error(scratch: Path, content: bytes):
    """Any bytes as a JMeter plan: a plan with its warnings, or a PlanError (exit 2)."""
    path = scratch / "plan.jmx"
    path.write_bytes(content)
    try:
        plan, warnings = read_jmx(path)
    except PlanError as exc:
        assert exc.exit_status == 2 and str(exc)
    else:
        assert plan.groups and all(isinstance(w, str) for w in warnings)


@SETTINGS
@given(content=inputs(GOOD.encode()))
def test_the_scenario_reader_gives_scenarios_or_a_scenario_file_error(scratch: Path, content: bytes):
    """Any bytes as a scenario file: its scenarios, or a ScenarioFileError naming the file (exit 2)."""
    topology = parse_topology("", source=None, state_dir=scratch / ".relevo")
    path = scratch / "scenarios.yaml"
    path.write_bytes(content)
    try:
        scenarios = load_scenarios(path, topology)
    except ScenarioFileError as exc:
        assert exc.exit_status == 2 and str(path) in str(exc)
    else:
        assert scenarios


def test_the_typed_errors_are_relevo_errors():
    """The three readers' errors are RelevoErrors: the CLI prints them in one line, exit status 2."""
    assert issubclass(JtlError, RelevoError)
    assert issubclass(PlanError, RelevoError)
    assert issubclass(ScenarioFileError, RelevoError)

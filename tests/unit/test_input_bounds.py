"""Every input bounded and explained: topology files, JTL files, thread and loop counts (issue 8, item 6).

Each case runs the real command line in a subprocess with a timeout, as a user would meet it: exit status 2,
a short message naming what is wrong, never a traceback, never a hang.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relevo.cli import cli
from relevo.loadgen.jmx import MAX_SAMPLERS_PER_ITERATION
from relevo.loadgen.plan import MAX_LOOPS, max_threads
from relevo.topology import default_text

VALID = default_text()


def relevo(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relevo", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def assert_clear_refusal(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) < 20
    for needle in needles:
        assert needle in result.stderr


def write(tmp_path: Path, content: str | bytes) -> Path:
    path = tmp_path / "relevo.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def test_non_utf8_bytes_name_the_line_and_column(tmp_path):
    """A Latin-1 byte in the file: exit 2 with file:line:column, not a UnicodeDecodeError traceback."""
    path = write(tmp_path, b"name: demo\nnetwork: 127.100.0.0/24 # caf\xe9\n")
    assert_clear_refusal(relevo("-f", str(path), "render", "haproxy"), f"{path}:2:", "not UTF-8")


def test_a_network_too_small_for_the_nodes_is_explained(tmp_path):
    """A /30 holds the balancer and one node, not five: exit 2 naming the network, not StopIteration."""
    path = write(tmp_path, "network: 127.104.0.0/30\n")
    assert_clear_refusal(relevo("-f", str(path), "render", "haproxy"), "127.104.0.0/30 is too small")


def test_a_web_node_with_standby_for_contradicts_its_role(tmp_path):
    """`role: web` with `standby_for`: exit 2 before anything starts (it used to fail in `up` later)."""
    text = "nodes:\n  web1: {role: web, standby_for: web2}\n  web2: {role: web}\n"
    path = write(tmp_path, text)
    assert_clear_refusal(relevo("-f", str(path), "up"), "nodes.web1.standby_for", "role: standby")
    assert not (tmp_path / ".relevo").exists()


def test_a_huge_value_is_cut_in_the_message(tmp_path):
    """A 500 kB value in the file: the message shows its start and its length, not the whole value."""
    path = write(tmp_path, "name: " + "a" * 500_000 + "\n")
    result = relevo("-f", str(path), "render", "haproxy")
    assert_clear_refusal(result, "(500002 characters)")  # the value and its two quotes
    assert len(result.stderr) < 1000


def test_a_file_over_the_size_cap_is_refused_unread(tmp_path):
    """A topology larger than the cap is refused by its size, before parsing."""
    path = write(tmp_path, "# padding\n" * 200_000)
    assert_clear_refusal(relevo("-f", str(path), "render", "haproxy"), "too large for a topology")


@pytest.mark.parametrize("kind", ["/dev/zero", "fifo"])
def test_a_device_or_fifo_neither_hangs_nor_grows(tmp_path, kind):
    """`-f /dev/zero` or a FIFO nobody writes to: exit 2 at once (it used to hang and grow without
    bound)."""
    path = Path("/dev/zero")
    if kind == "fifo":
        path = tmp_path / "relevo.yaml"
        os.mkfifo(path)
    assert_clear_refusal(relevo("-f", str(path), "render", "haproxy", timeout=20), "not a regular file")


def test_an_empty_file_points_to_init(tmp_path):
    """An empty topology file is an error that says how to write one."""
    path = write(tmp_path, "")
    assert_clear_refusal(relevo("-f", str(path), "up"), "relevo init")


def test_a_binary_jtl_is_a_clear_error(tmp_path):
    """`relevo report` on random bytes: exit 2 naming the file, no traceback."""
    path = tmp_path / "run.jtl"
    path.write_bytes(bytes(range(256)) * 64)
    assert_clear_refusal(relevo("report", str(path)), str(path))


def test_a_jtl_field_over_128_kib_is_a_clear_error(tmp_path):
    """A JTL row with a 200 KB field: exit 2 naming the line, not csv.Error."""
    path = tmp_path / "run.jtl"
    header = "timeStamp,elapsed,label,responseCode,responseMessage,threadName,dataType,success,bytes"
    path.write_text(f"{header}\n1,2,{'x' * 200_000},200,OK,t,text,true,1\n")
    assert_clear_refusal(relevo("report", str(path)), f"{path}:2", "field longer than")


def test_threads_beyond_the_machine_are_refused_with_the_limit(tmp_path):
    """`--threads 100000000` is refused before any memory is spent, naming the limit (it used to
    allocate gigabytes and die of MemoryError)."""
    most, _ = max_threads()
    result = relevo("bench", "--threads", "100000000", "--loops", "1", "http://127.0.0.1:9/")
    assert_clear_refusal(result, f"at most {most}")


def test_loops_beyond_any_run_are_refused_with_the_limit():
    """An absurd loop count is refused, naming the most a run takes."""
    result = relevo("bench", "--threads", "1", "--loops", str(MAX_LOOPS + 1), "http://127.0.0.1:9/")
    assert_clear_refusal(result, f"at most {MAX_LOOPS}")


def test_threads_in_a_jmx_plan_are_capped_too(tmp_path):
    """A JMeter plan asking for 100 million threads is refused the same way as the command line."""
    most, _ = max_threads()
    plan = tmp_path / "plan.jmx"
    plan.write_text(JMX_TEMPLATE.replace("THREADS", "100000000"))
    result = relevo("bench", "--plan", str(plan))
    assert_clear_refusal(result, f"at most {most}")


def test_an_inner_loop_controller_is_capped_too(tmp_path):
    """A loop controller of 100 million inside the thread group is refused, naming the limit, instead of
    being unrolled into memory."""
    sampler_start = "        <HTTPSamplerProxy"
    inner_loop = (
        '        <LoopController guiclass="LoopControlPanel" testclass="LoopController" testname="inner">\n'
        '          <stringProp name="LoopController.loops">100000000</stringProp>\n'
        "        </LoopController>\n"
        "        <hashTree>\n"
    )
    text = JMX_TEMPLATE.replace("THREADS", "1").replace(sampler_start, inner_loop + sampler_start, 1)
    text = text.replace("        <hashTree/>\n", "        <hashTree/>\n        </hashTree>\n", 1)
    plan = tmp_path / "plan.jmx"
    plan.write_text(text)
    result = relevo("bench", "--plan", str(plan))
    assert_clear_refusal(result, f"at most {MAX_SAMPLERS_PER_ITERATION} requests")


JMX_TEMPLATE = """<?xml version="1.0" encoding="UTF-8"?>
<jmeterTestPlan version="1.2" properties="5.0" jmeter="5.6.3">
  <hashTree>
    <TestPlan guiclass="TestPlanGui" testclass="TestPlan" testname="plan"/>
    <hashTree>
      <ThreadGroup guiclass="ThreadGroupGui" testclass="ThreadGroup" testname="users">
        <stringProp name="ThreadGroup.num_threads">THREADS</stringProp>
        <stringProp name="ThreadGroup.ramp_time">0</stringProp>
        <elementProp name="ThreadGroup.main_controller" elementType="LoopController"
            guiclass="LoopControlPanel" testclass="LoopController">
          <stringProp name="LoopController.loops">1</stringProp>
        </elementProp>
      </ThreadGroup>
      <hashTree>
        <HTTPSamplerProxy guiclass="HttpTestSampleGui" testclass="HTTPSamplerProxy" testname="home">
          <stringProp name="HTTPSampler.domain">127.0.0.1</stringProp>
          <stringProp name="HTTPSampler.port">9</stringProp>
          <stringProp name="HTTPSampler.protocol">http</stringProp>
          <stringProp name="HTTPSampler.path">/</stringProp>
          <stringProp name="HTTPSampler.method">GET</stringProp>
        </HTTPSamplerProxy>
        <hashTree/>
      </hashTree>
    </hashTree>
  </hashTree>
</jmeterTestPlan>
"""


# -- the loader under fuzz ------------------------------------------------------------------------------


def _mutate(data: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    """Apply (position, length to delete, bytes to insert) edits to a valid file."""
    out = bytearray(data)
    for position, length, insert in edits:
        at = position % (len(out) + 1)
        out[at : at + length] = insert
    return bytes(out)


_edits = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=len(VALID)),
        st.integers(min_value=0, max_value=8),
        st.sampled_from(
            [
                b"",
                b":",
                b"{",
                b"}",
                b"[",
                b"-",
                b" ",
                b"\n",
                b"\t",
                b"&a",
                b"*a",
                b"!!",
                b"'",
                b'"',
                b"\xff",
                b"\x00",
                b"99999999999999999999",
                b"web1",
                b"role: web",
                b"standby_for: ha1",
                b"port: 0",
                b"127.0.0.1/32",
                b"~",
                b"null",
            ]
        )
        | st.binary(max_size=6),
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(max_size=300) | _edits.map(lambda edits: _mutate(VALID.encode(), edits)))
def test_the_topology_loader_never_tracebacks(tmp_path, content):
    """Random bytes and mutated valid files: the loader either accepts the file (exit 0) or refuses it
    with exit 2 and a message under 20 lines; never a traceback."""
    path = tmp_path / "relevo.yaml"
    path.write_bytes(content)
    result = CliRunner().invoke(cli, ["-f", str(path), "render", "haproxy"])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code in (0, 2), result.output
    if result.exit_code == 2:
        assert "Traceback" not in result.output
        assert len(result.output.splitlines()) < 20, result.output


HUGE = "9" * 5000  # past Python's 4,300-digit limit for int()


@pytest.mark.parametrize(
    ("yaml_text", "line", "where"),
    [
        (
            f"name: t\nnetwork: 127.102.8.0/24\nnodes:\n  web1: {{role: web, port: {HUGE}}}\n",
            4,
            "nodes.web1.port",
        ),
        (f"name: t\ncontroller:\n  journal_max_bytes: {HUGE}\n", 3, "controller.journal_max_bytes"),
        (f"name: t\nhealth: {{rise: -{HUGE}}}\n", 2, "health.rise"),
    ],
)
def test_an_integer_over_4300_digits_in_the_topology_is_a_clear_error(tmp_path, yaml_text, line, where):
    """A number too long for int() anywhere in the topology: exit 2, its file, line and key, no
    traceback."""
    path = tmp_path / "relevo.yaml"
    path.write_text(yaml_text)
    assert_clear_refusal(relevo("-f", str(path), "render", "haproxy"), f"{path}:{line}:", where, "too long")


def test_an_integer_over_4300_digits_in_a_scenario_file_is_a_clear_error(tmp_path):
    """The same in a scenario file: exit 2 naming the scenario file's line."""
    topology = tmp_path / "relevo.yaml"
    topology.write_text(VALID)
    scenarios = tmp_path / "mine.yaml"
    scenarios.write_text(f"scenarios:\n  big:\n    load: {{threads: {HUGE}, loops: 1}}\n")
    result = relevo("-f", str(topology), "scenarios", "--scenario-file", str(scenarios), "--list")
    assert_clear_refusal(result, f"{scenarios}:3:", "threads", "too long")

"""`relevo bench` and `relevo report` as a user runs them: output, files, exit statuses."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from relevo.cli import cli

from .conftest import Behaviour, Server, answer, round_robin

Serve = Callable[[Behaviour], Server]
FIXTURE = Path(__file__).parent / "data" / "jmeter-2.13-200-samples.jtl"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_bench_json_to_stdout_is_json_only(serve: Serve) -> None:
    """--json (a flag, before or after the URL) prints the report as JSON on stdout and nothing else."""
    server = serve(round_robin("web1", "web2"))
    code, out, _ = run("bench", "--json", server.url, "-c", "4", "-n", "5", "-w", "1")
    assert code == 0
    data = json.loads(out)
    assert data["samples"] == 20 and data["errors"] == 0
    assert data["served_by"] == {"web1": 10, "web2": 10}
    assert data["meta"]["model"] == "closed" and data["meta"]["targets"] == [server.url]


def test_bench_prints_the_summary_and_writes_files(serve: Serve, tmp_path: Path) -> None:
    """Without --json, stdout has JMeter's table; --jtl and --out FILE are written; `report` reads it."""
    server = serve(answer())
    jtl, js = tmp_path / "run.jtl", tmp_path / "run.json"
    code, out, _ = run(
        "bench", server.url, "-c", "2", "-n", "5", "-w", "1", "--jtl", str(jtl), "--out", str(js)
    )
    assert code == 0 and "Summary Report" in out and "# Samples" in out
    assert json.loads(js.read_text())["samples"] == 10
    code, out, _ = run("report", str(jtl), "--json")
    assert code == 0 and json.loads(out)["samples"] == 10


def test_report_reads_jmeter_files() -> None:
    """`relevo report` on JMeter 2.13's file: one label, 200 samples, no errors."""
    code, out, _ = run("report", str(FIXTURE), "--json")
    data = json.loads(out)
    assert code == 0 and data["samples"] == 200 and data["errors"] == 0
    assert [row["label"] for row in data["labels"]] == ["GET /"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--duration", "soon"), "not a duration"),
        (("--rate", "10"), "--rate needs --duration"),
        (("--rate", "10", "-d", "1s", "-n", "3"), "--loops"),
        (("--target", "http://127.0.0.1:1/"), "--target goes with --plan"),
        (("--rate", "1e12", "-d", "1s"), "requests per second is more than this machine can send: at most"),
        (("--rate", "100000000", "-d", "1s"), "worker processes x 1000000 each"),
    ],
)
def test_bad_options_exit_with_status_2(args: tuple[str, ...], message: str) -> None:
    """Wrong input is a clear message and exit status 2, before any request is sent."""
    code, out, err = run("bench", "http://127.0.0.1:9/", *args)
    assert code == 2
    assert message in out + err


def test_plan_owns_its_workload(tmp_path: Path) -> None:
    """--plan with --threads is refused: the plan says how many threads."""
    plan = tmp_path / "p.jmx"
    run("bench", "http://127.0.0.1:8080/", "-n", "1", "--export-jmx", str(plan))
    code, _, err = run("bench", "--plan", str(plan), "--threads", "5")
    assert code == 2 and "--threads cannot be combined with --plan" in err


def test_export_jmx_sends_nothing(serve: Serve, tmp_path: Path) -> None:
    """--export-jmx writes the plan and exits; the server sees no request."""
    server = serve(answer())
    path = tmp_path / "plan.jmx"
    code, _, _ = run("bench", server.url, "-c", "3", "-n", "2", "--export-jmx", str(path))
    assert code == 0 and path.read_text().startswith("<?xml")
    assert server.requests == []


def test_plan_runs_with_target(serve: Serve, tmp_path: Path) -> None:
    """A .jmx plan runs its own threads x loops against --target."""
    server = serve(answer())
    path = tmp_path / "plan.jmx"
    run("bench", "http://127.0.0.1:1/", "-c", "3", "-n", "4", "--export-jmx", str(path))
    code, out, _ = run("bench", "--plan", str(path), "--target", server.url, "-w", "1", "--json")
    assert code == 0 and json.loads(out)["samples"] == 12 and len(server.requests) == 12


def test_error_threshold_sets_the_exit_status(serve: Serve) -> None:
    """--max-error-pct turns too many failed samples into exit status 1 (the report is still printed)."""
    server = serve(answer(503))
    code, out, err = run(
        "bench", server.url, "-c", "1", "-n", "3", "-w", "1", "--max-error-pct", "10", "--json"
    )
    assert code == 1 and json.loads(out)["errors_by_kind"] == {"503": 3}
    assert "100.00% of samples failed" in err


def test_default_target_is_the_topologys_frontend(tmp_path: Path) -> None:
    """Without a URL, bench aims at the frontend of the topology given with -f."""
    topology = tmp_path / "relevo.yaml"
    topology.write_text("name: t\nnetwork: 127.199.77.0/24\n")
    path = tmp_path / "plan.jmx"
    code, _, err = run("-f", str(topology), "bench", "-n", "1", "--export-jmx", str(path))
    assert code == 0, err
    text = path.read_text()
    assert '<stringProp name="HTTPSampler.domain">127.199.77.2</stringProp>' in text
    assert '<stringProp name="HTTPSampler.port">8080</stringProp>' in text

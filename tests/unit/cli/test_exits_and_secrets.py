"""Exit statuses mean the same on every command; secrets are not printed unasked; progress for logs."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from relevo.cli import cli
from relevo.cli import cluster as cluster_module
from relevo.loadgen import engine
from relevo.loadgen.engine import LoadProgress
from relevo.polling import wait_until
from relevo.report.progress import ProgressLine
from relevo.secrets import load_or_create_secrets
from relevo.topology import load_topology

from ..loadgen.conftest import answer, hang

TOPOLOGY = "name: t\nnetwork: 127.199.78.0/24\n"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_ctrl_c_in_any_command_exits_130(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Ctrl-C during a command (here `down`) ends it with exit status 130, no traceback."""

    def interrupted(*args: object, **kwargs: object) -> list[str]:
        raise KeyboardInterrupt

    monkeypatch.setattr(cluster_module, "down", interrupted)
    topology = tmp_path / "relevo.yaml"
    topology.write_text(TOPOLOGY)
    code, _, err = run("down", "-f", str(topology))
    assert code == 130 and "interrupted" in err and "Traceback" not in err


def test_an_interrupted_bench_prints_its_partial_report_and_exits_130(
    serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run stopped early (as by Ctrl-C) still prints its samples, marked interrupted, and exits 130."""
    server = serve(answer())

    def stopped_early(plan, **kwargs):
        handle = engine.start(plan, workers=1)
        # Stopped once a user has had an answer (three requests seen from two users), not after a fixed
        # time: on a busy machine the worker process may not have sent anything 0.3 s after its start.
        assert wait_until(lambda: len(server.requests) > 2, timeout_s=60, interval_s=0.01)
        handle.stop()
        return handle.wait()

    monkeypatch.setattr(engine, "run", stopped_early)
    code, out, _ = run("bench", server.url, "-c", "2", "-d", "30s", "--json")
    data = json.loads(out)
    assert code == 130 and data["interrupted"] is True and data["samples"] > 0


def test_p99_threshold_sets_the_exit_status(serve) -> None:
    """--max-p99 turns a slow run into exit status 1, the report still printed."""
    server = serve(hang)
    args = ("-c", "1", "-n", "1", "-w", "1", "--timeout", "300ms", "--max-p99", "100ms", "--json")
    code, out, err = run("bench", server.url, *args)
    assert code == 1 and json.loads(out)["samples"] == 1
    assert "99th percentile" in err


def test_render_masks_the_password_unless_asked(tmp_path: Path) -> None:
    """`render haproxy` shows the stats password only with --show-secrets; otherwise it says where it is."""
    path = tmp_path / "relevo.yaml"
    path.write_text(TOPOLOGY)
    topology = load_topology(path)
    secrets = load_or_create_secrets(topology.state_dir / "secrets.json")
    code, out, err = run("render", "haproxy", "-f", str(path))
    assert code == 0 and secrets.stats_password not in out and "********" in out
    assert "secrets.json" in err
    code, out, _ = run("render", "haproxy", "-f", str(path), "--show-secrets")
    assert code == 0 and secrets.stats_password in out


def test_status_points_to_the_secrets_file(tmp_path: Path) -> None:
    """`status` (table or JSON) names the secrets file and never prints the password."""
    path = tmp_path / "relevo.yaml"
    path.write_text(TOPOLOGY)
    topology = load_topology(path)
    secrets = load_or_create_secrets(topology.state_dir / "secrets.json")
    for extra in ((), ("--json",)):
        code, out, _ = run("status", "-f", str(path), *extra)
        assert code == 0
        assert secrets.stats_password not in out and "secrets.json" in out


def progress(done: int, failed: int = 0, p99_ms: float | None = 2.5) -> LoadProgress:
    return LoadProgress(
        elapsed_s=done / 100, done=done, failed=failed, active=4, expected=None, duration_s=60, p99_ms=p99_ms
    )


def test_progress_without_a_terminal_is_a_line_every_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    """Off a terminal, one plain line per interval (no carriage return) with samples, rate, errors and
    p99 so far, like JMeter's summariser; nothing between two intervals."""
    clock = [100.0]
    monkeypatch.setattr("relevo.report.progress.time.monotonic", lambda: clock[0])
    out = io.StringIO()
    line = ProgressLine(out, live=False, interval_s=5.0)
    for second in range(1, 12):
        clock[0] = 100.0 + second
        line(progress(done=second * 1000, failed=second))
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "\r" not in out.getvalue()
    assert lines[0].startswith("5,000 samples") and "1,000/s" in lines[0]
    assert "5 errors (0.10%)" in lines[0] and "p99 2.5 ms" in lines[0]
    assert lines[1].startswith("10,000 samples")


@pytest.mark.parametrize(
    "load",
    [("--threads", "10", "--loops", "5"), ("--rate", "50", "--duration", "3s")],
    ids=["closed", "open"],
)
def test_nothing_listening_exits_1_with_one_message_in_both_models(
    free_port: int, load: tuple[str, ...]
) -> None:
    """Every request refused: exit 1 with the same hint in the closed model (a run over within the first
    second, which printed a full report of 100 % errors and exited 0) and the open one; no report."""
    url = f"http://127.0.0.1:{free_port}/"
    status, out, err = run("bench", url, *load, "-w", "1", "-q")
    assert status == 1, (out, err)
    assert f"nothing is listening at {url} — is the cluster up? (`relevo up`)" in err
    assert "Summary" not in out and "/sec" not in out


def test_status_where_there_is_no_cluster_says_where_it_looked_and_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No relevo.yaml here or above, no state directory: exit 1, naming the directory and the ways out
    (`relevo init`, -f), instead of a table of `missing` nodes and exit 0; nothing is created."""
    empty = tmp_path / "sub"
    empty.mkdir()
    monkeypatch.chdir(empty)
    status, out, err = run("status")
    assert status == 1, (out, err)
    assert "no cluster here" in err and str(empty) in err.replace("\n", "")
    assert "relevo init" in err and "-f PATH/relevo.yaml" in err.replace("\n", "")
    assert "missing" not in out
    assert list(empty.iterdir()) == []


def test_up_refuses_a_taken_address_before_creating_anything(tmp_path: Path) -> None:
    """A first `up` whose frontend address is held by someone else: exit 2 naming it, and no `.relevo`
    left behind (the refusal came after the state directory had been made)."""
    import socket

    with socket.socket() as holder:
        holder.bind(("127.199.77.2", 0))
        holder.listen()
        port = holder.getsockname()[1]
        topology = tmp_path / "relevo.yaml"
        topology.write_text(
            f"name: t\nnetwork: 127.199.77.0/24\nbalancer: {{frontend: {{port: {port}}}}}\n", "utf-8"
        )
        status, out, err = run("-f", str(topology), "up")
    assert status == 2, (out, err)
    assert f"127.199.77.2:{port} is already in use" in err
    assert not (tmp_path / ".relevo").exists()


@pytest.mark.parametrize(
    ("section", "what"),
    [("dashboard", "the dashboard (dashboard.port)"), ("controller", "the controller's metrics")],
)
def test_up_refuses_a_taken_dashboard_or_metrics_port_before_starting_anything(
    tmp_path: Path, section: str, what: str
) -> None:
    """The dashboard's or the controller's metrics port held by someone else: `up` exits 2 naming it
    before anything starts (it used to bring the cluster up and then fail, or serve without metrics)."""
    import socket

    with socket.socket() as holder:
        holder.bind(("127.199.78.2", 0))
        holder.listen()
        port = holder.getsockname()[1]
        key = "port" if section == "dashboard" else "metrics_port"
        topology = tmp_path / "relevo.yaml"
        topology.write_text(f"name: t\nnetwork: 127.199.78.0/24\n{section}: {{{key}: {port}}}\n", "utf-8")
        status, out, err = run("-f", str(topology), "up")
    assert status == 2, (out, err)
    assert f"{what}" in err and f"127.199.78.2:{port} is already in use" in err
    assert not (tmp_path / ".relevo").exists()

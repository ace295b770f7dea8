"""One grammar across commands: durations, -f anywhere, relevo.yaml found in parents, did-you-mean,
--json as a flag, result files that never lose a finished run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from relevo.cli import cli
from relevo.errors import TopologyError
from relevo.grammar import did_you_mean, parse_duration
from relevo.topology import find_topology_file, load_topology

TOPOLOGY = "name: t\nnetwork: 127.199.77.0/24\n"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("2s", 2.0),
        ("1m30s", 90.0),
        ("1h", 3600.0),
        ("1.5", 1.5),
        (3, 3.0),
        ("1h2m3s", 3723.0),
    ],
)
def test_durations_read_one_way(text: object, seconds: float) -> None:
    """250ms, 2s, 1m30s, 1h and plain seconds all read as seconds."""
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "soon", "30s1m", "1s1s", "-1s", "1 parsec", True])
def test_bad_durations_are_refused(text: object) -> None:
    """Anything else is a ValueError that shows examples."""
    with pytest.raises(ValueError, match="250ms"):
        parse_duration(text)


def test_yaml_and_cli_share_the_duration_grammar(tmp_path: Path) -> None:
    """relevo.yaml takes 1m30s as the command line does."""
    path = tmp_path / "relevo.yaml"
    path.write_text(TOPOLOGY + "standby:\n  hold: 1m30s\nhealth:\n  interval: 250ms\n")
    topology = load_topology(path)
    assert topology.standby.hold_s == 90.0
    assert topology.health.interval_s == 0.25


def test_did_you_mean() -> None:
    """A near miss gets the closest name; nothing close gets no suggestion."""
    assert did_you_mean("stauts", ["status", "start"]) == " (did you mean 'status'?)"
    assert did_you_mean("zzz", ["status", "start"]) == ""


def test_unknown_command_and_option_get_suggestions() -> None:
    """`relevo stauts` and `relevo bench --thread` say what was meant, with exit status 2."""
    code, _, err = run("stauts")
    assert code == 2 and "did you mean 'status'?" in err
    code, _, err = run("bench", "--thread", "3")
    assert code == 2 and "--threads" in err


def test_file_option_after_the_subcommand(tmp_path: Path) -> None:
    """`relevo bench -f FILE` means `relevo -f FILE bench`: the topology's frontend is the default URL."""
    topology = tmp_path / "t.yaml"
    topology.write_text(TOPOLOGY)
    plan = tmp_path / "plan.jmx"
    code, _, err = run("bench", "-n", "1", "-f", str(topology), "--export-jmx", str(plan))
    assert code == 0, err
    assert '<stringProp name="HTTPSampler.domain">127.199.77.2</stringProp>' in plan.read_text()


def test_events_follow_has_no_short_form(tmp_path: Path) -> None:
    """`events -f FILE` names the topology (no -f for --follow), as on every command."""
    topology = tmp_path / "t.yaml"
    topology.write_text(TOPOLOGY)
    code, out, err = run("events", "-f", str(topology), "--json")
    assert code == 0, err
    assert json.loads(out) == []


def test_topology_found_in_a_parent_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """From a subdirectory, relevo uses the nearest parent's relevo.yaml and says which file it uses."""
    (tmp_path / "relevo.yaml").write_text(TOPOLOGY)
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    assert find_topology_file(deep) == tmp_path / "relevo.yaml"
    assert load_topology().source == tmp_path / "relevo.yaml"
    plan = tmp_path / "plan.jmx"
    code, _, err = run("bench", "-n", "1", "--export-jmx", str(plan))
    assert code == 0
    assert f"using {tmp_path / 'relevo.yaml'}" in err
    assert "127.199.77.2" in plan.read_text()


def test_no_message_when_the_file_is_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In the topology's own directory nothing is said about which file is used."""
    (tmp_path / "relevo.yaml").write_text(TOPOLOGY)
    monkeypatch.chdir(tmp_path)
    code, _, err = run("bench", "-n", "1", "--export-jmx", str(tmp_path / "p.jmx"))
    assert code == 0 and "using" not in err


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_parent_file_of_another_user_is_refused(tmp_path: Path) -> None:
    """A relevo.yaml in a parent directory that belongs to someone else is not used silently."""
    (tmp_path / "relevo.yaml").write_text(TOPOLOGY)
    os.chown(tmp_path / "relevo.yaml", 4321, 4321)
    deep = tmp_path / "sub"
    deep.mkdir()
    with pytest.raises(TopologyError, match="another user"):
        find_topology_file(deep)


def test_unwritable_out_is_refused_before_the_run(tmp_path: Path) -> None:
    """--out or --jtl in a directory that does not exist: exit 2 before anything is sent."""
    for option in ("--out", "--jtl"):
        code, _, err = run("bench", "http://127.0.0.1:9/", "-n", "1", option, str(tmp_path / "no" / "x"))
        assert code == 2 and "does not exist" in err and str(tmp_path / "no" / "x") in err


def test_a_failed_write_loses_nothing(serve, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """If the results file cannot be written after the run, the results still reach stdout and the error
    names the path (exit status 1)."""
    from relevo.cli import bench as bench_module

    from ..loadgen.conftest import answer

    server = serve(answer())
    monkeypatch.setattr(bench_module, "_check_writable", lambda path, option: None)
    target = tmp_path / "gone" / "run.json"
    code, out, err = run("bench", server.url, "-c", "1", "-n", "3", "-w", "1", "-q", "--out", str(target))
    assert code == 1
    assert json.loads(out)["samples"] == 3
    assert str(target) in err


def _leaf_commands(
    group: click.Group, ctx: click.Context, path: tuple[str, ...] = ()
) -> dict[str, click.Command]:
    found: dict[str, click.Command] = {}
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None
        if isinstance(command, click.Group):
            found.update(_leaf_commands(command, ctx, (*path, name)))
        else:
            found[" ".join((*path, name))] = command
    return found


def test_every_command_that_reads_a_topology_takes_file_after_it() -> None:
    """-f/--file is accepted after every subcommand that reads a topology; only the four that read none
    (init writes one, report reads a JTL, image build and box build need none) lack it."""
    commands = _leaf_commands(cli, click.Context(cli))
    without = {name for name, command in commands.items() if not any("-f" in p.opts for p in command.params)}
    assert without == {"init", "report", "image build", "box build"}


def test_init_replaces_a_symbolic_link_instead_of_writing_through_it(tmp_path):
    """`relevo init --force` over a link someone planted writes a new file; the link's target is untouched."""
    target = tmp_path / "victim"
    target.write_text("precious\n")
    planted = tmp_path / "relevo.yaml"
    planted.symlink_to(target)
    code, _, err = run("init", str(planted))
    assert code != 0 and "exists" in err
    assert run("init", "--force", str(planted))[0] == 0
    assert target.read_text() == "precious\n"
    assert not planted.is_symlink() and "web1bck" in planted.read_text()

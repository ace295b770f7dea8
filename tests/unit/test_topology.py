"""The topology loader: defaults, and errors that name the file, line, column and what was expected."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from relevo.errors import TopologyError
from relevo.model import Role, StandbyMode, Temperature
from relevo.topology import default_text, load_topology, parse_topology


def parse(text: str):
    return parse_topology(text, source=Path("/x/relevo.yaml"), state_dir=Path("/x/.relevo"))


def error_of(text: str) -> TopologyError:
    with pytest.raises(TopologyError) as info:
        parse(text)
    return info.value


def test_default_is_the_seed_layout():
    """Without a file, relevo uses the seed's five nodes on 127.100.0.2-.6."""
    topology = parse(default_text())
    assert topology.balancer.name == "ha1"
    assert topology.balancer.address == "127.100.0.2"
    assert [(n.name, n.role, n.address) for n in topology.nodes] == [
        ("web1", Role.WEB, "127.100.0.3"),
        ("web2", Role.WEB, "127.100.0.4"),
        ("web1bck", Role.STANDBY, "127.100.0.5"),
        ("web2bck", Role.STANDBY, "127.100.0.6"),
    ]
    assert topology.standby_of("web1").name == "web1bck"
    assert topology.standby.mode is StandbyMode.PAIRED
    assert topology.standby.temperature is Temperature.COLD
    assert topology.balancer.balance == "roundrobin"


def test_an_empty_mapping_means_every_default():
    """A file holding just `{}` is the default topology, node for node."""
    assert parse("{}").nodes == parse(default_text()).nodes


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_an_empty_file_is_an_error_pointing_to_init(text):
    """An empty file (or only comments) is a mistake, not the defaults: the error says `relevo init`."""
    assert "relevo init" in str(error_of(text))


def test_load_without_a_file_uses_the_default(tmp_path, monkeypatch):
    """No relevo.yaml in the working directory: the built-in default, with state in ./.relevo."""
    monkeypatch.chdir(tmp_path)
    topology = load_topology(None)
    assert topology.source is None
    assert topology.state_dir == tmp_path / ".relevo"


def test_state_dir_is_beside_the_file(tmp_path):
    """The state directory is .relevo beside the topology file."""
    path = tmp_path / "relevo.yaml"
    path.write_text("name: demo\n")
    assert load_topology(path).state_dir == tmp_path / ".relevo"


def test_durations_and_settings_are_read():
    """Durations in ms/s/m and plain numbers become seconds; settings reach the model."""
    topology = parse(
        "health: {interval: 100ms, timeout: 2, rise: 3, fall: 1, path: /ping}\n"
        "standby: {mode: pool, temperature: warm, restart: on-failure, hold: 1m}\n"
        "controller: {tick: 50ms, drain_timeout: 1.5s}\n"
        "balancer: {balance: leastconn, frontend: {address: 127.0.0.1, port: 9000}, stats: {port: 9001}}\n"
    )
    assert topology.health.interval_s == pytest.approx(0.1)
    assert topology.health.timeout_s == 2.0
    assert (topology.health.rise, topology.health.fall, topology.health.path) == (3, 1, "/ping")
    assert topology.standby.mode is StandbyMode.POOL
    assert topology.standby.hold_s == 60.0
    assert topology.controller.tick_s == pytest.approx(0.05)
    assert topology.controller.drain_timeout_s == 1.5
    assert topology.balancer.frontend.url == "http://127.0.0.1:9000"
    assert topology.balancer.stats.port == 9001


@pytest.mark.parametrize(
    ("text", "line", "column", "expected"),
    [
        ("nmae: x\n", 1, 1, "unknown key 'nmae' (did you mean 'name'?); expected one of"),
        ("health:\n  timeout: !!1s\n", 2, 12, "health.timeout: could not determine a constructor"),
        ("name: a\nname: b\n", 2, 1, "duplicate key 'name'"),
        ("health:\n  rise: many\n", 2, 9, "health.rise: expected a whole number from 1 to 100"),
        ("health:\n  interval: soon\n", 2, 13, "expected a duration such as 250ms"),
        ("standby: {mode: hot}\n", 1, 17, "standby.mode: expected one of paired, pool, got 'hot'"),
        ("nodes:\n  web1: {role: web}\n  web1: {role: web}\n", 3, 3, "duplicate node name 'web1'"),
        (
            "nodes:\n  web1: {role: web}\n  b: {role: standby, standby_for: web9}\n",
            3,
            3,
            "'web9': no such node",
        ),
        (
            "nodes:\n  web1: {role: web}\n  b: {role: standby, standby_for: web1}\n"
            "  c: {role: standby, standby_for: b}\n",
            4,
            3,
            "b is a standby; expected the name of a web node",
        ),
        ("nodes:\n  web1: {role: standby}\n", 2, 9, "a standby needs `standby_for: <web node>`"),
        (
            "nodes:\n  w: {role: web}\n  b: {role: standby, standby_for: b}\n",
            3,
            3,
            "b is a standby; expected",
        ),
        (
            "nodes:\n  b: {role: standby, standby_for: b}\n",
            2,
            3,
            "expected at least one node with `role: web`",
        ),
        ("nodes:\n  'web;rm -rf': {role: web}\n", 2, 3, "is not a safe name"),
        ("nodes:\n  ../etc: {role: web}\n", 2, 3, "is not a safe name"),
        ("name: My Cluster\n", 1, 7, "is not a safe name"),
        ("nodes:\n  web1: {role: web, address: 300.1.1.1}\n", 2, 30, "expected an IP address"),
        (
            "nodes:\n  web1: {role: web, address: 10.0.0.3}\n",
            2,
            3,
            "the local provider serves on loopback only",
        ),
        ("nodes:\n  web1: {role: web, port: 70000}\n", 2, 27, "expected a whole number from 1 to 65535"),
        (
            "nodes:\n  web1: {role: web, address: 127.0.0.9, port: 80}\n"
            "  web2: {role: web, address: 127.0.0.9, port: 80}\n",
            3,
            3,
            "port clash: 127.0.0.9:80 is also nodes.web1's",
        ),
        ("balancer: {stats: {port: 8080}}\n", 1, 11, "balancer.stats: port clash"),
        ("nodes:\n  web1: {role: web, colour: blue}\n", 2, 21, "unknown key 'colour'"),
        ("nodes:\n  web1: {role: web, options: {cpu: 2}}\n", 2, 31, "unknown key 'cpu'"),
        ("network: 10.1.0.0/24\n", 1, 10, "balancer.frontend.address: the local provider serves on loopback"),
        ("provider: docker\n", 1, 11, "unknown provider 'docker'; known providers:"),
        ("nodes:\n  web1: {role: balancer}\n", 2, 16, "the balancer is declared under `balancer:`"),
        ("nodes:\n  ha1: {role: web}\n", 2, 3, "'ha1' is already the balancer's name"),
        (
            "nodes:\n  b: {role: standby, standby_for: x}\n  x: {role: web}\n  y: {role: standby}\n",
            4,
            6,
            "needs",
        ),
        ("nodes: [web1, web2]\n", 1, 8, "expected a mapping of node names"),
        ("health: {path: 'health'}\n", 1, 16, "expected a URL path such as /health"),
        ("name: [unclosed\n", 2, 1, "not valid YAML"),
        ("network: 127.0.0.0/33\n", 1, 10, "network: expected a CIDR"),
        ("version: 2\n", 1, 10, "version: expected a whole number from 1 to 1"),
    ],
)
def test_bad_files_are_rejected_with_position(text, line, column, expected):
    """Each mistake names the file, line and column, and says what was expected."""
    error = error_of(text)
    assert expected in error.reason
    assert (error.line, error.column) == (line, column)
    assert str(error).startswith(f"/x/relevo.yaml:{line}:{column}: ")


def test_only_web_nodes_is_valid_and_standbys_are_optional():
    """A cluster may have no standbys at all."""
    topology = parse("nodes:\n  a: {role: web}\n  b: {role: web}\n")
    assert topology.standbys == ()
    assert [n.address for n in topology.primaries] == ["127.100.0.3", "127.100.0.4"]


def test_cli_exits_2_with_a_clean_message(tmp_path):
    """A wrong file makes the CLI print file:line:column and exit 2, with no traceback."""
    path = tmp_path / "relevo.yaml"
    path.write_text("name: ok\nhealth:\n  fall: -1\n")
    result = subprocess.run(
        [sys.executable, "-m", "relevo", "-f", str(path), "status"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert f"{path}:3:9: health.fall: expected a whole number from 1 to 100" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_file_is_a_clear_error(tmp_path):
    """Naming a file that does not exist says so and how to make one."""
    with pytest.raises(TopologyError, match="no such file"):
        load_topology(tmp_path / "nope.yaml")


def test_capacity_cpu_is_a_number_of_cores_inherited_and_overridden(tmp_path):
    """`capacity.cpu` sets a CPU quota in cores for every node; a node's own capacity keeps the other
    settings it does not name; a bad value names its line."""
    from relevo.errors import TopologyError
    from relevo.topology import parse_topology

    text = (
        "capacity: {workers: 50, cpu: 0.5}\n"
        "nodes:\n"
        "  web1: {role: web, capacity: {cpu: 0.25}}\n"
        "  web2: {role: web}\n"
    )
    topology = parse_topology(text, source=None, state_dir=tmp_path)
    assert (topology.node("web1").capacity.workers, topology.node("web1").capacity.cpu) == (50, 0.25)
    assert topology.node("web2").capacity.cpu == 0.5
    assert parse_topology("", source=None, state_dir=tmp_path).node("web1").capacity.cpu is None
    with pytest.raises(TopologyError, match=r"capacity.cpu: expected a number of cores") as info:
        parse_topology("capacity: {cpu: lots}\n", source=None, state_dir=tmp_path)
    assert info.value.line == 1


def test_dashboard_and_metrics_settings_are_read():
    """`dashboard:` (on by default, port 8405, actions by provider) and `controller.metrics_port`."""
    assert parse("{}\n").dashboard.enabled is True
    assert parse("{}\n").controller.metrics_port == 8406
    topology = parse(
        "dashboard: {enabled: false, port: 9999, actions: false}\ncontroller: {metrics_port: 0}\n"
    )
    assert (topology.dashboard.enabled, topology.dashboard.port, topology.dashboard.actions) == (
        False,
        9999,
        False,
    )
    assert topology.controller.metrics_port == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("dashboard: {enabled: maybe}\n", "dashboard.enabled: expected true or false, got 'maybe'"),
        ("dashboard: {port: 70000}\n", "dashboard.port: expected a whole number from 1 to 65535"),
        ("dashboard: {listen: 0.0.0.0}\n", "unknown key 'listen'"),
        ("controller: {metrics_port: -1}\n", "metrics_port: expected a whole number from 0 to 65535"),
    ],
)
def test_bad_dashboard_settings_name_the_line(text, expected):
    """A wrong dashboard or metrics setting is refused with its line and what was expected."""
    error = error_of(text)
    assert expected in str(error)
    assert error.line == 1

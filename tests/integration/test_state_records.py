"""A node's record turned to garbage (issue 17, item 12): set aside, and the node found by its config on
the command line, so that `status` tells the truth and `down` still stops it."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from relevo import lifecycle
from relevo.errors import RelevoError
from relevo.procs import command_line
from relevo.topology import load_topology

from .conftest import make_topology_file, skip_without_daemons
from .test_state_trust import cluster_processes, kill_leftovers, relevo_cli

pytestmark = pytest.mark.integration


@pytest.fixture
def topology_file(cluster_dir: Path) -> Iterator[Path]:
    skip_without_daemons()
    path = make_topology_file(cluster_dir)
    yield path
    with contextlib.suppress(RelevoError):
        lifecycle.down(load_topology(path))
    kill_leftovers(cluster_dir / ".relevo")


# The clusters start without a controller or a dashboard: either reads the records in the background and
# would set the garbage aside before the test's own `status` (the clean-clone run saw that race).


def web2_processes(state: Path) -> list[int]:
    return [pid for pid in cluster_processes(state) if any("nodes/web2/" in arg for arg in command_line(pid))]


@pytest.mark.parametrize("garbage", [b"\x00\xff{not json", b"[1, 2, 3]", b'{"kind": "apache", "pid":'])
def test_a_garbage_record_is_set_aside_and_its_node_still_seen_and_stopped(topology_file, garbage):
    """run/nodes/web2.json overwritten with garbage while web2 serves: `status` says web2 runs and says
    the record was set aside (renamed beside it); `down` stops web2's Apache."""
    assert relevo_cli(topology_file, "up", "--no-controller", "--no-dashboard").returncode == 0
    state = topology_file.parent / ".relevo"
    assert web2_processes(state) != []
    record = state / "run" / "nodes" / "web2.json"
    record.write_bytes(garbage)
    result = relevo_cli(topology_file, "status", "--json")
    assert result.returncode == 0, result.stderr
    states = {node["name"]: node["state"] for node in json.loads(result.stdout)["nodes"]}
    assert states["web2"] == "running"
    assert "web2.json is not a record relevo wrote: set aside as web2.json.corrupt-" in result.stderr
    assert [p.name for p in record.parent.glob("web2.json.corrupt-*")] != []
    assert json.loads(record.read_text())["kind"] == "apache", "web2 is recorded again"
    assert relevo_cli(topology_file, "down").returncode == 0
    assert web2_processes(state) == [], "down left web2's Apache running"


def test_a_garbage_record_of_a_node_that_is_not_running_is_set_aside_and_stopped_said(topology_file):
    """A garbage record of a stopped standby: set aside, and the standby is reported stopped."""
    assert relevo_cli(topology_file, "up", "--no-controller", "--no-dashboard").returncode == 0
    record = topology_file.parent / ".relevo" / "run" / "nodes" / "web1bck.json"
    record.write_bytes(b"garbage")
    result = relevo_cli(topology_file, "status", "--json")
    states = {node["name"]: node["state"] for node in json.loads(result.stdout)["nodes"]}
    assert states["web1bck"] == "stopped"
    assert "set aside" in result.stderr
    assert not record.exists()

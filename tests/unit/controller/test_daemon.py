"""One controller per cluster (the lock), and how the background controller is launched."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from relevo.controller import daemon
from relevo.controller.daemon import ControllerRunningError, controller_lock, lock_holder
from relevo.files import claim_state_dir, write_atomic
from relevo.paths import StatePaths

from .fakes import topology


def test_lock_is_exclusive_and_names_its_holder(tmp_path):
    """While one controller holds the lock a second one is refused, and the holder's pid is known."""
    lock = tmp_path / "controller.lock"
    assert lock_holder(lock) is None
    with controller_lock(lock):
        assert lock_holder(lock) == os.getpid()
        with pytest.raises(ControllerRunningError, match=str(os.getpid())), controller_lock(lock):
            pass
    assert lock_holder(lock) is None


def test_watch_command_pins_the_state_dir(tmp_path):
    """The background controller watches the same state directory, with or without a topology file."""
    built_in = topology(tmp_path)
    command = daemon.watch_command(built_in)
    assert command[:3] == [sys.executable, "-m", "relevo"]
    assert "-f" not in command
    assert command[-3:] == ["watch", "--state-dir", str((tmp_path / ".relevo").resolve())]
    from dataclasses import replace

    from_file = replace(built_in, source=Path("/srv/x/relevo.yaml"))
    assert daemon.watch_command(from_file)[3:5] == ["-f", "/srv/x/relevo.yaml"]


def test_status_without_a_controller(tmp_path):
    """No controller: not running, no pid, no node view; no events yet."""
    topo = topology(tmp_path)
    status = daemon.controller_status(topo)
    assert status["running"] is False and status["pid"] is None and status["nodes"] == {}
    assert daemon.recent_events(topo, 5) == []
    assert daemon.stop_background(topo) is False


@pytest.mark.parametrize(
    ("age_s", "provider_wait_s", "ticking"),
    [(1.0, 0.0, True), (8.0, 0.0, False), (8.0, 10.0, True), (15.0, 10.0, False)],
)
def test_a_tick_waiting_on_its_providers_is_alive_within_their_bound(
    tmp_path: Path, age_s: float, provider_wait_s: float, ticking: bool
):
    """A controller holding its lock whose last tick is older than 20 ticks (2 s at least) is stuck,
    unless its tick may be waiting on its providers' APIs for as long as it says (LXD's 10 s on a busy
    emulated VM, seen in the vagrant tier): then only past that bound."""
    topo = topology(tmp_path)
    claim_state_dir(topo.state_dir)
    paths = StatePaths(topo.state_dir).held()
    state = {"last_tick": time.time() - age_s, "ticks": 5, "provider_wait_s": provider_wait_s}
    write_atomic(paths.controller_state, json.dumps(state))
    with controller_lock(paths.controller_lock):
        status = daemon.controller_status(topo)
    assert status["running"] is True and status["ticking"] is ticking


class _Remote:
    """A provider asked through an API: 10 s per node here, as if each were on a daemon of its own."""

    def status_bound_s(self, nodes: list[str]) -> float:
        return 10.0 * len(nodes)


def test_the_wait_on_providers_counts_only_those_asked_through_an_api():
    """status_bound_s sums what each provider holding some of the nodes may take to answer; a provider
    answering from this process (no BoundedStatus) adds nothing."""
    remote, local = _Remote(), object()
    where = {"ha1": local, "web1": remote, "web2": remote, "web1bck": local}

    class Cluster:
        def provider_for(self, node: str) -> object:
            return where[node]

    assert daemon.status_bound_s(Cluster(), ["ha1", "web1", "web2", "web1bck"]) == 20.0  # type: ignore[arg-type]
    assert daemon.status_bound_s(Cluster(), ["ha1"]) == 0.0  # type: ignore[arg-type]

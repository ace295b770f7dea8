"""One controller per cluster (the lock), and how the background controller is launched."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from relevo.controller import daemon
from relevo.controller.daemon import ControllerRunningError, controller_lock, lock_holder

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

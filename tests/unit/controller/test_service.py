"""A controller systemd runs is started and stopped through systemctl, and only that one: the unit must be
enabled and name this cluster's state directory, on a host whose init is systemd. systemctl is the edge,
faked by a script on PATH that records its calls."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from relevo.controller import daemon, service
from relevo.controller.daemon import controller_lock
from relevo.errors import RelevoError

from .fakes import topology

FAKE_SYSTEMCTL = """#!/bin/sh
echo "$*" >>"$FAKE_SYSTEMCTL_LOG"
case "$*" in
*MainPID*) echo "${FAKE_MAINPID:-0}" ;;
show*) printf '%s\\n' "$FAKE_SYSTEMCTL_SHOW" ;;
esac
"""


@pytest.fixture
def systemd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A booted-by-systemd marker and a fake systemctl; returns the file of the calls it got."""
    booted = tmp_path / "run-systemd-system"
    booted.mkdir()
    monkeypatch.setattr(service, "BOOTED", booted)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "systemctl"
    fake.write_text(FAKE_SYSTEMCTL)
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    calls = tmp_path / "systemctl-calls"
    calls.touch()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SYSTEMCTL_LOG", str(calls))
    return calls


def shown(state_dir: Path, enabled: str = "enabled") -> str:
    return (
        f"UnitFileState={enabled}\nExecStart={{ path=/usr/local/bin/relevo ; argv[]=/usr/local/bin/relevo "
        f"-f /srv/relevo.yaml watch --state-dir {state_dir} ; ignore_errors=no }}"
    )


def test_the_enabled_unit_of_this_state_directory_is_the_controller(
    tmp_path: Path, systemd: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    topo = topology(tmp_path)
    monkeypatch.setenv("FAKE_SYSTEMCTL_SHOW", shown(topo.state_dir.resolve()))
    assert service.service_of(topo) == f"relevo-watch-{topo.name}.service"
    assert systemd.read_text().split("\n")[0].startswith("show --property=UnitFileState,ExecStart")


@pytest.mark.parametrize(
    "which",
    ["disabled", "another cluster's state directory", "no systemd"],
)
def test_any_other_unit_is_not_this_cluster_s_controller(
    tmp_path: Path, systemd: Path, monkeypatch: pytest.MonkeyPatch, which: str
) -> None:
    topo = topology(tmp_path)
    text = {
        "disabled": shown(topo.state_dir.resolve(), enabled="disabled"),
        "another cluster's state directory": shown(tmp_path / "elsewhere" / ".relevo"),
        "no systemd": shown(topo.state_dir.resolve()),
    }[which]
    monkeypatch.setenv("FAKE_SYSTEMCTL_SHOW", text)
    if which == "no systemd":
        service.BOOTED.rmdir()
    assert service.service_of(topo) is None
    if which == "no systemd":
        assert systemd.read_text() == ""  # not even asked


def test_stop_and_start_go_through_systemctl(
    tmp_path: Path, systemd: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """stop_background stops the unit (a SIGTERM would only make systemd restart it); start_background
    starts it and waits for its controller to take the lock, naming the journal when none does."""
    topo = topology(tmp_path)
    monkeypatch.setenv("FAKE_SYSTEMCTL_SHOW", shown(topo.state_dir.resolve()))
    unit = f"relevo-watch-{topo.name}.service"
    topo.state_dir.mkdir(mode=0o700, exist_ok=True)
    paths_lock = topo.state_dir / "controller.lock"
    with controller_lock(paths_lock):
        assert daemon.stop_background(topo) is True
    assert f"stop {unit}" in systemd.read_text().splitlines()
    monkeypatch.setattr(daemon, "START_WAIT_S", 0.2)
    with pytest.raises(
        RelevoError, match=rf"systemd started {unit}, but no controller runs and holds the lock"
    ):
        daemon.start_background(topo)
    assert f"start {unit}" in systemd.read_text().splitlines()
    # Started but slow to take the lock (an emulated VM): its process, as systemd knows it.
    monkeypatch.setenv("FAKE_MAINPID", str(os.getpid()))
    assert daemon.start_background(topo) == os.getpid()

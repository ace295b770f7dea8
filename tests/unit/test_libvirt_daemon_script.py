"""scripts/libvirt-daemon stops only what it recorded, by PID and kernel start time (no daemon is started
here: a `sleep` stands in for a recorded daemon)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "libvirt-daemon"


def _start_time(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(") ", 1)[1].split()[19]


@pytest.fixture
def stand_in() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "60"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=60, check=False)


def test_stop_ends_the_recorded_process(tmp_path: Path, stand_in: subprocess.Popen[bytes]) -> None:
    """`stop PIDDIR` sends SIGTERM to the recorded PID whose start time matches, and removes its PID file."""
    (tmp_path / "libvirtd.pid").write_text(f"{stand_in.pid} {_start_time(stand_in.pid)}\n")
    result = _run("stop", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert stand_in.wait(timeout=10) == -15
    assert f"libvirtd (PID {stand_in.pid}) stopped" in result.stderr
    assert not (tmp_path / "libvirtd.pid").exists()


def test_stop_spares_a_recycled_pid(tmp_path: Path, stand_in: subprocess.Popen[bytes]) -> None:
    """A PID file whose start time does not match the process now holding that PID signals nothing."""
    (tmp_path / "virtlogd.pid").write_text(f"{stand_in.pid} 1\n")
    result = _run("stop", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert stand_in.poll() is None
    assert not (tmp_path / "virtlogd.pid").exists()


def test_stop_with_nothing_recorded_says_so(tmp_path: Path) -> None:
    """`stop` on an empty PID directory touches nothing and says nothing was started by the script."""
    result = _run("stop", str(tmp_path))
    assert result.returncode == 0 and "nothing this script started" in result.stderr


def test_unknown_action_is_a_usage_error() -> None:
    """An unknown action prints the usage and exits 2."""
    result = _run("restart")
    assert result.returncode == 2 and "usage:" in result.stderr


def test_stop_puts_the_vms_cpu_weight_back(tmp_path: Path) -> None:
    """`stop` gives libvirt's `machine` CPU group back the weight `start` found (recorded in PIDDIR)."""
    shares = tmp_path / "cpu" / "machine" / "cpu.shares"
    shares.parent.mkdir(parents=True)
    shares.write_text("5120\n")
    piddir = tmp_path / "pids"
    piddir.mkdir()
    (piddir / "machine.weight").write_text(f"{shares} 1024\n")
    result = _run("stop", str(piddir))
    assert result.returncode == 0, result.stderr
    assert shares.read_text().strip() == "1024"
    assert not (piddir / "machine.weight").exists()

"""`relevo render systemd`: a unit that runs the controller directly, as its own user, always restarted."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from relevo.controller.systemd import quote_arg, render_systemd_unit

from .fakes import topology


def unit(tmp_path: Path, **kwargs) -> str:
    topo = replace(topology(tmp_path), source=tmp_path / "relevo.yaml")
    return render_systemd_unit(topo, exe="/usr/bin/relevo", **kwargs)


def lines(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))


def test_unit_runs_watch_without_a_shell(tmp_path):
    """ExecStart is relevo itself with the topology and state dir; restarted always; its own user."""
    text = unit(tmp_path)
    keys = lines(text)
    state = (tmp_path / ".relevo").resolve()
    assert keys["ExecStart"] == f"/usr/bin/relevo -f {tmp_path}/relevo.yaml watch --state-dir {state}"
    assert keys["Restart"] == "always"
    assert keys["User"] == "relevo" and keys["Group"] == "relevo"
    assert keys["ReadWritePaths"] == str(state)
    assert keys["ProtectSystem"] == "strict" and keys["NoNewPrivileges"] == "yes"
    assert keys["KillMode"] == "process"
    assert "sh -c" not in text and "/bin/sh" not in text


def test_user_name_is_checked(tmp_path):
    """A user name systemd would not accept is refused, not rendered."""
    assert "User=watcher" in unit(tmp_path, user="watcher")
    with pytest.raises(ValueError):
        unit(tmp_path, user="root; rm")


def test_arguments_are_quoted_for_systemd():
    """Spaces, quotes, % specifiers and $ variables come out as systemd reads them back."""
    assert quote_arg("/plain/path") == "/plain/path"
    assert quote_arg("/with space/a") == '"/with space/a"'
    assert quote_arg('/q"uote') == '"/q\\"uote"'
    assert quote_arg("/100%") == "/100%%"
    assert quote_arg("$HOME") == '"$$HOME"'


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_accepts_the_unit(tmp_path):
    """`systemd-analyze verify` finds nothing to complain about (relevo itself as the command)."""
    exe = shutil.which("true") or "/bin/true"
    topo = replace(topology(tmp_path), source=tmp_path / "relevo.yaml")
    path = tmp_path / "relevo-watch-t.service"
    path.write_text(render_systemd_unit(topo, exe=exe))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    complaints = [line for line in result.stderr.splitlines() if str(path) in line]
    assert result.returncode == 0 and not complaints, result.stderr

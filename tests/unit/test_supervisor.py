"""The one owner of this process's detached children (the background controller and dashboard)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from relevo.polling import wait_until
from relevo.supervisor import Supervisor


def _spawn(supervisor: Supervisor, tmp_path: Path, code: str):
    return supervisor.spawn(
        [sys.executable, "-c", code], log=tmp_path / "logs" / "child.log", cwd=tmp_path, env=os.environ
    )


def test_a_child_that_exits_at_once_is_reported_and_collected(tmp_path: Path) -> None:
    """A child that exits before it is ready: `started` says so, the child is collected (no zombie left
    under its pid) and its output is in the log, appended."""
    supervisor = Supervisor()
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "child.log").write_text("earlier\n")
    child = _spawn(supervisor, tmp_path, "print('bad config'); raise SystemExit(3)")
    assert supervisor.started(child, lambda: False, timeout_s=30, interval_s=0.01) is False
    assert supervisor.children() == {}
    assert not Path(f"/proc/{child.pid}").exists(), "left a zombie"
    assert (tmp_path / "logs" / "child.log").read_text() == "earlier\nbad config\n"


def test_a_running_child_is_kept_until_it_exits_then_collected_once(tmp_path: Path) -> None:
    """A ready child is detached (its own session) and kept: not collected while it runs, collected once
    it has exited, and never a child of ours again after that."""
    supervisor = Supervisor()
    marker = tmp_path / "ready"
    child = _spawn(supervisor, tmp_path, f"import time; open({str(marker)!r}, 'w'); time.sleep(60)")
    assert supervisor.started(child, marker.exists, timeout_s=30, interval_s=0.01) is True
    assert os.getsid(child.pid) == child.pid, "not in a session of its own"
    assert supervisor.collected(child.pid) is False
    assert supervisor.children() == {child.pid: None}
    os.kill(child.pid, signal.SIGKILL)
    assert wait_until(lambda: supervisor.collected(child.pid), 30, 0.01)
    assert supervisor.children() == {}
    assert not Path(f"/proc/{child.pid}").exists(), "left a zombie"
    assert supervisor.collected(child.pid) is True


def test_a_pid_that_is_not_our_child_is_nothing_to_collect(tmp_path: Path) -> None:
    """A pid this supervisor did not start (here: this very process) is never waited for."""
    assert Supervisor().collected(os.getpid()) is True

"""Detached children of this process: the background `relevo watch` and `relevo dashboard`.

A child is started in its own session with its output appended to a log, and outlives the call that
started it: `relevo up` starts it and `relevo down` (or a scenario's fault) stops it, often in the same
process. The `Supervisor` owns their `Popen`s so that each is collected once it exits (no zombie, no
ResourceWarning); the process has one, `SUPERVISOR`, shared by the controller and the dashboard. Which
child is the cluster's is decided by their callers from the kernel (a lock's holder), never from here.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from relevo.files import ensure_dir
from relevo.polling import wait_until


class Supervisor:
    def __init__(self) -> None:
        self._children: dict[int, subprocess.Popen[bytes]] = {}  # pid -> the child, until collected

    def spawn(
        self,
        argv: Sequence[str],
        *,
        log: Path,
        cwd: Path,
        env: Mapping[str, str],
        pass_fds: Sequence[int] = (),
    ) -> subprocess.Popen[bytes]:
        """Start `argv` detached (its own session, no input, output appended to `log`, never through a
        symbolic link, no descriptor of ours but `pass_fds`) and keep it until it is collected."""
        ensure_dir(log.parent)
        log_fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        with os.fdopen(log_fd, "ab") as out:
            child = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                pass_fds=tuple(pass_fds),
                cwd=cwd,
                env=dict(env),
            )
        self._children[child.pid] = child
        return child

    def started(
        self, child: subprocess.Popen[bytes], ready: Callable[[], bool], timeout_s: float, interval_s: float
    ) -> bool:
        """Wait until `ready()` or until the child exits, for up to `timeout_s`: False if it exited (it is
        collected), True if it is ready or still starting (slow, but alive)."""
        wait_until(lambda: child.poll() is not None or ready(), timeout_s, interval_s)
        if child.poll() is None:
            return True
        self._children.pop(child.pid, None)
        return False

    def children(self) -> dict[int, int | None]:
        """Each child not yet collected, with its exit status (None: running), for a diagnosis."""
        return {pid: child.poll() for pid, child in self._children.items()}

    def collected(self, pid: int) -> bool:
        """No child of ours is left to collect at `pid`: never ours, or ours and exited (collected now).
        Until then our exited child lingers as a zombie, which still looks alive."""
        child = self._children.get(pid)
        if child is None:
            return True
        if child.poll() is None:
            return False
        del self._children[pid]
        return True


SUPERVISOR = Supervisor()

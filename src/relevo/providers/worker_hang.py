"""Holding a local node's workers stopped: the `hang-workers` fault of the local provider.

One SIGSTOP is not a lasting hang: Apache's parent counts the threads that were busy at that moment as
not idle and starts new workers, which answer (the node heals itself, and a scenario expecting a
failover saw none). A thread per node stops each new worker of the node's process group until the node
is resumed, crashed, stopped or started (`release`), or `max_s` has passed. Signals go only to members
of the group of a process relevo recorded (PID and start time).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path

from relevo.errors import ProviderError
from relevo.procs import ProcessRecord, group_members

# A new worker accepts the connections waiting in the backlog within milliseconds of its fork (Apache
# starts some while it settles after a start): the keeper reads the parent's list of children this often.
POLL_S = 0.002
# Root, with the cgroup v1 `pids` controller: the node's processes are also put in a group that may not
# grow (pids.max = what it has), so Apache's parent cannot fork a replacement at all while the hang lasts
# (its fork fails and it retries later); the keeper remains for where that is not possible.
PIDS_ROOT = Path("/sys/fs/cgroup/pids")
# A hang nobody released (a run that ended without its resume) still ends: every loop is bounded.
MAX_HOLD_S = 600.0


class WorkerHangs:
    def __init__(self, *, max_s: float = MAX_HOLD_S) -> None:
        self.max_s = max_s
        self.keepers: dict[str, tuple[threading.Thread, threading.Event]] = {}
        self.fences: dict[str, tuple[Path, Path]] = {}  # node -> (its fence group, where its processes were)

    def hold(self, node: str, record: ProcessRecord) -> None:
        """SIGSTOP every process of the node's group but its leader now (ProviderError when it has no
        other), and keep every new one stopped."""
        self.release(node)
        # The parent first, so that no worker it forks from now on escapes (its fork fails instead).
        fence = _fence(record, [record.pid])
        if fence is not None:
            self.fences[node] = fence
        workers = {pid for pid in group_members(record.pgid) if pid != record.pid}
        if not workers:
            self.release(node)
            raise ProviderError(f"{node} has no worker processes to stop")
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        done = threading.Event()
        keeper = threading.Thread(
            target=self._keep, args=(record, workers, done), name=f"hang-{node}", daemon=True
        )
        keeper.start()
        self.keepers[node] = (keeper, done)

    def holding(self, node: str) -> bool:
        return node in self.keepers

    def release(self, node: str) -> None:
        """Stop keeping the node's workers stopped (they stay stopped until the group is resumed)."""
        keeper, done = self.keepers.pop(node, (None, None))
        if keeper is not None and done is not None:
            done.set()
            keeper.join(5)
        fence = self.fences.pop(node, None)
        if fence is not None:
            _unfence(*fence)

    def release_all(self) -> None:
        for node in list(self.keepers):
            self.release(node)

    def _keep(self, record: ProcessRecord, stopped: set[int], done: threading.Event) -> None:
        deadline = time.monotonic() + self.max_s
        while not done.wait(POLL_S) and time.monotonic() < deadline:
            for pid in children(record.pid):
                if pid not in stopped:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGSTOP)
                    stopped.add(pid)


def _fence(record: ProcessRecord, pids: list[int]) -> tuple[Path, Path] | None:
    """Move the node's processes into a pids group of their own that may not grow; None where that
    cannot be done (not root, no cgroup v1 pids controller)."""
    if os.geteuid() != 0 or not (PIDS_ROOT / "cgroup.procs").exists():
        return None
    home = PIDS_ROOT
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{record.pid}/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if "pids" in controllers.split(","):
                home = PIDS_ROOT / path.lstrip("/")
    group = PIDS_ROOT / f"relevo-hang-{record.pid}-{record.start_time}"
    try:
        group.mkdir(exist_ok=True)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                (group / "cgroup.procs").write_text(str(pid))
        (group / "pids.max").write_text((group / "pids.current").read_text().strip())
    except OSError:
        _unfence(group, home)
        return None
    return group, home


def _unfence(group: Path, home: Path) -> None:
    """The processes back where they were, the group removed."""
    with contextlib.suppress(OSError):
        (group / "pids.max").write_text("max")
    with contextlib.suppress(OSError):
        for pid in (group / "cgroup.procs").read_text().split():
            with contextlib.suppress(OSError):
                (home / "cgroup.procs").write_text(pid)
    with contextlib.suppress(OSError):
        group.rmdir()


def children(pid: int) -> set[int]:
    """The live children of a process (one small file per thread, no scan of /proc): the workers
    the recorded parent forked, and nothing else."""
    found: set[int] = set()
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            found.update(int(child) for child in (task / "children").read_text().split())
        except (OSError, ValueError):
            continue
    return found

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
# A hang nobody released (a run that ended without its resume) still ends: every loop is bounded.
MAX_HOLD_S = 600.0


class WorkerHangs:
    def __init__(self, *, max_s: float = MAX_HOLD_S) -> None:
        self.max_s = max_s
        self.keepers: dict[str, tuple[threading.Thread, threading.Event]] = {}

    def hold(self, node: str, record: ProcessRecord) -> None:
        """SIGSTOP every process of the node's group but its leader now (ProviderError when it has no
        other), and keep every new one stopped."""
        self.release(node)
        workers = {pid for pid in group_members(record.pgid) if pid != record.pid}
        if not workers:
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

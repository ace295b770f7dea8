"""One writer at a time: `flock` locks in the state directory, bound to the inode they were taken on.

A lock is a file relevo never writes to: who holds it is the kernel's answer (/proc/locks names the
holder's pid by device and inode), so there are no contents to read half-written. A lock is taken on
the file the path names *now*: after `flock` the path is checked to still name the same inode (a file
unlinked or replaced meanwhile is not a lock), and a holder can ask again at any time whether the path
still names its inode (`HeldLock.bound`): a lock file moved aside is detected, not trusted.

The cluster lock is taken by `up`, `down`, `start`, `stop`, `scenarios` (setting nodes up, each fault)
and by the controller around each start or stop it does; the controller's own lock (one controller per
cluster) is held for its whole life.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from relevo import anchor
from relevo.errors import RelevoError
from relevo.files import claim_state_dir
from relevo.paths import StatePaths
from relevo.polling import wait_until
from relevo.procs import command_line

POLL_S = 0.02
# How long `up`, `down`, `start` and `stop` wait for another writer (the controller's start of a node
# takes seconds at most; a whole `up` tens of seconds).
CLI_WAIT_S = 60.0


class LockBusyError(RelevoError):
    """Another process holds the lock (its pid and command named)."""


class LockLostError(RelevoError):
    """The lock file this process locked is no longer the one its path names."""


@dataclass(slots=True)
class HeldLock:
    path: Path
    fd: int
    device: int
    inode: int

    def bound(self) -> bool:
        """The path still names the file this lock was taken on."""
        try:
            info = os.lstat(self.path)
        except OSError:
            return False
        return (info.st_dev, info.st_ino) == (self.device, self.inode)

    def check(self) -> None:
        if not self.bound():
            raise LockLostError(f"the lock file {anchor.real(self.path)} was replaced or removed while held")


@contextlib.contextmanager
def hold(
    path: Path,
    *,
    wait_s: float,
    what: str,
    cancelled: Callable[[], bool] = lambda: False,
) -> Iterator[HeldLock]:
    """Hold the exclusive lock at `path` (created 0600 when missing, never through a symbolic link),
    waiting up to `wait_s` for another holder; raises LockBusyError naming the holder."""
    taken: list[HeldLock] = []

    def locked_or_cancelled() -> bool:
        held = _try(path)
        if held is not None:
            taken.append(held)
            return True
        return cancelled()

    if not wait_until(locked_or_cancelled, wait_s, POLL_S) or not taken:
        shown = anchor.real(path)
        raise LockBusyError(f"{what}: {describe_holder(path)} (lock {shown}); try again when it is done")
    held = taken[0]
    try:
        yield held
    finally:
        os.close(held.fd)  # releases the lock


def _try(path: Path) -> HeldLock | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    info = os.fstat(fd)
    held = HeldLock(path=path, fd=fd, device=info.st_dev, inode=info.st_ino)
    if not held.bound():  # unlinked or replaced between our open and our flock: lock the new one
        os.close(fd)
        return _try(path)
    return held


def holders(path: Path) -> list[int]:
    """The pids holding a `flock` on the file `path` names now, as the kernel reports them."""
    try:
        info = os.lstat(path)
        table = Path("/proc/locks").read_text()
    except OSError:
        return []
    device = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    found = []
    for line in table.splitlines():
        # "1: FLOCK  ADVISORY  WRITE 1234 fd:00:5678 0 EOF" (a blocked waiter's line has "->" first)
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == device and fields[4].isdigit():
            found.append(int(fields[4]))
    return found


def describe_holder(path: Path) -> str:
    pids = holders(path)
    if not pids:
        return "another process holds the lock"
    command = " ".join(command_line(pids[0])[:6]) or "?"
    return f"pid {pids[0]} holds the lock ({command[:120]})"


def cluster_lock(
    paths: StatePaths, *, what: str, wait_s: float = CLI_WAIT_S, cancelled: Callable[[], bool] = lambda: False
) -> contextlib.AbstractContextManager[HeldLock]:
    """The cluster's writer lock (claims the state directory first: created 0700, refused if unsafe)."""
    claim_state_dir(paths.root)
    return hold(paths.held().cluster_lock, wait_s=wait_s, what=what, cancelled=cancelled)

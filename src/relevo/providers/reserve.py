"""Room to fail over on a full disk: a few pages set aside per node, given up to start it.

Starting a node writes little, but it must write it: the record before the daemon (records before
processes), the daemon's own pid file, the full record after. On a full file system any of these fails,
and a failover that cannot start its standby is no failover. So each node gets a reserve file when it
is created (`up`); a start that finds the disk (nearly) full removes the node's reserve first, and
says so, and the next `up` with room to spare makes it again. A node's configuration and pages are
written only when their content changes (LocalHost), so a start on an unchanged node writes nothing else.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from relevo.paths import StatePaths

# Enough for an intent, a pid file, a record and its temporary file, on any file system's block size.
RESERVE_BYTES = 256 * 1024


def reserve_path(fs: StatePaths, node: str) -> Path:
    record = fs.pid_file(node)
    return record.with_name(f".{node}.reserve")  # not a .json: never taken for a record


def ensure_reserve(fs: StatePaths, node: str) -> bool:
    """Make the node's reserve if it is missing; False when there is no room for it (nothing left)."""
    path = reserve_path(fs, node)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return True
    except OSError:
        return False
    try:
        os.posix_fallocate(fd, 0, RESERVE_BYTES)
    except OSError:
        os.close(fd)
        path.unlink(missing_ok=True)
        return False
    os.close(fd)
    return True


def release_reserve(fs: StatePaths, node: str) -> bool:
    """Give the node's reserve back to the file system; True when there was one."""
    try:
        reserve_path(fs, node).unlink()
    except OSError:
        return False
    return True


def free_bytes(path: Path) -> int | None:
    """What an unprivileged writer may still write on `path`'s file system (None when unknown)."""
    try:
        info = os.statvfs(path)
    except OSError:
        return None
    return info.f_bavail * info.f_frsize


def nearly_full(path: Path) -> bool:
    free = free_bytes(path)
    return free is not None and free < RESERVE_BYTES


def is_full(exc: OSError) -> bool:
    return exc.errno in (errno.ENOSPC, errno.EDQUOT)


def missing_reserves(fs: StatePaths, nodes: list[str]) -> list[str]:
    """Nodes whose reserve was used (or could not be made)."""
    with contextlib.suppress(OSError):
        if not fs.pid_file("x").parent.is_dir():
            return []
    return [node for node in nodes if not reserve_path(fs, node).exists()]


def disk_notes(fs: StatePaths, nodes: list[str]) -> list[str]:
    """What `status` says about a full disk: what relevo cannot write now, which reserves were used."""
    notes = []
    free = free_bytes(fs.root)
    if free is not None and free < RESERVE_BYTES:
        notes.append(
            f"the state directory's file system is full ({free // 1024} KiB free): the journal, the "
            "controller's state, HAProxy's server states and new records cannot be written; free some space"
        )
    used = missing_reserves(fs, nodes)
    if used:
        notes.append(
            f"no reserved space: {', '.join(used)} (used to start them on a full disk, or not made yet; "
            "`relevo up` reserves it once there is room)"
        )
    return notes

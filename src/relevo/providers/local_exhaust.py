"""Exhaustion faults on the local provider: a node starved of CPU (its cgroup quota cut for the span) and
a full disk under the node's files.

- cpu-starve (root, a cgroup `cpu` controller): the node's processes moved into its own group
  (`cpu_quota.CpuCgroups.group`, the one `capacity.cpu` uses) with a quota of `pct` % of one core; Apache's
  later children inherit it. A node that already has a capacity quota gets it back on heal; one that had
  none goes back to the group its leader came from, and the group is removed.
- disk-full: a file grown until the file system of the node's files says ENOSPC. Only where relevo may
  fill it: a tmpfs of at most `FILL_MAX_BYTES` (a small disk someone mounted for the state directory).
  The host's own disk is never filled: there, `cannot` says how to give relevo one.

Both are recorded (by the caller, `local_impair`) before they are applied and undone from the record.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from relevo.errors import ProviderError
from relevo.providers.cpu_quota import CpuCgroups, CpuQuotaError, Layout

FILL_NAME = ".relevo-disk-full"
FILL_MAX_BYTES = 256 * 1024 * 1024  # a tmpfs larger than this is not filled (RAM, shared machine)
_CHUNK = 1024 * 1024
_SMALL = 4096
MOUNTINFO = Path("/proc/self/mountinfo")


# -- disk full ----------------------------------------------------------------------------------------------
def mount_of(path: Path, mountinfo: Path = MOUNTINFO) -> tuple[str, str]:
    """The mount point and file system type holding `path` (the longest mount point above it)."""
    target = os.path.realpath(path)
    best = ("/", "?")
    for line in mountinfo.read_text().splitlines():
        fields = line.split()
        try:
            point = fields[4].replace("\\040", " ")
            fstype = fields[fields.index("-") + 1]
        except (IndexError, ValueError):
            continue
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best[0]):
            best = (point, fstype)
    return best


def disk_cannot(directory: Path) -> str | None:
    """Why the file system of `directory` may not be filled here (None: it may)."""
    point, fstype = mount_of(directory)
    named = os.path.realpath(directory)  # the directory's name, for the message
    how = (
        "mount a small tmpfs for the state directory first "
        "(`mount -t tmpfs -o size=64m,mode=0700 tmpfs DIR`, the topology file in DIR)"
    )
    if fstype != "tmpfs":
        return (
            f"disk-full fills the file system of the node's files, and {named} is on {point} "
            f"({fstype}): relevo never fills a disk it does not own; {how}"
        )
    stat = os.statvfs(directory)
    size = stat.f_blocks * stat.f_frsize
    if size > FILL_MAX_BYTES:
        return (
            f"disk-full fills at most a {FILL_MAX_BYTES >> 20} MiB tmpfs; {point} has {size >> 20} MiB: {how}"
        )
    return None


def fill(directory: Path) -> Path:
    """Grow `directory`/FILL_NAME until the file system has no space left; returns the file. Bounded by
    FILL_MAX_BYTES (and the file system's size)."""
    path = directory / FILL_NAME
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    written = 0
    try:
        for size in (_CHUNK, _SMALL, 512, 1):
            while written <= FILL_MAX_BYTES + _CHUNK:
                try:
                    written += os.write(fd, b"\0" * size)
                except OSError as exc:
                    if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                        raise ProviderError(f"cannot fill {path}: {exc.strerror}") from None
                    break
    finally:
        os.close(fd)
    return path


def unfill(path: Path) -> None:
    if path.name == FILL_NAME:  # only what `fill` made
        path.unlink(missing_ok=True)


# -- CPU starvation -----------------------------------------------------------------------------------------
def current_group(cgroups: CpuCgroups, pid: int) -> Path | None:
    """The `cpu` cgroup `pid` is in now (a path under the hierarchy's root)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
            _, controllers, relative = line.split(":", 2)
            wanted = controllers == "" if cgroups.layout is Layout.V2 else "cpu" in controllers.split(",")
            if wanted:
                return cgroups.base / relative.lstrip("/")
    return None


def starve(cgroups: CpuCgroups, group: Path, pct: float, pids: list[int]) -> dict[str, object]:
    """Cut the node's processes to `pct` % of one core in `group`; what heal needs to undo it."""
    if not pids:
        raise ProviderError("the node is not running: nothing to starve")
    previous = cgroups.quota(group) if group.is_dir() else None
    origin = current_group(cgroups, pids[0])
    undo: dict[str, object] = {
        "cgroup": str(group),
        "previous": previous,
        "origin": str(origin) if origin is not None and origin != group else None,
    }
    try:
        cgroups.apply(group, pct / 100.0, pids)
    except CpuQuotaError as exc:
        raise ProviderError(str(exc)) from None
    return undo


def unstarve(cgroups: CpuCgroups, undo: dict[str, object]) -> None:
    """Undo `starve` from its record: the capacity quota back, or the processes back where they were."""
    group = Path(str(undo.get("cgroup")))
    if not group.is_relative_to(cgroups.base) or not group.name:
        return  # not a group of ours: never touched
    previous = undo.get("previous")
    if isinstance(previous, int | float):
        with contextlib.suppress(CpuQuotaError):
            cgroups.apply(group, float(previous), [])
        return
    origin = undo.get("origin")
    back = Path(str(origin)) if isinstance(origin, str) else cgroups.base
    if not back.is_relative_to(cgroups.base):
        back = cgroups.base
    with contextlib.suppress(OSError):
        cgroups.move(back, [int(pid) for pid in (group / "cgroup.procs").read_text().split()])
    cgroups.remove(group)

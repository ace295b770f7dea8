"""Where image and box builds work: the private cache they keep their results in, and build trees
removed without ever following into a file system still mounted inside (debootstrap mounts /proc)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from relevo.errors import RelevoError


def cache_dir(kind: str = "images") -> Path:
    """~/.cache/relevo/KIND (or under $XDG_CACHE_HOME), created private to this user."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    path = base / "relevo" / kind
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Trust no directory someone else owns: relevo often runs as root, and a tarball or a box planted
    # here would become every container's root filesystem or every VM's disk.
    if path.stat().st_uid != os.geteuid():
        raise RelevoError(f"{path} belongs to another user; refusing to use it as the {kind} cache")
    return path


def mounts_below(path: Path) -> list[Path]:
    """Mount points under `path` (debootstrap mounts /proc and /sys in the target while it works; an
    interrupted run can leave them), deepest first."""
    prefix = str(path.resolve()) + "/"
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mount_point = line.split()[4].replace("\\040", " ")
        if mount_point.startswith(prefix):
            found.append(Path(mount_point))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def unmount_below(path: Path, umount: str = "umount") -> None:
    """Lazily unmount every file system mounted under `path`, deepest first."""
    for mount_point in mounts_below(path):
        subprocess.run([umount, "--lazy", str(mount_point)], check=False, timeout=30, capture_output=True)


def remove_tree(path: Path) -> None:
    """Remove a build directory, never following into a file system still mounted inside it."""
    if not path.exists():
        return
    unmount_below(path)
    if mounts_below(path):
        raise RelevoError(f"{path} still has file systems mounted inside; unmount them and remove it by hand")
    shutil.rmtree(path)

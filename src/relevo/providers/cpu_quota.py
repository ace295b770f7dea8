"""A CPU quota for one node's processes, through the kernel's cgroups: what makes a local node slower than
the machine, so that losing a primary costs capacity the way it does on a real server.

Both cgroup layouts are supported, whichever holds the `cpu` controller:
- v1 (the `cpu` hierarchy mounted at /sys/fs/cgroup/cpu, as on these machines): `cpu.cfs_period_us` and
  `cpu.cfs_quota_us`;
- v2 (the unified hierarchy at /sys/fs/cgroup with `cpu` in `cgroup.controllers`): `cpu.max`.

Each node gets its own group, `relevo-<cluster>-<hash of its state directory>/<node>`, so two clusters
with the same name never share one. Writing there needs root (or a delegated subtree): without it the
quota is refused with a clear error, never silently dropped. Processes the node forks later (Apache's
children) inherit the group. Names reach paths only after `NAME_RE` validated them.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from relevo.errors import ProviderError

CGROUP_ROOT = Path("/sys/fs/cgroup")
PERIOD_US = 100_000  # the kernel's default CFS period (100 ms)
MIN_QUOTA_US = 1_000  # the kernel refuses less than 1 ms per period
_SAFE = re.compile(r"^[a-z][a-z0-9_-]{0,30}$")


class Layout(enum.StrEnum):
    V1 = "v1"
    V2 = "v2"


class CpuQuotaError(ProviderError):
    """The quota could not be put in place (no cpu controller, not root, a write refused)."""


@dataclass(frozen=True, slots=True)
class CpuCgroups:
    """Where this machine's `cpu` controller lives, and which layout it has."""

    layout: Layout
    base: Path  # the hierarchy's root: /sys/fs/cgroup/cpu (v1) or /sys/fs/cgroup (v2)

    @classmethod
    def detect(cls, root: Path = CGROUP_ROOT) -> CpuCgroups | None:
        """The `cpu` controller's hierarchy, or None when this machine offers none."""
        v1 = root / "cpu"
        if (v1 / "cpu.cfs_quota_us").exists():
            return cls(Layout.V1, v1)
        with contextlib.suppress(OSError):
            if "cpu" in (root / "cgroup.controllers").read_text().split():
                return cls(Layout.V2, root)
        return None

    def group(self, cluster: str, state_dir: Path, node: str) -> Path:
        for name in (cluster, node):
            if not _SAFE.match(name):
                raise CpuQuotaError(f"{name!r} is not a safe name for a cgroup")
        tag = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:10]
        return self.base / f"relevo-{cluster}-{tag}" / node

    def apply(self, group: Path, cpus: float, pids: Iterable[int]) -> None:
        """Create `group` with a quota of `cpus` CPUs (0.5: half of one core) and move `pids` into it."""
        quota_us = max(MIN_QUOTA_US, round(cpus * PERIOD_US))
        try:
            if self.layout is Layout.V2:
                # The parent must hand the cpu controller down to its children.
                group.parent.mkdir(exist_ok=True)
                _write(self.base / "cgroup.subtree_control", "+cpu")
                _write(group.parent / "cgroup.subtree_control", "+cpu")
                group.mkdir(exist_ok=True)
                _write(group / "cpu.max", f"{quota_us} {PERIOD_US}")
            else:
                group.mkdir(parents=True, exist_ok=True)
                _write(group / "cpu.cfs_period_us", str(PERIOD_US))
                _write(group / "cpu.cfs_quota_us", str(quota_us))
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    _write(group / "cgroup.procs", str(pid))
        except PermissionError:
            raise CpuQuotaError(
                f"a CPU quota needs root (or a delegated cgroup): cannot write under {group}"
            ) from None
        except OSError as exc:
            raise CpuQuotaError(f"cannot set a CPU quota in {group}: {exc.strerror or exc}") from None

    def move(self, group: Path, pids: Iterable[int]) -> None:
        """Move `pids` into `group` (an existing one), skipping those that have gone."""
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, FileNotFoundError):
                _write(group / "cgroup.procs", str(pid))

    def quota(self, group: Path) -> float | None:
        """The quota in CPUs now in force on `group` (None: unlimited or no such group)."""
        try:
            if self.layout is Layout.V2:
                quota, _, period = (group / "cpu.max").read_text().partition(" ")
                return None if quota == "max" else int(quota) / int(period)
            quota_us = int((group / "cpu.cfs_quota_us").read_text())
            period_us = int((group / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            return None
        return None if quota_us < 0 else quota_us / period_us

    def throttled(self, group: Path) -> int:
        """How many periods the group's processes were stopped for having used their quota."""
        with contextlib.suppress(OSError):
            for line in (group / "cpu.stat").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "nr_throttled":
                    return int(value)
        return 0

    def remove(self, group: Path) -> None:
        """Remove the node's group once its processes are gone (an empty group only; best effort)."""
        with contextlib.suppress(OSError):
            group.rmdir()
        with contextlib.suppress(OSError):
            group.parent.rmdir()  # succeeds only when it was the cluster's last node


def _write(path: Path, text: str) -> None:
    # cgroup files take one value per write(2); no truncation or temporary files (they are not files).
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)

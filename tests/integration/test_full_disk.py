"""A failover on a full disk (issue 17, item 3): the standby starts and serves, and relevo says what it
could not write. The state directory is on a small tmpfs this test mounts (root only) and fills."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from relevo import lifecycle
from relevo.errors import RelevoError
from relevo.topology import load_topology

from .conftest import make_topology_file, skip_without_daemons, wait_until
from .test_state_trust import kill_leftovers, relevo_cli

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root (CI runs as root)"),
]


@pytest.fixture
def small_disk(cluster_dir: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs (mode 0700) with a topology on it; unmounted after, whatever happened."""
    skip_without_daemons()
    disk = cluster_dir / "disk"
    disk.mkdir(mode=0o700)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(disk)], check=True)
    path = make_topology_file(disk)
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            (disk / "filler").unlink()
        with contextlib.suppress(RelevoError):
            lifecycle.down(load_topology(path))
        kill_leftovers(disk / ".relevo")
        if subprocess.run(["umount", str(disk)], check=False).returncode != 0:
            subprocess.run(["umount", "--lazy", str(disk)], check=False)  # a process still exiting


def fill(disk: Path) -> None:
    """Write until the file system refuses (bounded by its size)."""
    with contextlib.suppress(OSError), (disk / "filler").open("wb") as out:
        for _ in range(8 * 1024):  # 8 MiB at most: twice the disk
            out.write(b"\0" * 1024)
            out.flush()
    assert os.statvfs(disk).f_bavail == 0


def served_by(url: str) -> str | None:
    import urllib.request

    with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
        return response.headers.get("X-Served-By")
    return None


def test_a_failover_on_a_full_disk_starts_the_standby_and_says_what_it_could_not_write(small_disk):
    """The state directory's disk filled, then web1 killed: the controller starts web1bck, which serves;
    `status` says the disk is full and that web1bck used its reserve; a start by hand on the full disk
    (web2bck) works too and says so on stderr."""
    up = relevo_cli(small_disk, "up")
    assert up.returncode == 0, up.stderr
    topology = load_topology(small_disk)
    url = topology.balancer.frontend.url + "/"
    fill(small_disk.parent)
    assert relevo_cli(small_disk, "kill", "web1").returncode == 0
    wait_until(lambda: served_by(url) == "web1bck", "web1bck serves in web1's place", timeout_s=30)
    status = relevo_cli(small_disk, "status")
    assert status.returncode == 0, status.stderr
    assert "file system is full" in status.stdout
    assert "no reserved space: web1bck" in status.stdout
    by_hand = relevo_cli(small_disk, "start", "web2bck")
    assert by_hand.returncode == 0, by_hand.stderr
    assert "web2bck starts on the space reserved for it" in by_hand.stderr

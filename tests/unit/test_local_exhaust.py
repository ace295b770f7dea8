"""The local provider's exhaustion faults, pure parts: which file system holds a node's files (from
mountinfo), and when relevo refuses to fill one (the host's disk, a large tmpfs)."""

from __future__ import annotations

from pathlib import Path

from relevo.providers import local_exhaust
from relevo.providers.local_exhaust import disk_cannot, mount_of

MOUNTINFO = (
    "22 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
    "30 22 0:25 / /tmp/disk rw - tmpfs tmpfs rw,size=4096k\n"
    "31 22 0:26 / /tmp/disk\\040two rw - tmpfs tmpfs rw\n"
)


def test_the_longest_mount_point_above_a_path_holds_it(tmp_path):
    """A path under /tmp/disk is on that tmpfs; /tmp/diskette is not (a prefix is not a parent); the rest
    is on /; an escaped space in a mount point is read as a space."""
    info = tmp_path / "mountinfo"
    info.write_text(MOUNTINFO)
    assert mount_of(Path("/tmp/disk/.relevo/nodes/web1"), info) == ("/tmp/disk", "tmpfs")
    assert mount_of(Path("/tmp/diskette/x"), info) == ("/", "ext4")
    assert mount_of(Path("/tmp/disk two/x"), info) == ("/tmp/disk two", "tmpfs")


def test_the_hosts_disk_is_never_filled(tmp_path, monkeypatch):
    """disk-full on a node whose files are on the host's disk (ext4) is refused with the file system named
    and the command that gives relevo a disk of its own."""
    info = tmp_path / "mountinfo"
    info.write_text(MOUNTINFO)
    monkeypatch.setattr(local_exhaust, "MOUNTINFO", info)
    reason = disk_cannot(Path("/srv/cluster/.relevo/nodes/web1"))
    assert reason is not None
    assert "/ (ext4)" in reason and "mount -t tmpfs" in reason

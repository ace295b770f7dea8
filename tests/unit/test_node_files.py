"""A node's files are written once and rewritten only when their content or mode changes (issue 17
item 3): a standby's start on a full disk must not need to rewrite files it already has."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from relevo.providers.host import LocalHost
from relevo.services import NodeFile


def test_an_unchanged_file_is_left_as_it_is_and_a_changed_one_replaced(tmp_path: Path) -> None:
    """put_files with the same content and mode keeps the very file (same inode, never a new write); a
    new content or a new mode replaces it."""
    host = LocalHost()
    path = tmp_path / "node" / "httpd.conf"
    file = NodeFile(PurePosixPath(path), "Listen 127.0.0.1:8080\n", 0o600)
    host.put_files("web1bck", [file])
    first = path.stat()
    host.put_files("web1bck", [file])
    assert path.stat().st_ino == first.st_ino, "an unchanged file was written again"
    host.put_files("web1bck", [NodeFile(file.path, "Listen 127.0.0.1:8081\n", 0o600)])
    changed = path.stat()
    assert changed.st_ino != first.st_ino and path.read_text() == "Listen 127.0.0.1:8081\n"
    host.put_files("web1bck", [NodeFile(file.path, "Listen 127.0.0.1:8081\n", 0o644)])
    assert path.stat().st_ino != changed.st_ino and (path.stat().st_mode & 0o777) == 0o644

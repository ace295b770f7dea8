"""Directories, links and removals through LXD's file API (a fake daemon answering as LXD 5.0.2 does:
the sync envelope of push_file's recorded exchange, and LXD's 404 for a missing file)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from relevo.lxd.client import LXDClient
from relevo.lxd.errors import LXDNotFoundError
from relevo.lxd.transport import APIEndpoint

from .fake_lxd import FakeLXD, fixture

FILES = "/1.0/instances/relevo-rec1/files"
NOT_FOUND = {
    "request": {"method": "DELETE", "path": FILES},
    "response": {
        "status": 404,
        "body": {"type": "error", "error": "No such file or directory", "error_code": 404, "metadata": None},
    },
}


@pytest.fixture
def daemon() -> Iterator[tuple[LXDClient, FakeLXD]]:
    """A client of a fake daemon answering a directory push, a link push, a removal, then a 404."""
    deleted: dict[str, Any] = {**fixture("push_file")[0], "request": {"method": "DELETE", "path": FILES}}
    exchanges = [*fixture("push_file"), *fixture("push_file"), deleted, NOT_FOUND]
    with tempfile.TemporaryDirectory(prefix="lxd") as tmp:  # unix socket paths are short
        fake = FakeLXD(Path(tmp) / "s", exchanges)
        try:
            yield LXDClient(APIEndpoint(socket_path=Path(tmp) / "s")), fake
        finally:
            fake.close()
    assert not fake.mismatches, fake.mismatches


def test_directories_links_and_removals_are_file_api_requests(daemon: tuple[LXDClient, FakeLXD]) -> None:
    """A directory is a push of type `directory` with its mode, a link one of type `symlink` whose body is
    the target, a removal a DELETE of the path; a missing file's 404 is LXDNotFoundError."""
    client, fake = daemon
    client.make_directory("relevo-rec1", "/etc/relevo", mode=0o750)
    client.make_symlink(
        "relevo-rec1", "/etc/systemd/system/x.wants/a.service", "/lib/systemd/system/a.service"
    )
    client.delete_file("relevo-rec1", "/etc/systemd/system/x.wants/b.service")
    with pytest.raises(LXDNotFoundError, match="remove /gone in 'relevo-rec1'"):
        client.delete_file("relevo-rec1", "/gone")
    directory, link, removal, _ = fake.received
    assert (directory.headers["X-LXD-type"], directory.headers["X-LXD-mode"]) == ("directory", "0750")
    assert directory.query == {"path": "/etc/relevo"} and directory.body == b""
    assert link.headers["X-LXD-type"] == "symlink" and link.body == b"/lib/systemd/system/a.service"
    assert (removal.method, removal.query) == ("DELETE", {"path": "/etc/systemd/system/x.wants/b.service"})

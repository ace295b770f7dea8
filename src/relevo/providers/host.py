"""A provider's *host*: where a node's files go and its commands run. The services (HAProxy, Apache)
render and check through it, so they never know whether a node is this machine or a container."""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Protocol

from relevo import anchor
from relevo.commands import run
from relevo.files import ensure_dir, open_nofollow, read_or_empty, write_atomic
from relevo.services import NodeFile


class Host(Protocol):
    def put_files(
        self, node: str, files: Sequence[NodeFile], *, directories: Sequence[PurePosixPath] = ()
    ) -> None:
        """Make the directories, then write each file on the node (created or replaced, never followed
        if a link)."""

    def read_file(self, node: str, path: PurePosixPath) -> str:
        """The file's text on the node, empty when it does not exist."""

    def run(self, node: str, argv: list[str], *, what: str) -> str:
        """Run `argv` on the node (no shell); its output, or a ProviderError saying `what` failed."""


class LocalHost:
    """This machine: files written atomically (their directories in the state directory), argvs run
    as child processes with a timeout. Given the state directory, the services' paths are a daemon's
    (anchor.DAEMON_ROOT): written here through the descriptor relevo holds, and every argv run with the
    directory at that descriptor."""

    def __init__(self, state_dir: Path | None = None) -> None:
        self.state_dir = state_dir

    def _here(self, path: PurePosixPath) -> Path:
        return anchor.from_daemon(Path(path), self.state_dir) if self.state_dir else Path(path)

    def put_files(
        self, node: str, files: Sequence[NodeFile], *, directories: Sequence[PurePosixPath] = ()
    ) -> None:
        for directory in directories:
            ensure_dir(self._here(directory))
        for file in files:
            path = self._here(file.path)
            ensure_dir(path.parent)
            if not _same(path, file):  # written once, then only when it changes (a full disk, reserve.py)
                write_atomic(path, file.content, mode=file.mode)

    def read_file(self, node: str, path: PurePosixPath) -> str:
        return read_or_empty(self._here(path))

    def run(self, node: str, argv: list[str], *, what: str) -> str:
        return run(argv, what=what, state_dir=self.state_dir).stdout


def _same(path: Path, file: NodeFile) -> bool:
    """`path` already holds exactly this file: its content and its mode (never through a link)."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISREG(info.st_mode) or stat.S_IMODE(info.st_mode) != file.mode:
        return False
    try:
        return open_nofollow(path) == file.content.encode()
    except OSError:
        return False


class Service(Protocol):
    @property
    def config(self) -> PurePosixPath: ...

    @property
    def directories(self) -> list[PurePosixPath]: ...

    def check_argv(self) -> list[str]: ...


def install(host: Host, node: str, service: Service, files: Sequence[NodeFile], *, what: str) -> bool:
    """Write a service's files on its node through `host`; when its config differs from what was there,
    check it with the service's own argv (a rejected config raises, naming `what`). True when changed."""
    before = host.read_file(node, service.config)
    host.put_files(node, files, directories=service.directories)
    if not any(f.path == service.config and f.content != before for f in files):
        return False
    host.run(node, service.check_argv(), what=what)
    return True

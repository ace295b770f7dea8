"""The LXD provider's host: a node's files pushed into its container through the API, argvs run with
`exec`, and what relevo created in LXD recorded in the state directory before it is created (so
`relevo destroy` removes exactly that, and nothing else)."""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath

from relevo.errors import ProviderError
from relevo.files import ensure_dir, open_nofollow, write_atomic
from relevo.lxd.client import LXDClient
from relevo.lxd.errors import LXDError, LXDNotFoundError
from relevo.paths import StatePaths
from relevo.services import NodeFile

KINDS = ("instances", "networks", "profiles")
# A node name → the client of the daemon that holds its container, and the container's name.
Resolver = Callable[[str], tuple[LXDClient, str]]


class LXDHost:
    """Files and commands inside the containers, each reached through the daemon that holds it."""

    def __init__(self, resolve: Resolver) -> None:
        self.resolve = resolve

    def put_files(
        self, node: str, files: Sequence[NodeFile], *, directories: Sequence[PurePosixPath] = ()
    ) -> None:
        client, name = self.resolve(node)
        parents = sorted({str(d) for d in directories} | {str(f.path.parent) for f in files})
        if directories:  # only a running guest can make them; a stopped one has them since `create`
            self.run(node, ["mkdir", "-p", *parents], what=f"make directories in {node}")
        for file in files:
            client.push_file(name, str(file.path), file.content.encode(), mode=file.mode)

    def make_directories(self, node: str, directories: Sequence[PurePosixPath]) -> None:
        """Each directory and its parents, through LXD's file API: a stopped container's too (no `exec`,
        which needs it running). Parents first; those that exist are left as they are."""
        client, name = self.resolve(node)
        wanted = {str(d) for directory in directories for d in (directory, *directory.parents)} - {"/"}
        for path in sorted(wanted, key=lambda p: (p.count("/"), p)):
            client.make_directory(name, path)

    def link(self, node: str, path: PurePosixPath, target: PurePosixPath) -> None:
        """`ln -sf target path` through LXD's file API (a stopped container's too)."""
        client, name = self.resolve(node)
        try:
            client.make_symlink(name, str(path), str(target))
        except LXDNotFoundError:
            raise
        except LXDError:
            # Something else is at `path` (LXD replaces only a link to the same target): removed first.
            self.remove(node, path)
            client.make_symlink(name, str(path), str(target))

    def remove(self, node: str, path: PurePosixPath) -> None:
        """`rm -f path` through LXD's file API: nothing when there is no such file."""
        client, name = self.resolve(node)
        with contextlib.suppress(LXDNotFoundError):
            client.delete_file(name, str(path))

    def read_file(self, node: str, path: PurePosixPath) -> str:
        client, name = self.resolve(node)
        try:
            data = client.read_file(name, str(path))
        except LXDNotFoundError:
            return ""
        return data.decode(errors="replace")

    def run(self, node: str, argv: list[str], *, what: str) -> str:
        client, name = self.resolve(node)
        result = client.exec(name, argv, timeout_s=60.0)
        if result.returncode != 0:
            raise ProviderError(
                f"{what} (exit status {result.returncode})",
                command=argv,
                output=result.stdout + result.stderr,
            )
        return result.stdout


class Created:
    """`lxd/created.json` in the state directory: every instance, network and profile relevo made for
    this cluster, each written here before LXD is asked to make it and removed once LXD removed it."""

    # Containers are created side by side (`relevo up`): each read-modify-write of the file is one step.
    _lock = threading.Lock()

    def __init__(self, paths: StatePaths) -> None:
        self.paths = paths

    @property
    def path(self) -> Path:
        # Through the claimed state directory's descriptor (see anchor), never by its name.
        return self.paths.held().root / "lxd" / "created.json"

    def load(self) -> dict[str, list[str]]:
        try:
            data = json.loads(open_nofollow(self.path, limit=1 << 20))
        except (OSError, ValueError):
            return {kind: [] for kind in KINDS}
        if not isinstance(data, dict):
            return {kind: [] for kind in KINDS}
        return {kind: [str(x) for x in data.get(kind, []) if isinstance(x, str)] for kind in KINDS}

    def add(self, kind: str, name: str) -> None:
        with self._lock:
            data = self.load()
            if name not in data[kind]:
                data[kind].append(name)
                self._save(data)

    def remove(self, kind: str, name: str) -> None:
        with self._lock:
            data = self.load()
            if name in data[kind]:
                data[kind].remove(name)
                self._save(data)

    def _save(self, data: dict[str, list[str]]) -> None:
        ensure_dir(self.path.parent)
        write_atomic(self.path, json.dumps(data, indent=1))


def interfaces_file(address: str, prefix: int, interface: str = "eth0") -> str:
    """A static ifupdown stanza: minbase has no udev, so nothing else would configure the NIC."""
    return f"auto {interface}\niface {interface} inet static\n    address {address}/{prefix}\n"


def apache_unit(node: str, foreground: list[str], graceful: list[str]) -> str:
    """relevo's own unit for a web node's Apache (the image's apache2.service reads Debian's config)."""
    return f"""[Unit]
Description=Apache of relevo node {node}
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
RuntimeDirectory=relevo-apache
ExecStart={" ".join(foreground)}
ExecReload={" ".join(graceful)}
KillMode=mixed

[Install]
WantedBy=multi-user.target
"""


# HAProxy reads its Runtime API socket's directory and the server states from places that must exist.
HAPROXY_DROPIN = """[Service]
ExecStartPre=/bin/mkdir -p /run/haproxy /var/lib/haproxy
"""


def host_uid() -> str:
    return str(os.geteuid())

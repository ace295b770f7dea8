"""Settings shared by every test tier."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

# Property tests pin behaviour, not speed (speed is measured in benchmarks/): on the shared 2-core
# machines one example can take ten times its usual time (test_jtl's round trip: 259 ms against
# Hypothesis's default 200 ms deadline, a false failure).
settings.register_profile("relevo", deadline=None)
settings.load_profile("relevo")


@contextlib.contextmanager
def short_dir(*, tmpfs_size: str | None = None) -> Iterator[Path]:
    """A new directory right under /tmp, short by construction (/tmp/rlv-XXXXXXXX): a unix socket below
    it (a cluster's Runtime API socket, .relevo/balancers/NAME/admin.sock) fits in AF_UNIX's 108 bytes
    whatever pytest's own temporary paths are (pytest-xdist's workers' are longer). On a tmpfs of
    `tmpfs_size` (e.g. "32m": what disk-full may fill) when asked; unmounted and removed at the end."""
    workdir = Path(tempfile.mkdtemp(prefix="rlv-", dir="/tmp"))
    if tmpfs_size:
        options = f"size={tmpfs_size},mode=0700"
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(workdir)], check=True)
    try:
        yield workdir
    finally:
        if tmpfs_size and subprocess.run(["umount", str(workdir)], check=False).returncode != 0:
            subprocess.run(["umount", "--lazy", str(workdir)], check=False)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short_dir() for one test: where a test puts a state directory whose sockets must fit."""
    with short_dir() as workdir:
        yield workdir

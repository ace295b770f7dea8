"""The `lxd` tier: a real LXD daemon (started here when none runs, stopped afterwards by PID), the base
image (built once, then cached between runs), and a check that every test leaves LXD as it found it.

Several test sessions may run at once on one machine (CI, or engineers side by side): the whole tier
holds one lock, so only one session at a time creates and removes things in the daemon, and a session
never stops a daemon another one is using.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from relevo.errors import ProviderError
from relevo.lxd.build import BuiltImage, build_image
from relevo.lxd.client import LXDClient
from relevo.lxd.errors import LXDUnreachableError
from relevo.lxd.transport import APIEndpoint

REPO = Path(__file__).resolve().parents[2]
LOCK_WAIT_S = 600.0
POOL = "default"


def _private_dir() -> Path:
    path = Path("/run/relevo") if os.geteuid() == 0 else Path.home() / ".cache" / "relevo"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


@pytest.fixture(scope="session")
def tier_lock() -> Iterator[None]:
    """Only one test session at a time uses the daemon (see the module docstring)."""
    with (_private_dir() / "lxd-tier.lock").open("a") as handle:
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"another test session held the LXD tier's lock for {LOCK_WAIT_S:.0f} s")
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _answers() -> bool:
    try:
        LXDClient(APIEndpoint.local(timeout_s=5)).server()
    except LXDUnreachableError:
        return False
    return True


def _adopt_orphaned_daemon(pidfile: Path) -> None:
    """A session that was killed before its teardown left its daemon running and its pid file behind
    (named after the session's PID): this session takes that record over, so the daemon a test session
    started is still stopped by one."""
    for record in pidfile.parent.glob("lxd-daemon.*.pid"):
        owner = record.name.split(".")[1]
        if not owner.isdigit() or record == pidfile:
            continue
        try:
            os.kill(int(owner), 0)
        except ProcessLookupError:
            record.replace(pidfile)
            return
        except PermissionError:
            continue


@pytest.fixture(scope="session")
def lxd(tier_lock: None) -> Iterator[LXDClient]:
    """A client of the local LXD daemon: the one already running, else one started by scripts/lxd-daemon
    for this session and stopped (by its PID) when the session ends."""
    pidfile = _private_dir() / f"lxd-daemon.{os.getpid()}.pid"
    _adopt_orphaned_daemon(pidfile)
    if not _answers() and os.geteuid() != 0:
        pytest.fail("no LXD daemon answers and starting one needs root: run `sudo scripts/lxd-daemon start`")
    # Also makes the storage pool when it is missing; writes the pid file only if it starts the daemon.
    started = subprocess.run(
        [str(REPO / "scripts/lxd-daemon"), "start", str(pidfile)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    try:
        if started.returncode != 0:
            pytest.fail(f"scripts/lxd-daemon start failed:\n{started.stderr}")
        yield LXDClient(APIEndpoint.local())
    finally:
        if pidfile.exists():
            subprocess.run([str(REPO / "scripts/lxd-daemon"), "stop", str(pidfile)], timeout=60, check=False)


@pytest.fixture(scope="session")
def base_image(tier_lock: None) -> BuiltImage:
    """The base image tarball: built with debootstrap the first time on a machine (about a minute),
    then taken from ~/.cache/relevo/images."""
    try:
        return build_image()
    except ProviderError:
        # debootstrap fetches some 150 packages from the Debian mirror: one network hiccup should not
        # fail the tier. A second failure is real and is reported.
        return build_image()


def lxd_inventory(client: LXDClient) -> dict[str, Any]:
    """What a test could leave behind: instances, managed networks, profiles, images and aliases,
    trusted certificates and the server's configuration."""
    images = client.images()
    return {
        "instances": sorted(i.name for i in client.instances()),
        "networks": sorted(n["name"] for n in client.networks() if n.get("managed")),
        "profiles": sorted(p["name"] for p in client.profiles()),
        "images": sorted(i["fingerprint"] for i in images),
        "aliases": sorted(a["name"] for i in images for a in i.get("aliases") or []),
        "certificates": sorted(client.certificates()),
        "config": client.server().get("config", {}),
    }


@pytest.fixture
def unchanged_lxd(lxd: LXDClient) -> Iterator[LXDClient]:
    """The client, with a check that the test left LXD exactly as it was before."""
    before = lxd_inventory(lxd)
    yield lxd
    assert lxd_inventory(lxd) == before

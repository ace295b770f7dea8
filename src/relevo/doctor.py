"""What this machine has and lacks for relevo, each missing thing with the exact command that fixes it.

Checks only look (they start, create or change nothing): the programs the local provider drives, the
tools `relevo image build` needs, and for LXD the daemon, this user's access to it, a storage pool and
the base image.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING

from relevo.commands import SEARCH_PATH
from relevo.lxd.build import DEFAULT_ALIAS
from relevo.lxd.client import LXDClient
from relevo.lxd.errors import LXDError, LXDUnreachableError

if TYPE_CHECKING:
    from relevo.model import Topology

SUDO = "" if os.geteuid() == 0 else "sudo "


@dataclass(frozen=True, slots=True, kw_only=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""  # the command that makes it ok
    group: str = "local"  # local, image, lxd: which use needs it


def _version(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0] if lines else ""


def _program(name: str, names: tuple[str, ...], version: list[str], package: str, group: str) -> Check:
    for candidate in names:
        found = shutil.which(candidate, path=SEARCH_PATH)
        if found:
            text = _version([found, *version]) if version else ""
            return Check(name=name, ok=True, detail=f"{found} {text}".strip(), group=group)
    return Check(
        name=name,
        ok=False,
        detail=f"{' or '.join(names)} not found",
        fix=f"{SUDO}apt-get install -y {package}",
        group=group,
    )


def local_checks() -> list[Check]:
    return [
        _program("HAProxy", ("haproxy",), ["-v"], "haproxy", "local"),
        _program("Apache", ("apache2", "httpd"), ["-v"], "apache2", "local"),
        _program("debootstrap", ("debootstrap",), ["--version"], "debootstrap", "image"),
        _program("zstd", ("zstd",), ["--version"], "zstd", "image"),
    ]


def lxd_checks(client: LXDClient | None = None, *, image: str = DEFAULT_ALIAS) -> list[Check]:
    """The daemon (reachable, trusted), a storage pool, the base image under its alias (the topology's
    `providers.lxd.image`, else relevo's)."""
    daemon = shutil.which("lxd", path=SEARCH_PATH) or shutil.which("incus", path=SEARCH_PATH)
    if daemon is None:
        installed = Check(
            name="LXD installed",
            ok=False,
            detail="neither lxd nor incus found",
            fix=f"{SUDO}apt-get install -y lxd",
            group="lxd",
        )
    else:
        installed = Check(name="LXD installed", ok=True, detail=daemon, group="lxd")
    try:
        client = client or LXDClient()
        server = client.server()
    except LXDUnreachableError as exc:
        permission = "permission denied" in exc.lxd_error
        fix = (
            "sudo usermod -aG lxd $USER  (then log in again)"
            if permission
            else "sudo scripts/lxd-daemon start"
        )
        return [installed, Check(name="LXD daemon", ok=False, detail=exc.lxd_error, fix=fix, group="lxd")]
    except LXDError as exc:
        return [installed, Check(name="LXD daemon", ok=False, detail=str(exc), group="lxd")]
    env = server.get("environment", {})
    where = client.endpoint.name
    version = f"{env.get('server', 'lxd')} {env.get('server_version', '?')} at {where}"
    if server.get("auth") != "trusted":
        return [
            installed,
            Check(
                name="LXD daemon",
                ok=False,
                detail=f"{version}: this client is not trusted",
                fix="on the server: lxc config trust add CLIENT.crt",
                group="lxd",
            ),
        ]
    checks = [installed, Check(name="LXD daemon", ok=True, detail=version, group="lxd")]
    pools = client.storage_pools()
    checks.append(
        Check(
            name="storage pool",
            ok=bool(pools),
            detail=", ".join(pools) or "none",
            # btrfs (a loop file LXD makes): containers are snapshots, made and deleted in a moment.
            fix=f"{SUDO}lxc storage create default btrfs  (or dir, without btrfs-progs)",
            group="lxd",
        )
    )
    target = client.alias_target(image)
    build = "relevo image build" + ("" if image == DEFAULT_ALIAS else f" --alias {image}")
    checks.append(
        Check(
            name="base image",
            ok=target is not None,
            detail=f"{image} → {target[:12]}" if target else f"no image alias {image}",
            fix=f"{SUDO}{build}",
            group="lxd",
        )
    )
    return checks


def run_checks(*, lxd: bool = True, image: str = DEFAULT_ALIAS) -> list[Check]:
    return local_checks() + (lxd_checks(image=image) if lxd else [])


# The groups of machine checks a provider's nodes need, besides `local` (and the topology's own checks).
PROVIDER_GROUPS = {"lxd": frozenset({"image", "lxd"})}


def machine_checks(topology: Topology | None = None) -> list[Check]:
    """Every machine check; the base image looked for under the alias the topology's LXD nodes use."""
    if topology is None:
        return run_checks()
    return run_checks(image=str(topology.provider_options("lxd").get("image", DEFAULT_ALIAS)))


def counted_groups(topology: Topology | None, *, everything: bool | None = None) -> set[str]:
    """The groups whose failures make `doctor` exit 1: the local checks and the topology's always; those
    its providers need (the image and LXD ones for LXD nodes); all of them with `everything`, none of the
    providers' with `everything=False`."""
    groups = {"local", "topology"}
    if everything:
        return groups.union(*PROVIDER_GROUPS.values())
    if everything is None and topology is not None:
        for provider in {topology.balancer.provider, *(n.provider for n in topology.nodes)}:
            groups |= PROVIDER_GROUPS.get(provider, frozenset())
    return groups

"""The base image, built offline from the internet: debootstrap from a Debian mirror, packed as an LXD
unified image tarball (metadata.yaml, templates/, rootfs/) and cached, keyed by its recipe.

One image serves every role (HAProxy and Apache are both installed; the provider disables what a node
does not run). What MEASURED.md found shapes it: minbase has no udev, so systemd-networkd never
configures the container's NIC and blocks network-online.target; it is masked and ifupdown is installed
instead (the provider pushes a static interface file before the first start). /etc/hostname and
/etc/hosts come from LXD templates; resolv.conf is empty (no uplink, no DNS).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from relevo.build_dirs import cache_dir, remove_tree
from relevo.commands import run_streaming, tool
from relevo.errors import RelevoError
from relevo.lxd.errors import LXDNotFoundError
from relevo.progress import Progress
from relevo.safe_open import open_binary

if TYPE_CHECKING:
    from relevo.lxd.client import LXDClient

DEFAULT_ALIAS = "relevo/bookworm"
# Bump when the steps below change in a way the recipe's fields do not show: it renames the cache key.
RECIPE_VERSION = 1
DEBOOTSTRAP_TIMEOUT_S = 15 * 60.0
PACK_TIMEOUT_S = 5 * 60.0

LXD_ARCHITECTURES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}
DEBIAN_ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64"}

HOSTNAME_TEMPLATE = "{{ container.name }}\n"
HOSTS_TEMPLATE = """127.0.0.1\tlocalhost
127.0.1.1\t{{ container.name }}
::1\tlocalhost ip6-localhost ip6-loopback
ff02::1\tip6-allnodes
ff02::2\tip6-allrouters
"""
INTERFACES = """# The provider writes one file per interface into interfaces.d before the first start.
auto lo
iface lo inet loopback

source /etc/network/interfaces.d/*
"""
# Without udev these wait forever for a link they never configure; ifupdown does the job instead.
MASKED_UNITS = (
    "systemd-networkd.service",
    "systemd-networkd.socket",
    "systemd-networkd-wait-online.service",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageRecipe:
    """Everything that decides what the image holds; its hash names the cached tarball."""

    suite: str = "bookworm"
    mirror: str = "http://deb.debian.org/debian"
    variant: str = "minbase"
    packages: tuple[str, ...] = ("systemd-sysv", "apache2", "haproxy", "ifupdown", "keepalived")
    architecture: str = field(default_factory=lambda: LXD_ARCHITECTURES.get(platform.machine(), "x86_64"))

    def key(self) -> str:
        text = json.dumps({"recipe_version": RECIPE_VERSION, **asdict(self)}, sort_keys=True)
        text += self.metadata_yaml(0) + HOSTNAME_TEMPLATE + HOSTS_TEMPLATE + INTERFACES
        text += ",".join(MASKED_UNITS)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def file_name(self) -> str:
        return f"debian-{self.suite}-{self.architecture}-{self.key()}.tar.zst"

    def metadata_yaml(self, created: int) -> str:
        """LXD's image metadata: JSON is valid YAML, and needs no quoting rules."""
        templates = {
            "/etc/hostname": {"when": ["create", "copy", "rename"], "template": "hostname.tpl"},
            "/etc/hosts": {"when": ["create", "copy", "rename"], "template": "hosts.tpl"},
        }
        return json.dumps(
            {
                "architecture": self.architecture,
                "creation_date": created,
                "properties": {
                    "os": "debian",
                    "release": self.suite,
                    "architecture": self.architecture,
                    "variant": "relevo",
                    "description": f"Debian {self.suite} {self.variant}, {', '.join(self.packages)} (relevo)",
                },
                "templates": templates,
            },
            indent=2,
        )


@dataclass(frozen=True, slots=True)
class BuiltImage:
    path: Path
    cached: bool
    seconds: float
    size_bytes: int


def build_image(
    recipe: ImageRecipe | None = None,
    *,
    progress: Progress = lambda _line: None,
    cache: Path | None = None,
    rebuild: bool = False,
) -> BuiltImage:
    """The image tarball for `recipe`: the cached one when it exists (unless `rebuild`), else a new one
    built with debootstrap. A failed or interrupted build leaves nothing behind but what was cached."""
    recipe = recipe or ImageRecipe()
    started = time.monotonic()
    cache = cache or cache_dir()
    target = cache / recipe.file_name
    if target.is_file() and not rebuild:
        progress(f"cached image {target}")
        return BuiltImage(target, True, time.monotonic() - started, target.stat().st_size)
    debootstrap = tool("debootstrap", "debootstrap")
    tar = tool("tar", "tar")
    tool("zstd", "zstd")
    if os.geteuid() != 0:
        raise RelevoError("building the image needs root (debootstrap makes device nodes and chroots)")
    workdir = Path(tempfile.mkdtemp(prefix=".build-", dir=cache))
    try:
        rootfs = workdir / "rootfs"
        argv = [
            debootstrap,
            f"--variant={recipe.variant}",
            f"--include={','.join(recipe.packages)}",
            f"--arch={DEBIAN_ARCHITECTURES.get(recipe.architecture, recipe.architecture)}",
            recipe.suite,
            str(rootfs),
            recipe.mirror,
        ]
        progress(f"debootstrap {recipe.suite} from {recipe.mirror} (a minute or two)")
        run_streaming(argv, progress, DEBOOTSTRAP_TIMEOUT_S)
        progress("configuring the root filesystem")
        _customize(rootfs)
        (workdir / "metadata.yaml").write_text(recipe.metadata_yaml(int(time.time())))
        templates = workdir / "templates"
        templates.mkdir()
        (templates / "hostname.tpl").write_text(HOSTNAME_TEMPLATE)
        (templates / "hosts.tpl").write_text(HOSTS_TEMPLATE)
        progress(f"packing {target.name}")
        partial = workdir / "image.tar.zst"
        pack = [tar, "--numeric-owner", "--zstd", "-C", str(workdir), "-cf", str(partial)]
        run_streaming([*pack, "metadata.yaml", "templates", "rootfs"], progress, PACK_TIMEOUT_S)
        partial.replace(target)
    finally:
        remove_tree(workdir)
    size = target.stat().st_size
    progress(f"built {target} ({size / 1e6:.0f} MB)")
    return BuiltImage(target, False, time.monotonic() - started, size)


def _customize(rootfs: Path) -> None:
    etc = rootfs / "etc"
    (etc / "resolv.conf").unlink(missing_ok=True)
    (etc / "resolv.conf").write_text("")
    (etc / "hostname").write_text("relevo\n")
    (etc / "machine-id").write_text("")  # empty: systemd makes one per container on first boot
    (rootfs / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    (etc / "network").mkdir(exist_ok=True)
    (etc / "network/interfaces.d").mkdir(exist_ok=True)
    (etc / "network/interfaces").write_text(INTERFACES)
    units = etc / "systemd/system"
    units.mkdir(parents=True, exist_ok=True)
    for unit in MASKED_UNITS:
        (units / unit).unlink(missing_ok=True)
        (units / unit).symlink_to("/dev/null")
    for leftovers in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for path in (rootfs / leftovers).glob("*"):
            if path.is_file() and path.name != "lock":
                path.unlink()


@dataclass(frozen=True, slots=True)
class ImportedImage:
    fingerprint: str
    alias: str
    uploaded: bool  # False when LXD already had this exact tarball
    seconds: float


def file_fingerprint(path: Path) -> str:
    """LXD's fingerprint of a unified image tarball: the SHA-256 of the file."""
    digest = hashlib.sha256()
    with open_binary(path) as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def import_image(
    client: LXDClient, tarball: Path, alias: str, *, progress: Progress = lambda _l: None
) -> ImportedImage:
    """Make `alias` name this tarball's image in LXD: uploaded unless LXD already has it."""

    started = time.monotonic()
    fingerprint = file_fingerprint(tarball)
    try:
        client.image(fingerprint)
        uploaded = False
        progress(f"LXD already has image {fingerprint[:12]}")
    except LXDNotFoundError:
        progress(f"importing {tarball.name} into LXD")
        imported = client.import_image(tarball)
        if imported != fingerprint:
            raise RelevoError(f"LXD named the image {imported[:12]}, expected {fingerprint[:12]}") from None
        uploaded = True
    client.set_alias(alias, fingerprint, description="relevo base image")
    progress(f"alias {alias} → {fingerprint[:12]}")
    return ImportedImage(fingerprint, alias, uploaded, time.monotonic() - started)

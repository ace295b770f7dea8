"""The Vagrant box for vagrant-libvirt, built offline from a Debian mirror and cached, keyed by its recipe.

debootstrap (minbase) writes Debian into an ext4 file system on a loop device, with a kernel, extlinux
as the bootloader, sshd, sudo, the `vagrant` user with Vagrant's insecure public key, python3, LXD
with what it needs (dnsmasq-base, iptables) and keepalived (a pair's balancer VMs: Debian's 2.2.7, left
disabled until a pair's provisioning enables it), so guests need no apt-get, and the container image the VMs
run (`relevo image build`, built at the same time) in BOX_IMAGE_DIR, so no VM needs it uploaded. The disk
becomes box.img (qcow2) and is packed with metadata.json and a Vagrantfile as vagrant-libvirt expects;
the box and the image are both cached.

Without udev a loop device over a partitioned file shows no partition nodes, so the partition is never
looked for: the loop device maps the partition's byte range of the disk file directly (--offset).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from relevo import commands
from relevo.build_dirs import cache_dir, remove_tree, unmount_below
from relevo.commands import run_streaming, tool
from relevo.errors import MissingToolError, RelevoError
from relevo.progress import Progress
from relevo.safe_open import open_binary
from relevo.vagrant import box_files as files

DEFAULT_BOX_NAME = "relevo/bookworm64"
# Bump when the steps below change in a way the recipe's fields do not show: it renames the cache key.
BOX_RECIPE_VERSION = 2
DEBOOTSTRAP_TIMEOUT_S = 20 * 60.0
STEP_TIMEOUT_S = 10 * 60.0
PARTITION_OFFSET = 1 << 20  # the first partition starts at 1 MiB, as fdisk would put it
SECTOR = 512
INSECURE_KEY_PATHS = (
    "/usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub",
    "/opt/vagrant/embedded/gems/gems/vagrant-*/keys/vagrant.pub",
)
BOX_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}(/[a-z0-9][a-z0-9._-]{0,62})?$")
BOX_PACKAGES = (
    "systemd-sysv", "udev", "linux-image-amd64", "extlinux", "syslinux-common", "openssh-server",
    "sudo", "python3", "iproute2", "lxd", "dnsmasq-base", "iptables", "zstd", "keepalived",
)  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class BoxRecipe:
    """Everything that decides what the box holds; its hash names the cached .box file."""

    suite: str = "bookworm"
    mirror: str = "http://deb.debian.org/debian"
    packages: tuple[str, ...] = BOX_PACKAGES
    disk_gib: int = 16
    insecure_key: str = field(default="", compare=True)
    # The container image's tarball the box carries in BOX_IMAGE_DIR, by its file name (which holds its
    # own recipe's key); empty: none.
    image: str = ""

    def key(self) -> str:
        text = json.dumps({"recipe_version": BOX_RECIPE_VERSION, **asdict(self)}, sort_keys=True)
        for name in sorted(vars(files)):
            value = getattr(files, name)
            if name.isupper() and isinstance(value, str | tuple):
                text += f"{name}={value!r}\n"
        text += files.extlinux_conf("K", "I", "U") + files.fstab("U") + files.hosts("H")
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def file_name(self) -> str:
        return f"relevo-{self.suite}-amd64-{self.key()}.box"


@dataclass(frozen=True, slots=True)
class BuiltBox:
    path: Path
    cached: bool
    seconds: float
    size_bytes: int
    key: str


class BoxNameError(RelevoError):
    """A box name that Vagrant, a path or a volume name could misread (exit status 2)."""

    exit_status = 2


def validate_box_name(name: str) -> str:
    if not BOX_NAME_RE.match(name):
        raise BoxNameError(
            f"box name {name!r} is not valid: expected lowercase letters, digits, '.', '_' or '-', "
            "optionally as ORG/NAME (e.g. relevo/bookworm64)",
        )
    return name


def find_insecure_key() -> str:
    """Vagrant's well-known insecure public key, from the installed Vagrant (the box must hold the
    key this Vagrant logs in with the first time)."""
    for pattern in INSECURE_KEY_PATHS:
        for found in sorted(Path("/").glob(pattern.lstrip("/"))):
            text = found.read_text().strip()
            if text.startswith("ssh-"):
                return text + "\n"
    raise MissingToolError("Vagrant's insecure key (keys/vagrant.pub) was not found: install vagrant")


def boxes_cache_dir() -> Path:
    return cache_dir("boxes")


def run(argv: list[str], *, timeout_s: float = STEP_TIMEOUT_S) -> str:
    """One step of the build (`commands.run`, with the build's step timeout): its stdout."""
    return commands.run(argv, timeout_s=timeout_s).stdout


def mbr_partition_table(disk_bytes: int) -> bytes:
    """An MBR with one bootable Linux partition from PARTITION_OFFSET to the end of the disk (the 64
    bytes of entries and the 0x55AA signature that follow the 446 bytes of boot code)."""
    first = PARTITION_OFFSET // SECTOR
    count = disk_bytes // SECTOR - first
    # CHS fields are unused by anything that boots this disk: 0xFEFFFF means "use LBA".
    entry = bytes([0x80, 0xFE, 0xFF, 0xFF, 0x83, 0xFE, 0xFF, 0xFF])
    entry += first.to_bytes(4, "little") + count.to_bytes(4, "little")
    return entry + bytes(48) + b"\x55\xaa"


def mbr_sector(boot_code: bytes, disk_bytes: int) -> bytes:
    """The disk's first sector: syslinux's 440 bytes of boot code, 6 bytes of disk signature (zero),
    then the partition table."""
    if len(boot_code) > 440:
        raise RelevoError(f"the MBR boot code is {len(boot_code)} bytes; at most 440 fit before the table")
    return boot_code.ljust(440, b"\0") + bytes(6) + mbr_partition_table(disk_bytes)


def debootstrap_argv(debootstrap: str, recipe: BoxRecipe, root: Path) -> list[str]:
    return [
        debootstrap,
        "--variant=minbase",
        f"--include={','.join(recipe.packages)}",
        "--arch=amd64",
        recipe.suite,
        str(root),
        recipe.mirror,
    ]


def losetup_argv(losetup: str, disk: Path, disk_bytes: int) -> list[str]:
    size = str(disk_bytes - PARTITION_OFFSET)
    return [losetup, "--find", "--show", "--offset", str(PARTITION_OFFSET), "--sizelimit", size, str(disk)]


def required_tools() -> dict[str, str]:
    """The programs a build runs, by name; a clear error names the first one missing and its package."""
    tools = {
        name: tool(name, package)
        for name, package in (
            ("debootstrap", "debootstrap"), ("qemu-img", "qemu-utils"), ("losetup", "mount"),
            ("mkfs.ext4", "e2fsprogs"), ("mount", "mount"), ("umount", "mount"), ("chroot", "coreutils"),
            ("tar", "tar"),
        )
    }  # fmt: skip
    if os.geteuid() != 0:
        raise RelevoError("building the box needs root (loop devices, mount, debootstrap, chroot)")
    return tools


def build_box(
    recipe: BoxRecipe | None = None,
    *,
    progress: Progress = lambda _line: None,
    cache: Path | None = None,
    rebuild: bool = False,
    image: Callable[[], Path] | None = None,
) -> BuiltBox:
    """The .box for `recipe`: the cached one unless `rebuild`, else one built now; `image` gives the
    tarball the recipe names once the guest is in place (it may wait for the image's build). A failed or
    interrupted build leaves nothing but what was cached (no mount, no loop device, no partial file)."""
    recipe = recipe or BoxRecipe(insecure_key=find_insecure_key())
    started = time.monotonic()
    cache = cache or boxes_cache_dir()
    target = cache / recipe.file_name()
    if target.is_file() and not rebuild:
        progress(f"cached box {target}")
        return BuiltBox(target, True, time.monotonic() - started, target.stat().st_size, recipe.key())
    if recipe.image and image is None:
        raise RelevoError(f"the box carries the image {recipe.image}: give build_box its tarball")
    tools = required_tools()
    disk_bytes = recipe.disk_gib << 30
    workdir = Path(tempfile.mkdtemp(prefix=".build-", dir=cache))
    try:
        disk = workdir / "disk.raw"
        with disk.open("wb") as handle:
            handle.truncate(disk_bytes)  # sparse: only what debootstrap writes takes space
        mbr = _fill_disk(recipe, tools, disk, disk_bytes, workdir / "root", progress, image)
        with disk.open("r+b") as handle:
            handle.write(mbr_sector(mbr, disk_bytes))
        progress("converting the disk to qcow2")
        # Compressed: a third of the size to pack, add and upload into libvirt's pool.
        run([tools["qemu-img"], "convert", "-c", "-O", "qcow2", str(disk), str(workdir / "box.img")])
        disk.unlink()
        (workdir / "metadata.json").write_text(files.metadata_json(recipe.disk_gib))
        (workdir / "Vagrantfile").write_text(files.BOX_VAGRANTFILE)
        (workdir / "relevo-box.json").write_text(
            json.dumps({"key": recipe.key(), "suite": recipe.suite}) + "\n"
        )
        progress(f"packing {target.name}")
        partial = workdir / "partial.box"
        members = ["metadata.json", "Vagrantfile", "relevo-box.json", "box.img"]
        run([tools["tar"], "-C", str(workdir), "-cf", str(partial), *members])
        partial.replace(target)
    finally:
        remove_tree(workdir)
    size = target.stat().st_size
    progress(f"built {target} ({size / 1e6:.0f} MB)")
    return BuiltBox(target, False, time.monotonic() - started, size, recipe.key())


def _fill_disk(
    recipe: BoxRecipe,
    tools: dict[str, str],
    disk: Path,
    disk_bytes: int,
    root: Path,
    progress: Progress,
    image: Callable[[], Path] | None,
) -> bytes:
    """Make and fill the root file system inside `disk`; return the MBR boot code to write in front."""
    loop = run(losetup_argv(tools["losetup"], disk, disk_bytes)).strip()
    try:
        root_uuid = str(uuid.uuid4())
        features = "^64bit,^metadata_csum"  # what extlinux reads without doubt
        run([tools["mkfs.ext4"], "-q", "-F", "-L", files.ROOT_LABEL, "-U", root_uuid, "-O", features, loop])
        root.mkdir()
        run([tools["mount"], loop, str(root)])
        try:
            progress(f"debootstrap {recipe.suite} from {recipe.mirror} with a kernel and LXD (a few minutes)")
            run_streaming(
                debootstrap_argv(tools["debootstrap"], recipe, root), progress, DEBOOTSTRAP_TIMEOUT_S
            )
            progress("configuring the guest: vagrant user, sshd, network, bootloader")
            configure_guest(root, root_uuid, recipe.insecure_key, tools["chroot"])
            if recipe.image and image is not None:
                progress(f"the container image {recipe.image} into {files.BOX_IMAGE_DIR}")
                carry_image(root, image(), recipe.image)
            run([str(root / "usr/bin/extlinux"), "--install", str(root / "boot/extlinux")])
            mbr = (root / "usr/lib/syslinux/mbr/mbr.bin").read_bytes()
        finally:
            unmount_below(root, tools["umount"])
            run([tools["umount"], str(root)])
    finally:
        run([tools["losetup"], "--detach", loop])
    return mbr


def configure_guest(root: Path, root_uuid: str, insecure_key: str, chroot: str) -> None:
    """Turn the debootstrapped tree into a bootable Vagrant guest."""

    def in_guest(*argv: str) -> None:
        env_path = "PATH=/usr/sbin:/usr/bin:/sbin:/bin"
        run([chroot, str(root), "/usr/bin/env", "-i", env_path, *argv])

    etc = root / "etc"
    (etc / "fstab").write_text(files.fstab(root_uuid))
    (etc / "hostname").write_text("relevo\n")
    (etc / "hosts").write_text(files.hosts("relevo"))
    (etc / "resolv.conf").unlink(missing_ok=True)
    (etc / "resolv.conf").write_text("")  # no uplink, no DNS: the guests fetch nothing
    (etc / "machine-id").write_text("")  # empty: systemd makes one per VM on first boot
    (root / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    (etc / "systemd/network").mkdir(parents=True, exist_ok=True)
    (etc / "systemd/network/99-relevo-dhcp.network").write_text(files.NETWORKD_DHCP)
    (etc / "systemd/system/relevo-ssh-keygen.service").write_text(files.SSH_HOST_KEYS_UNIT)
    for key in etc.glob("ssh/ssh_host_*"):
        key.unlink()
    (etc / "sudoers.d/vagrant").write_text(files.SUDOERS)
    (etc / "sudoers.d/vagrant").chmod(0o440)
    (etc / "dpkg/dpkg.cfg.d/relevo-nodoc").write_text(files.DPKG_EXCLUDES)
    (etc / "apt/apt.conf.d/90relevo-nocache").write_text(files.APT_NO_CACHE)
    in_guest("systemctl", "enable", "systemd-networkd.service", "relevo-ssh-keygen.service", "ssh.service")
    # keepalived runs on a pair's balancer VMs only, enabled by their provisioning with its config.
    in_guest("systemctl", "disable", "keepalived.service")
    groups = "sudo,lxd" if "lxd:" in (etc / "group").read_text() else "sudo"
    in_guest("useradd", "--create-home", "--shell", "/bin/bash", "--groups", groups, files.VAGRANT_USER)
    in_guest("usermod", "--password", "*", files.VAGRANT_USER)  # no password, yet not locked for sshd
    ssh_dir = root / "home" / files.VAGRANT_USER / ".ssh"
    ssh_dir.mkdir(mode=0o700)
    (ssh_dir / "authorized_keys").write_text(insecure_key)
    (ssh_dir / "authorized_keys").chmod(0o600)
    in_guest("chown", "-R", f"{files.VAGRANT_USER}:{files.VAGRANT_USER}", f"/home/{files.VAGRANT_USER}/.ssh")
    kernel = _newest(root / "boot", "vmlinuz-")
    initrd = _newest(root / "boot", "initrd.img-")
    (root / "boot/extlinux").mkdir(exist_ok=True)
    (root / "boot/extlinux/extlinux.conf").write_text(files.extlinux_conf(kernel, initrd, root_uuid))
    for name in files.EMPTIED_DIRS:
        _empty_dir(root / name)


def carry_image(root: Path, tarball: Path, name: str) -> Path:
    """The container image's tarball copied into the guest's BOX_IMAGE_DIR, where each VM's provisioning
    imports it from its own disk. It must be the build the recipe names (its key is in the box's)."""
    if tarball.name != name:
        raise RelevoError(f"the image build gave {tarball.name}, the box's recipe names {name}")
    directory = root / files.BOX_IMAGE_DIR.lstrip("/")
    directory.mkdir(parents=True, exist_ok=True)
    with open_binary(tarball) as source, (directory / name).open("wb") as copy:
        shutil.copyfileobj(source, copy, 1 << 20)
    return directory / name


def _newest(directory: Path, prefix: str) -> str:
    found = sorted(p.name for p in directory.glob(prefix + "*"))
    if not found:
        raise RelevoError(
            f"debootstrap installed no {prefix}* in {directory}: is linux-image-amd64 in the recipe?"
        )
    return found[-1]


def _empty_dir(path: Path) -> None:
    """Remove what a directory holds (not the directory), never leaving the tree through a symlink."""
    if not path.is_dir() or path.is_symlink():
        return
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()

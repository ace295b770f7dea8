"""Adding a built box to Vagrant, once per content: `vagrant box add` is skipped when Vagrant already
holds a box of that name built from the same recipe, and a replaced box's old disk volume is removed
from libvirt's pool (vagrant-libvirt would otherwise keep booting new VMs from the old volume, because
it reuses a volume of the box's name, and `vagrant box remove` leaves it there)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from relevo.commands import SEARCH_PATH
from relevo.errors import MissingToolError, ProviderError
from relevo.progress import Progress
from relevo.vagrant.box import run, validate_box_name

VAGRANT_ADD_TIMEOUT_S = 10 * 60.0
LIBVIRT_URI = "qemu:///system"
LIBVIRT_POOL = "default"


@dataclass(frozen=True, slots=True)
class AddedBox:
    name: str
    added: bool  # False when Vagrant already had this exact box
    removed_volumes: tuple[str, ...]


def vagrant_home() -> Path:
    return Path(os.environ.get("VAGRANT_HOME") or Path.home() / ".vagrant.d")


def escaped(name: str) -> str:
    """How Vagrant and vagrant-libvirt spell a box name in paths and volume names."""
    return name.replace("/", "-VAGRANTSLASH-")


def installed_key(name: str) -> str | None:
    """The recipe key of the libvirt box Vagrant holds under `name`, None when it holds none of ours."""
    versions = vagrant_home() / "boxes" / escaped(name)
    for marker in sorted(versions.glob("*/libvirt/relevo-box.json")):
        try:
            key = json.loads(marker.read_text()).get("key")
        except (OSError, ValueError):
            continue
        if isinstance(key, str):
            return key
    return None


def box_volume_prefix(name: str) -> str:
    """vagrant-libvirt names the pool volume it uploads a box into `<escaped name>_vagrant_box_image_…`."""
    return f"{escaped(name)}_vagrant_box_image_"


def add_box(box_path: Path, key: str, name: str, *, progress: Progress = lambda _l: None) -> AddedBox:
    """Make Vagrant hold `box_path` under `name` (provider libvirt), unless it already holds that build."""
    validate_box_name(name)
    if installed_key(name) == key:
        progress(f"Vagrant already has box {name} ({key})")
        return AddedBox(name, False, ())
    vagrant = shutil.which("vagrant", path=SEARCH_PATH)
    if vagrant is None:
        raise MissingToolError(
            "vagrant is not installed: install it with `sudo apt-get install vagrant vagrant-libvirt`"
        )
    progress(f"vagrant box add {name} {box_path}")
    run(add_argv(vagrant, box_path, name), timeout_s=VAGRANT_ADD_TIMEOUT_S)
    return AddedBox(name, True, remove_stale_volumes(name, progress))


def add_argv(vagrant: str, box_path: Path, name: str) -> list[str]:
    return [vagrant, "box", "add", "--force", "--provider", "libvirt", "--name", name, str(box_path)]


def remove_stale_volumes(name: str, progress: Progress) -> tuple[str, ...]:
    """Delete the pool volumes an earlier build of this box left (when libvirt runs; when it does not,
    there is nothing it could boot from either, and the next `up` after starting it would: say so)."""
    virsh = shutil.which("virsh", path=SEARCH_PATH)
    if virsh is None:
        return ()
    listing = subprocess.run(
        [virsh, "-c", LIBVIRT_URI, "vol-list", "--pool", LIBVIRT_POOL],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if listing.returncode != 0:
        if "pool" in listing.stderr.lower() and "not found" in listing.stderr.lower():
            return ()  # no default pool yet: vagrant-libvirt makes it, with nothing stale inside
        progress(
            f"libvirt did not answer; if it holds an older volume {box_volume_prefix(name)}* remove it with "
            f"`virsh vol-delete --pool {LIBVIRT_POOL} NAME` before the next `vagrant up`"
        )
        return ()
    volumes = dict(line.split(None, 1) for line in listing.stdout.splitlines()[2:] if len(line.split()) == 2)
    backing = backing_files([Path(path.strip()) for path in volumes.values()])
    removed = []
    for volume, path in volumes.items():
        if not volume.startswith(box_volume_prefix(name)):
            continue
        if Path(path.strip()) in backing:
            progress(
                f"kept the old box volume {volume}: a VM's disk is built on it (remove it after `destroy`)"
            )
            continue
        command = [virsh, "-c", LIBVIRT_URI, "vol-delete", "--pool", LIBVIRT_POOL, volume]
        try:
            run(command, timeout_s=60)
        except ProviderError as exc:
            progress(f"could not remove the old box volume {volume}: {exc}")
            continue
        progress(f"removed the old box volume {volume} from libvirt's pool {LIBVIRT_POOL}")
        removed.append(volume)
    return tuple(removed)


def backing_files(images: list[Path]) -> set[Path]:
    """The files these disk images are built on (qcow2 backing files): a box volume some VM's disk
    still uses must stay."""
    qemu_img = shutil.which("qemu-img", path=SEARCH_PATH)
    if qemu_img is None:
        return set()
    found = set()
    for image in images:
        # -U: read the header of an image a running VM holds locked.
        argv = [qemu_img, "info", "-U", "--output=json", str(image)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        try:
            info = json.loads(done.stdout) if done.returncode == 0 else {}
        except ValueError:
            continue
        for key in ("full-backing-filename", "backing-filename"):
            if isinstance(info.get(key), str):
                found.add(Path(info[key]))
    return found

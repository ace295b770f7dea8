"""`relevo box build`'s pure parts: the recipe's cache key, the argv lists, the MBR, the box metadata,
the guest configuration written into a root tree, and when `vagrant box add` is skipped."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from relevo.cli import cli
from relevo.errors import MissingToolError, RelevoError
from relevo.lxd.build import ImageRecipe
from relevo.vagrant import box as box_module
from relevo.vagrant import box_add, box_and_image, box_files
from relevo.vagrant.box import (
    PARTITION_OFFSET,
    BoxNameError,
    BoxRecipe,
    BuiltBox,
    build_box,
    carry_image,
    configure_guest,
    debootstrap_argv,
    losetup_argv,
    mbr_partition_table,
    validate_box_name,
)

KEY = "ssh-rsa AAAAB3NzaC1yc2EAAAABIwAAAQEA6NF8iallvQVp22WDkT vagrant insecure public key\n"


def test_key_is_stable_and_follows_every_input() -> None:
    """The cache key is the same for the same recipe and changes with the mirror, packages, disk and key."""
    base = BoxRecipe(insecure_key=KEY)
    assert base.key() == BoxRecipe(insecure_key=KEY).key()
    variants = [
        BoxRecipe(insecure_key=KEY, mirror="http://mirror.example/debian"),
        BoxRecipe(insecure_key=KEY, packages=(*base.packages, "vim")),
        BoxRecipe(insecure_key=KEY, disk_gib=base.disk_gib + 1),
        BoxRecipe(insecure_key="ssh-ed25519 AAAAother\n"),
        BoxRecipe(insecure_key=KEY, suite="trixie"),
    ]
    keys = {v.key() for v in variants}
    assert base.key() not in keys and len(keys) == len(variants)
    assert base.key() in base.file_name() and base.file_name().endswith(".box")


def test_key_follows_the_guest_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """Changing what is written into the guest (e.g. the network file) renames the cached box."""
    before = BoxRecipe(insecure_key=KEY).key()
    monkeypatch.setattr(box_files, "NETWORKD_DHCP", box_files.NETWORKD_DHCP + "# changed\n")
    assert BoxRecipe(insecure_key=KEY).key() != before


def test_recipe_holds_what_guests_need() -> None:
    """The box installs a kernel, a bootloader, sshd, sudo, python3 and LXD with dnsmasq-base and iptables."""
    needed = {"linux-image-amd64", "extlinux", "openssh-server", "sudo", "python3", "lxd", "dnsmasq-base",
              "iptables", "systemd-sysv"}  # fmt: skip
    assert needed <= set(BoxRecipe().packages)


def test_debootstrap_argv_is_minbase_with_the_packages(tmp_path: Path) -> None:
    """debootstrap gets a list (no shell): minbase, the packages joined by commas, suite, target, mirror."""
    recipe = BoxRecipe(insecure_key=KEY, mirror="http://m.example/debian")
    argv = debootstrap_argv("/usr/sbin/debootstrap", recipe, tmp_path / "root")
    assert argv[:2] == ["/usr/sbin/debootstrap", "--variant=minbase"]
    assert argv[2] == "--include=" + ",".join(recipe.packages)
    assert argv[-3:] == ["bookworm", str(tmp_path / "root"), "http://m.example/debian"]
    # What the guests must never apt-get: LXD with its helpers, and keepalived for a pair's balancers.
    assert {"lxd", "dnsmasq-base", "iptables", "keepalived"} <= set(
        argv[2].removeprefix("--include=").split(",")
    )


def test_losetup_maps_the_partition_range(tmp_path: Path) -> None:
    """The loop device covers the partition's bytes (1 MiB to the end): no partition nodes are needed."""
    argv = losetup_argv("losetup", tmp_path / "d.raw", 16 << 30)
    assert argv[argv.index("--offset") + 1] == str(PARTITION_OFFSET)
    assert argv[argv.index("--sizelimit") + 1] == str((16 << 30) - PARTITION_OFFSET)
    assert argv[-1] == str(tmp_path / "d.raw") and "--show" in argv


def test_mbr_has_one_bootable_linux_partition() -> None:
    """The partition table: one active type-0x83 entry from LBA 2048 to the disk's end, then 0x55AA."""
    table = mbr_partition_table(16 << 30)
    assert len(table) == 66 and table[-2:] == b"\x55\xaa"
    assert table[0] == 0x80 and table[4] == 0x83
    assert int.from_bytes(table[8:12], "little") == 2048
    assert int.from_bytes(table[12:16], "little") == (16 << 30) // 512 - 2048
    assert table[16:64] == bytes(48)


def test_mbr_sector_puts_the_table_at_446() -> None:
    """The boot code fills the first 440 bytes and the table starts at byte 446, so the BIOS boots it."""
    sector = box_module.mbr_sector(b"\xfa" * 440, 16 << 30)
    assert len(sector) == 512 and sector[:440] == b"\xfa" * 440 and sector[440:446] == bytes(6)
    assert sector[446] == 0x80 and sector[510:] == b"\x55\xaa"
    with pytest.raises(RelevoError, match="440"):
        box_module.mbr_sector(bytes(446), 16 << 30)


def test_metadata_is_what_vagrant_libvirt_reads() -> None:
    """metadata.json names the libvirt provider, the qcow2 format and the virtual size in GiB."""
    assert json.loads(box_files.metadata_json(16)) == {
        "provider": "libvirt",
        "format": "qcow2",
        "virtual_size": 16,
    }


@pytest.mark.parametrize("name", ["relevo/bookworm64", "mybox", "org/box-1.2_x"])
def test_valid_box_names(name: str) -> None:
    """Plain and ORG/NAME box names are accepted."""
    assert validate_box_name(name) == name


@pytest.mark.parametrize("name", ["", "../x", "a/b/c", "Box", "a b", "-x", "x;rm", "a/"])
def test_invalid_box_names(name: str) -> None:
    """Names that a path, a shell or Vagrant could misread are refused (exit 2)."""
    with pytest.raises(BoxNameError) as caught:
        validate_box_name(name)
    assert caught.value.exit_status == 2


def _fake_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    for directory in ("etc/ssh", "etc/sudoers.d", "etc/dpkg/dpkg.cfg.d", "etc/apt/apt.conf.d",
                      "etc/systemd/system", "var/lib/dbus", "boot", "home", "usr/share/doc/x",
                      "var/lib/apt/lists"):  # fmt: skip
        (root / directory).mkdir(parents=True)
    (root / "etc/group").write_text("root:x:0:\nsudo:x:27:\nlxd:x:999:\n")
    (root / "etc/ssh/ssh_host_rsa_key").write_text("secret")
    (root / "boot/vmlinuz-6.1.0-9-amd64").write_text("")
    (root / "boot/initrd.img-6.1.0-9-amd64").write_text("")
    (root / "usr/share/doc/x/README").write_text("docs")
    (root / "var/lib/apt/lists/some_Packages").write_text("lists")
    (root / "home/vagrant").mkdir()  # what `useradd --create-home` would make (chroot is faked below)
    return root


def test_configure_guest_writes_a_bootable_vagrant_guest(tmp_path: Path) -> None:
    """The guest gets fstab and extlinux by UUID, DHCP on en*/eth*, the insecure key 0600, sudo 0440,
    no build-time SSH host keys, no docs and no apt lists."""
    root = _fake_root(tmp_path)
    configure_guest(root, "1234-uuid", KEY, chroot="/bin/true")
    assert (root / "etc/fstab").read_text().startswith("UUID=1234-uuid / ext4")
    conf = (root / "boot/extlinux/extlinux.conf").read_text()
    assert "LINUX /boot/vmlinuz-6.1.0-9-amd64" in conf and "INITRD /boot/initrd.img-6.1.0-9-amd64" in conf
    assert "root=UUID=1234-uuid" in conf
    network = (root / "etc/systemd/network/99-relevo-dhcp.network").read_text()
    assert "Name=en* eth*" in network and "DHCP=ipv4" in network
    keys = root / "home/vagrant/.ssh/authorized_keys"
    assert keys.read_text() == KEY and keys.stat().st_mode & 0o777 == 0o600
    assert (root / "etc/sudoers.d/vagrant").stat().st_mode & 0o777 == 0o440
    assert not list((root / "etc/ssh").glob("ssh_host_*"))
    assert not any((root / "usr/share/doc").iterdir()) and not any((root / "var/lib/apt/lists").iterdir())
    assert (root / "etc/resolv.conf").read_text() == "" and (root / "etc/machine-id").read_text() == ""


def test_configure_guest_without_a_kernel_says_so(tmp_path: Path) -> None:
    """A tree without a kernel is a clear error naming the missing package, not a box that cannot boot."""
    root = _fake_root(tmp_path)
    (root / "boot/vmlinuz-6.1.0-9-amd64").unlink()
    with pytest.raises(RelevoError, match="linux-image-amd64"):
        configure_guest(root, "u", KEY, chroot="/bin/true")


def test_cached_box_is_returned_without_building(tmp_path: Path) -> None:
    """A .box already in the cache under the recipe's key is returned as cached, with no tool run."""
    recipe = BoxRecipe(insecure_key=KEY)
    (tmp_path / recipe.file_name()).write_bytes(b"box")
    built = build_box(recipe, cache=tmp_path)
    assert built.cached and built.path == tmp_path / recipe.file_name() and built.key == recipe.key()


def test_missing_tool_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without debootstrap the build stops at once with an error naming it and its package."""
    monkeypatch.setattr(shutil, "which", lambda name, path=None: None)
    with pytest.raises(MissingToolError, match=r"debootstrap is not installed.*apt-get install debootstrap"):
        box_module.required_tools()


def test_cli_missing_tool_exits_1_with_the_name(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`relevo box build` without qemu-img names the program and its package, exit 1, no traceback."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    real_which = shutil.which
    monkeypatch.setattr(
        shutil,
        "which",
        lambda name, path=None: None if name == "qemu-img" else real_which(name, path=path),
    )
    monkeypatch.setattr(box_module, "find_insecure_key", lambda: KEY)
    result = CliRunner().invoke(cli, ["box", "build", "--no-add"])
    assert result.exit_code == 1, result.output
    assert "qemu-img is not installed" in result.output and "qemu-utils" in result.output
    assert "Traceback" not in result.output
    assert not list((tmp_path / "relevo/boxes").iterdir())


def test_cli_bad_name_exits_2() -> None:
    """A bad --name is a usage error (exit 2) before anything is built."""
    result = CliRunner().invoke(cli, ["box", "build", "--name", "../evil"])
    assert result.exit_code == 2 and "box name '../evil' is not valid" in result.output


def test_cli_help() -> None:
    """`relevo box build --help` describes the command and its flags."""
    result = CliRunner().invoke(cli, ["box", "build", "--help"])
    assert result.exit_code == 0 and "--json" in result.output and "--rebuild" in result.output


def test_add_is_skipped_when_vagrant_has_this_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Vagrant holding the box with the same recipe key means no `vagrant box add` (none is run)."""
    monkeypatch.setenv("VAGRANT_HOME", str(tmp_path))
    marker = tmp_path / "boxes/relevo-VAGRANTSLASH-bookworm64/0/libvirt/relevo-box.json"
    marker.parent.mkdir(parents=True)
    marker.write_text(json.dumps({"key": "abc"}))
    monkeypatch.setattr(box_add, "run", lambda *a, **k: pytest.fail("vagrant must not run"))
    added = box_add.add_box(tmp_path / "x.box", "abc", "relevo/bookworm64")
    assert not added.added and box_add.installed_key("relevo/bookworm64") == "abc"
    assert box_add.installed_key("other") is None


def test_add_argv_and_volume_prefix(tmp_path: Path) -> None:
    """The add command forces the libvirt provider and the name; old volumes use Vagrant's escaping."""
    argv = box_add.add_argv("vagrant", tmp_path / "b.box", "relevo/bookworm64")
    name = ["--name", "relevo/bookworm64"]
    assert argv == [
        "vagrant",
        "box",
        "add",
        "--force",
        "--provider",
        "libvirt",
        *name,
        str(tmp_path / "b.box"),
    ]
    assert (
        box_add.box_volume_prefix("relevo/bookworm64") == "relevo-VAGRANTSLASH-bookworm64_vagrant_box_image_"
    )


def test_cache_dir_is_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The box cache is made 0700 under XDG_CACHE_HOME."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = box_module.boxes_cache_dir()
    assert path == tmp_path / "relevo/boxes" and path.stat().st_mode & 0o777 == 0o700
    assert path.stat().st_uid == os.geteuid()


def test_image_build_runs_as_relevo_image_build() -> None:
    """The container image is built by `relevo image build --no-import --json` in a child process, with
    the box's mirror, and --rebuild only when asked."""
    argv = box_and_image.image_build_argv("http://m.example/debian", rebuild=False)
    assert argv[1:] == ["-m", "relevo", "image", "build", "--no-import", "--json", "--mirror",
                        "http://m.example/debian"]  # fmt: skip
    assert box_and_image.image_build_argv("http://m", rebuild=True)[-1] == "--rebuild"


def test_backing_files_find_the_box_volume_a_vm_disk_uses(tmp_path: Path) -> None:
    """A VM disk made as a qcow2 snapshot of a box volume names that volume: it must not be deleted."""
    qemu_img = shutil.which("qemu-img")
    if qemu_img is None:
        pytest.skip("qemu-img is not installed (scripts/bootstrap --dev installs it)")
    base, overlay, alone = tmp_path / "box.img", tmp_path / "vm.img", tmp_path / "other.img"
    for image in (base, alone):
        box_module.run([qemu_img, "create", "-q", "-f", "qcow2", str(image), "1M"])
    box_module.run([qemu_img, "create", "-q", "-f", "qcow2", "-b", str(base), "-F", "qcow2", str(overlay)])
    assert box_add.backing_files([overlay, alone, base]) == {base}


def test_the_image_the_box_carries_is_in_its_key() -> None:
    """A box that carries another build of the container image is another box (another cache file)."""
    base = BoxRecipe(insecure_key=KEY, image="debian-bookworm-x86_64-aaaa.tar.zst")
    other = BoxRecipe(insecure_key=KEY, image="debian-bookworm-x86_64-bbbb.tar.zst")
    assert len({base.key(), other.key(), BoxRecipe(insecure_key=KEY).key()}) == 3


def test_carry_image_puts_the_named_tarball_where_provisioning_looks(tmp_path: Path) -> None:
    """The image's tarball is copied into the guest's BOX_IMAGE_DIR under its own name; a tarball other
    than the one the recipe names is refused (the box's key would not say what it holds)."""
    root = tmp_path / "root"
    root.mkdir()
    tarball = tmp_path / "debian-bookworm-x86_64-aaaa.tar.zst"
    tarball.write_bytes(b"an image")
    placed = carry_image(root, tarball, tarball.name)
    assert placed == root / box_files.BOX_IMAGE_DIR.lstrip("/") / tarball.name
    assert placed.read_bytes() == b"an image"
    with pytest.raises(RelevoError, match="names debian-bookworm-x86_64-bbbb"):
        carry_image(root, tarball, "debian-bookworm-x86_64-bbbb.tar.zst")


def test_a_box_that_carries_an_image_is_not_built_without_it(tmp_path: Path) -> None:
    """build_box with a recipe naming an image but no way to get the tarball stops before any tool runs."""
    recipe = BoxRecipe(insecure_key=KEY, image="debian-bookworm-x86_64-aaaa.tar.zst")
    with pytest.raises(RelevoError, match="carries the image"):
        build_box(recipe, cache=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_the_box_carries_the_image_built_beside_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """build_box_and_image names the image `relevo image build` makes in the box's recipe (the box's key
    follows the image's) and gives build_box the tarball that child build reported, once it has ended."""
    tarball = tmp_path / ImageRecipe().file_name
    tarball.write_bytes(b"an image")
    child = f"import json; print(json.dumps({{'tarball': {str(tarball)!r}, 'cached': True}}))"
    monkeypatch.setattr(
        box_and_image, "image_build_argv", lambda mirror, rebuild: [sys.executable, "-c", child]
    )
    monkeypatch.setattr(box_and_image, "required_tools", dict)
    seen: dict[str, object] = {}

    def build(recipe: BoxRecipe, *, progress: object, rebuild: bool, image: Callable[[], Path]) -> BuiltBox:
        seen["recipe"], seen["tarball"] = recipe, image()
        return BuiltBox(tmp_path / recipe.file_name(), False, 0.0, 0, recipe.key())

    monkeypatch.setattr(box_and_image, "build_box", build)
    box, image = box_and_image.build_box_and_image(
        progress=lambda _line: None, box_recipe=BoxRecipe(insecure_key=KEY)
    )
    recipe = seen["recipe"]
    assert isinstance(recipe, BoxRecipe) and recipe.image == tarball.name
    assert seen["tarball"] == tarball and box.key == recipe.key()
    assert image.path == tarball and image.cached

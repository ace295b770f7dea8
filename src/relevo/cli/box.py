"""`relevo box build`: the Vagrant box (vagrant-libvirt) and the container image, built offline from a
Debian mirror, cached, and added to Vagrant."""

from __future__ import annotations

from dataclasses import replace

import click

from relevo.cli.common import print_json
from relevo.cli.image import StepPrinter


@click.group()
def box() -> None:
    """The Vagrant box the exported VMs boot (provider libvirt)."""


@box.command()
@click.option("--name", default=None, help="The box name in Vagrant (default: relevo/bookworm64).")
@click.option("--mirror", default=None, help="The Debian mirror (default: http://deb.debian.org/debian).")
@click.option("--rebuild", is_flag=True, help="Build again even when a cached box and image exist.")
@click.option("--no-add", "no_add", is_flag=True, help="Only build (or find) the .box; do not add it.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def build(name: str | None, mirror: str | None, rebuild: bool, no_add: bool, as_json: bool) -> None:
    """Build the Vagrant box and the container image, then add the box to Vagrant.

    debootstrap makes a Debian bookworm minbase disk with a kernel, extlinux, sshd, sudo, the `vagrant`
    user with Vagrant's insecure key, python3, LXD, dnsmasq-base and iptables (guests need no apt-get);
    its first NIC takes DHCP. The disk is packed as a vagrant-libvirt box (box.img qcow2, metadata.json,
    Vagrantfile) and cached under ~/.cache/relevo/boxes, keyed by its recipe; the container image
    (`relevo image build`) is built at the same time into ~/.cache/relevo/images. Cached, both are
    instant, and `vagrant box add` is skipped when Vagrant already has this build. Needs root.
    """
    from relevo.vagrant.box import DEFAULT_BOX_NAME, BoxRecipe, find_insecure_key, validate_box_name
    from relevo.vagrant.box_add import add_box
    from relevo.vagrant.box_and_image import build_box_and_image

    box_name = validate_box_name(name or DEFAULT_BOX_NAME)
    recipe = BoxRecipe(insecure_key=find_insecure_key())
    if mirror:
        recipe = replace(recipe, mirror=mirror)
    progress = StepPrinter()
    built, image = build_box_and_image(progress=progress, rebuild=rebuild, box_recipe=recipe)
    result: dict[str, object] = {
        "box": str(built.path),
        "key": built.key,
        "cached": built.cached,
        "build_s": round(built.seconds, 2),
        "size_bytes": built.size_bytes,
        "image": str(image.path),
        "image_cached": image.cached,
    }
    if not no_add:
        added = add_box(built.path, built.key, box_name, progress=progress)
        result |= {"name": added.name, "added": added.added, "removed_volumes": list(added.removed_volumes)}
    if as_json:
        print_json(result)
        return
    how = "cached" if built.cached else f"built in {built.seconds:.0f} s"
    click.echo(f"box {built.path} ({built.size_bytes / 1e6:.0f} MB, {how})")
    click.echo(f"image {image.path} ({'cached' if image.cached else 'built'})")
    if not no_add:
        click.echo(f"vagrant box {box_name} ({'added' if result['added'] else 'already added'})")

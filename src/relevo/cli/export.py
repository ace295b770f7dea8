"""`relevo export vagrant DIR`: the cluster as the seed ran it, five Vagrant VMs with one LXD container
each, written from the topology (the VMs themselves are started by `vagrant up`, not by relevo)."""

from __future__ import annotations

from pathlib import Path

import click

from relevo.cli.common import file_option, get_topology, print_json
from relevo.vagrant.plan import (
    BALANCER_MEMORY_MIB,
    DEFAULT_BOX,
    DEFAULT_CONTAINER_NETWORK,
    DEFAULT_IMAGE_ALIAS,
    DEFAULT_NETWORK,
    VagrantProvider,
    VagrantSettings,
)


@click.group()
def export() -> None:
    """Write the cluster out for another tool to run."""


@export.command()
@file_option
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--provider",
    type=click.Choice([p.value for p in VagrantProvider]),
    default=VagrantProvider.VIRTUALBOX.value,
    show_default=True,
    help="Vagrant's default provider in the Vagrantfile (both are configured).",
)
@click.option("--box", default=DEFAULT_BOX, show_default=True, help="The Vagrant box of every VM.")
@click.option(
    "--memory",
    "memory_mib",
    type=click.IntRange(256, 65536),
    default=1024,
    show_default=True,
    help="Each VM's memory in MiB, a balancer's at least --balancer-memory (a web node's guest uses ~260).",
)
@click.option(
    "--balancer-memory",
    "balancer_memory_mib",
    type=click.IntRange(256, 65536),
    default=BALANCER_MEMORY_MIB,
    show_default=True,
    help="A balancer's VM gets at least this many MiB (LXD, HAProxy, the controller, `relevo scenarios`).",
)
@click.option("--cpus", type=click.IntRange(1, 64), default=1, show_default=True, help="Each VM's CPUs.")
@click.option(
    "--network",
    default=DEFAULT_NETWORK,
    show_default=True,
    help="The VMs' private network: the balancer .2, then the nodes in order (the seed's).",
)
@click.option(
    "--container-network",
    default=DEFAULT_CONTAINER_NETWORK,
    show_default=True,
    help="Each VM's LXD bridge gets the next /24 of it (the balancer's first).",
)
@click.option(
    "--libvirt-driver",
    default="qemu",
    show_default=True,
    help="libvirt's driver: qemu (emulation, where /dev/kvm cannot run a guest) or kvm.",
)
@click.option("--cpu-model", default="qemu64", show_default=True, help="libvirt's CPU model.")
@click.option(
    "--image",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="An LXD image tarball (`relevo image build --no-import`) copied in and uploaded to each VM.",
)
@click.option(
    "--image-alias",
    default=DEFAULT_IMAGE_ALIAS,
    show_default=True,
    help="The image's alias in each VM's LXD.",
)
@click.option(
    "--management-network",
    default=None,
    help="libvirt: make vagrant-libvirt's management network (ssh, DHCP) isolated at this subnet "
    "(default: vagrant-libvirt's own, which NATs).",
)
@click.option(
    "--libvirt-network-prefix",
    default="relevo",
    show_default=True,
    help="libvirt, with --management-network: the networks are named PREFIX-mgmt and PREFIX-private "
    "(defined beforehand, they are used as they are).",
)
@click.option(
    "--no-runtime",
    is_flag=True,
    help="Do not pack relevo for the balancer's VM (its controller then needs relevo installed there).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the VMs and the files written as JSON.")
@click.pass_context
def vagrant(
    ctx: click.Context,
    directory: Path,
    provider: str,
    box: str,
    memory_mib: int,
    balancer_memory_mib: int,
    cpus: int,
    network: str,
    container_network: str,
    libvirt_driver: str,
    cpu_model: str,
    image: Path | None,
    image_alias: str,
    management_network: str | None,
    libvirt_network_prefix: str,
    no_runtime: bool,
    as_json: bool,
) -> None:
    """Write a Vagrantfile and provisioning into DIRECTORY: one VM per node, named after it.

    Each VM initialises LXD (a storage pool, a bridge with NAT off), creates its node's one container
    from the image, puts HAProxy's or Apache's configuration in it (rendered here, as for every other
    provider; the stats credentials come from the state directory's secrets file and stay 0600) and
    exposes it on the VM's address through an LXD proxy device, as the seed did. Cold standbys are left
    stopped. The balancer's VM runs the failover controller (relevo packed from this installation, a
    systemd unit), which starts and stops the other VMs' containers through their LXD over HTTPS with
    certificates made here (kept 0600 in the state directory). Then: `cd DIRECTORY && vagrant up`.
    """
    from relevo.vagrant.export import export_vagrant

    settings = VagrantSettings(
        provider=VagrantProvider(provider),
        box=box,
        memory_mib=memory_mib,
        balancer_memory_mib=balancer_memory_mib,
        cpus=cpus,
        network=network,
        container_network=container_network,
        libvirt_driver=libvirt_driver,
        cpu_model=cpu_model,
        image_alias=image_alias,
        management_network=management_network,
        libvirt_network_prefix=libvirt_network_prefix,
    )
    exported = export_vagrant(get_topology(ctx), settings, directory, image=image, runtime=not no_runtime)
    if as_json:
        print_json(
            {
                "directory": str(exported.directory),
                "vms": [
                    {"name": vm.node, "role": str(vm.role), "address": vm.address, "port": vm.port}
                    for vm in exported.vms
                ],
                "files": [str(path) for path in exported.written],
            }
        )
        return
    for vm in exported.vms:
        click.echo(f"{vm.node:<12} {vm.address:<15} {vm.role}")
    click.echo(f"wrote {len(exported.written)} files into {directory}")
    click.echo(f"next: cd {directory} && vagrant up --provider={provider}")

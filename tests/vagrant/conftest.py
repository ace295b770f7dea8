"""The `vagrant` tier: the seed's five VMs for real (vagrant-libvirt, QEMU), from `relevo export vagrant`.

What it needs it makes, and what it makes it removes: libvirt's daemons (scripts/libvirt-daemon, stopped
afterwards by PID if this session started them), the box and the container image (`relevo box build`,
cached between runs), libvirt's `default` storage pool when there is none, and two isolated libvirt
networks (no forward, DNS off) on subnets no route of this host uses. The VMs live only there; the host
reaches them only there. scripts/test runs the tier on its own, last, with RELEVO_VAGRANT_TIER=1 (any other
pytest run skips it), unless RELEVO_VAGRANT=0.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LIBVIRT_URI = "qemu:///system"
POOL = "default"
POOL_DIR = Path("/var/lib/libvirt/images")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("RELEVO_VAGRANT_TIER") != "1":
        skip = pytest.mark.skip(reason="runs on its own: scripts/test, RELEVO_VAGRANT_TIER=1")
        for item in items:
            if "vagrant" in item.keywords:
                item.add_marker(skip)


def virsh(*args: str, check: bool = True, timeout: float = 120) -> str:
    result = subprocess.run(
        ["virsh", "-c", LIBVIRT_URI, *args], capture_output=True, text=True, timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(f"virsh {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


@pytest.fixture(scope="session")
def libvirt() -> Iterator[None]:
    """libvirtd answering on qemu:///system (started here, and stopped afterwards, only if it did not)."""
    piddir = Path(tempfile.mkdtemp(prefix="relevo-libvirt-"))
    script = REPO / "scripts" / "libvirt-daemon"
    subprocess.run([str(script), "start", str(piddir)], check=True, timeout=180)
    try:
        yield
    finally:
        subprocess.run([str(script), "stop", str(piddir)], check=False, timeout=180)
        shutil.rmtree(piddir, ignore_errors=True)


@pytest.fixture(scope="session")
def storage_pool(libvirt: None) -> Iterator[None]:
    """libvirt's `default` pool, where vagrant-libvirt puts the box's and the VMs' volumes (defined
    here when missing, and undefined again; its directory keeps the cached box volume)."""
    created = (
        subprocess.run(
            ["virsh", "-c", LIBVIRT_URI, "pool-info", POOL], capture_output=True, timeout=60
        ).returncode
        != 0
    )
    if created:
        POOL_DIR.mkdir(parents=True, exist_ok=True)
        virsh("pool-define-as", POOL, "dir", "--target", str(POOL_DIR))
    if "running" not in virsh("pool-info", POOL):
        virsh("pool-start", POOL)
    virsh("pool-refresh", POOL)
    try:
        yield
    finally:
        if created:
            virsh("pool-destroy", POOL, check=False)
            virsh("pool-undefine", POOL, check=False)


@dataclass(frozen=True)
class Box:
    name: str
    image: Path


@pytest.fixture(scope="session")
def box(libvirt: None, storage_pool: None) -> Box:
    """The relevo box in Vagrant and the container image (`relevo box build`: cached after the first)."""
    result = subprocess.run(
        [sys.executable, "-m", "relevo", "box", "build", "--json"],
        capture_output=True,
        text=True,
        timeout=45 * 60,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    built = json.loads(result.stdout)
    return Box(name=str(built["name"]), image=Path(built["image"]))


@dataclass(frozen=True)
class Networks:
    prefix: str  # the libvirt networks are <prefix>-mgmt and <prefix>-private
    management: ipaddress.IPv4Network
    private: ipaddress.IPv4Network
    containers: ipaddress.IPv4Network


def _used_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    routes = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, timeout=30)
    found = []
    for line in routes.stdout.splitlines():
        parts = line.split()
        if "inet" in parts:
            found.append(ipaddress.ip_interface(parts[parts.index("inet") + 1]).network)
    table = subprocess.run(["ip", "-4", "route", "show"], capture_output=True, text=True, timeout=30)
    for line in table.stdout.splitlines():
        first = line.split()[0]
        if first != "default":
            found.append(ipaddress.ip_network(first, strict=False))
    return found


def _network_xml(name: str, bridge: str, subnet: ipaddress.IPv4Network, *, dhcp: bool) -> str:
    hosts = list(subnet.hosts())
    dhcp_xml = f"<dhcp><range start='{hosts[9]}' end='{hosts[-2]}'/></dhcp>" if dhcp else ""
    # No <forward>: isolated (the host and the VMs only). DNS off: no dnsmasq answering names.
    return (
        f"<network><name>{name}</name><bridge name='{bridge}' stp='on' delay='0'/>"
        f"<dns enable='no'/><ip address='{hosts[0]}' netmask='{subnet.netmask}'>{dhcp_xml}</ip></network>"
    )


@pytest.fixture(scope="session")
def networks(libvirt: None) -> Iterator[Networks]:
    """Two isolated libvirt networks on /24s of 10.231-10.239.x no address or route here uses, and a
    /16 for the VMs' LXD bridges; removed afterwards."""
    used = _used_networks()
    tag = f"rvt{os.getpid() % 100000}"
    free = (
        ipaddress.IPv4Network(f"10.{second}.{third}.0/24")
        for second in range(231, 240)
        for third in range(0, 250, 10)
    )
    chosen = [net for net in free if not any(net.overlaps(u) for u in used)][:2]
    assert len(chosen) == 2, "no free 10.231-239.x.0/24 subnets for the test's libvirt networks"
    containers = next(
        net
        for net in (ipaddress.IPv4Network(f"10.{second}.0.0/16") for second in range(241, 250))
        if not any(net.overlaps(u) for u in used)
    )
    nets = Networks(prefix=tag, management=chosen[0], private=chosen[1], containers=containers)
    defined: list[str] = []
    try:
        for suffix, bridge, subnet, dhcp in (
            ("mgmt", f"{tag}m", nets.management, True),
            ("private", f"{tag}p", nets.private, False),
        ):
            name = f"{tag}-{suffix}"
            with tempfile.NamedTemporaryFile("w", suffix=".xml") as xml:
                xml.write(_network_xml(name, bridge, subnet, dhcp=dhcp))
                xml.flush()
                virsh("net-define", xml.name)
            defined.append(name)
            virsh("net-start", name)
        yield nets
    finally:
        for name in defined:
            virsh("net-destroy", name, check=False)
            virsh("net-undefine", name, check=False)

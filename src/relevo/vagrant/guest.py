"""What goes inside each VM's container, rendered on the host by the renderers every provider uses:
HAProxy's configuration and 503 page on the balancer, Apache's configuration, page and health answer
on a web node, the unit that runs each, and the container's static network interface."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from relevo.model import Endpoint, Role, Topology
from relevo.paths import StatePaths
from relevo.render.apache import ApacheLayout, render_apache, render_index
from relevo.render.haproxy import render_503, render_haproxy
from relevo.secrets import Secrets
from relevo.vagrant.plan import VirtualMachine

# Inside the container (the base image is Debian): HAProxy's files under relevo's own state directory,
# Apache's in relevo's own places, each run by relevo's own unit (the image's units read Debian's config).
GUEST_STATE = StatePaths(Path("/var/lib/relevo"))
APACHE_LAYOUT = ApacheLayout(
    node_dir=Path("/etc/relevo/apache"),
    htdocs=Path("/var/www/relevo"),
    pid_file=Path("/run/relevo-apache/httpd.pid"),
    run_dir=Path("/run/relevo-apache"),
    log_dir=Path("/var/log/relevo-apache"),
    modules_dir=Path("/usr/lib/apache2/modules"),
)
APACHE_WORKERS = ("www-data", "www-data")
# Not eth0: a container NIC named like the VM's took the VM's network down when the container stopped.
CONTAINER_NIC = "cnet0"
# The proxy device connects here, inside the container.
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class GuestFile:
    """One file for the container: where it goes, what it holds, who may read it."""

    path: PurePosixPath
    content: str
    mode: int = 0o644


@dataclass(frozen=True, slots=True)
class GuestService:
    unit: str  # relevo's unit, enabled; the image's own (`replaces`) disabled
    replaces: str
    check: tuple[str, ...]  # the argv that checks the configuration
    # What the check needs before the unit has made it (Apache's -t wants its runtime directory).
    directories: tuple[str, ...] = ()


def guest_service(vm: VirtualMachine) -> GuestService:
    if vm.role is Role.BALANCER:
        config = str(GUEST_STATE.haproxy_cfg)
        return GuestService(
            "relevo-haproxy.service", "haproxy.service", ("haproxy", "-c", "-q", "-f", config)
        )
    config = str(APACHE_LAYOUT.node_dir / "httpd.conf")
    return GuestService(
        "relevo-apache.service",
        "apache2.service",
        ("apache2", "-t", "-f", config),
        (str(APACHE_LAYOUT.run_dir), str(APACHE_LAYOUT.log_dir)),
    )


def guest_files(
    topology: Topology, vm: VirtualMachine, vms: tuple[VirtualMachine, ...], secrets: Secrets
) -> list[GuestFile]:
    """Every file the VM's container needs, in the order they are pushed."""
    files = [GuestFile(PurePosixPath(f"/etc/network/interfaces.d/{CONTAINER_NIC}"), interfaces(vm))]
    if vm.role is Role.BALANCER:
        return files + _balancer_files(topology, vms, secrets)
    return files + _web_files(topology, vm)


def interfaces(vm: VirtualMachine) -> str:
    """A static ifupdown stanza: the image has no udev, so nothing else would configure the NIC."""
    return (
        f"auto {CONTAINER_NIC}\niface {CONTAINER_NIC} inet static\n"
        f"    address {vm.container_address}/{vm.prefix}\n    gateway {vm.bridge_address}\n"
    )


def _balancer_files(topology: Topology, vms: tuple[VirtualMachine, ...], secrets: Secrets) -> list[GuestFile]:
    # HAProxy listens on the container's loopback (the VM's proxy devices connect there) and reaches each
    # web node at its VM's address, where that VM's proxy device exposes the node's Apache.
    at_vm = {vm.node: vm.address for vm in vms}
    balancer = topology.balancer
    guest = dataclasses.replace(
        topology,
        balancer=dataclasses.replace(
            balancer,
            frontend=Endpoint(address=LOOPBACK, port=balancer.frontend.port),
            stats=Endpoint(address=LOOPBACK, port=balancer.stats.port),
        ),
        nodes=tuple(dataclasses.replace(node, address=at_vm[node.name]) for node in topology.nodes),
    )
    config = render_haproxy(guest, secrets, GUEST_STATE)
    unit = f"""[Unit]
Description=HAProxy of relevo balancer {balancer.name}
Wants=network-online.target
After=network-online.target

[Service]
Type=notify
StateDirectory=relevo/haproxy
ExecStartPre=/usr/sbin/haproxy -c -q -f {GUEST_STATE.haproxy_cfg}
ExecStart=/usr/sbin/haproxy -Ws -f {GUEST_STATE.haproxy_cfg}
ExecReload=/usr/sbin/haproxy -c -q -f {GUEST_STATE.haproxy_cfg}
ExecReload=/bin/kill -USR2 $MAINPID
KillMode=mixed
Restart=on-failure

[Install]
WantedBy=multi-user.target
"""
    return [
        GuestFile(PurePosixPath(GUEST_STATE.error_page_503), render_503(topology)),
        GuestFile(PurePosixPath(GUEST_STATE.haproxy_cfg), config, 0o600),
        GuestFile(PurePosixPath("/etc/systemd/system/relevo-haproxy.service"), unit),
    ]


def _web_files(topology: Topology, vm: VirtualMachine) -> list[GuestFile]:
    node = dataclasses.replace(topology.node(vm.node), address=LOOPBACK)
    layout = APACHE_LAYOUT
    config = layout.node_dir / "httpd.conf"
    unit = f"""[Unit]
Description=Apache of relevo node {node.name}
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
RuntimeDirectory=relevo-apache
LogsDirectory=relevo-apache
ExecStart=/usr/sbin/apache2 -f {config} -DFOREGROUND
ExecReload=/usr/sbin/apache2 -f {config} -k graceful
KillMode=mixed
Restart=on-failure

[Install]
WantedBy=multi-user.target
"""
    htdocs = PurePosixPath(layout.htdocs)
    return [
        GuestFile(htdocs / topology.health.path.lstrip("/"), "ok\n"),
        GuestFile(htdocs / "index.html", render_index(topology, node)),
        GuestFile(PurePosixPath(config), render_apache(topology, node, layout, run_as=APACHE_WORKERS)),
        GuestFile(PurePosixPath("/etc/systemd/system/relevo-apache.service"), unit),
    ]

"""The failover controller on the balancer's VM: the cluster as that VM sees it (the LXD provider, its
own container on the local daemon, each other node's container behind an LXD HTTPS remote on that
node's VM), `relevo render systemd`'s unit to run it, and the lxc configuration that names the remotes.

No password and no ssh key: the export generates one client certificate for the controller and one
server certificate per remote VM (kept 0600 in the state directory, reused on every export). Each web
VM's LXD serves with its certificate and trusts the controller's; the balancer's VM pins each server's.
"""

from __future__ import annotations

import dataclasses
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import yaml

from relevo.controller.service import unit_name
from relevo.controller.systemd import render_systemd_unit
from relevo.errors import RelevoError
from relevo.files import ensure_dir, open_nofollow, write_atomic
from relevo.lxd.transport import certificate_fingerprint
from relevo.model import Capacity, ControllerSettings, Topology
from relevo.services import NodeFile
from relevo.topology import parse_topology
from relevo.vagrant.plan import VirtualMachine, web_vms

HOME = PurePosixPath("/var/lib/relevo-controller")
TOPOLOGY_FILE = HOME / "relevo.yaml"
LXC_CONF = HOME / "lxc"
RUNTIME_DIR = PurePosixPath("/opt/relevo")  # the runtime bundle, unpacked (bundle.py)
EXE = PurePosixPath("/usr/local/bin/relevo")
LXD_PORT = 8443
BRIDGE = "relevobr0"  # each VM's LXD bridge, made by its provisioning
# A standby's container on another VM answers seconds after its start: under QEMU emulation 12-13 s on
# a quiet machine, over 20 s with five VMs busy (measured). A shorter start_timeout gives up on a standby
# that was about to serve, stops it and starts it again, forever.
VM_START_TIMEOUT_S = 60.0
# Where a remote VM's provisioning finds its LXD server certificate and the controller's to trust.
REMOTE_CERTS = PurePosixPath("/etc/relevo/lxd")


@dataclass(frozen=True, slots=True)
class KeyPair:
    cert: str
    key: str

    @property
    def fingerprint(self) -> str:
        return certificate_fingerprint(self.cert)


@dataclass(frozen=True, slots=True)
class Credentials:
    """The controller's client certificate and each remote VM's LXD server certificate, by node."""

    controller: KeyPair
    servers: dict[str, KeyPair]


def controller_topology(
    topology: Topology, vms: tuple[VirtualMachine, ...], own: VirtualMachine | None = None
) -> Topology:
    """The cluster as a balancer's VM runs it (its relevo.yaml read back): LXD containers named by the
    LXD provider's rule, each web node probed at its VM's address (its proxy device) and reached on its
    VM's LXD remote. `own` is that balancer's VM (the first's by default): on a pair each balancer VM's
    controller drives its own HAProxy and the web nodes. Raises when the file would not say what was
    meant (a bug, caught at export)."""
    own = own or vms[0]
    text = topology_yaml(topology, vms, own)
    parsed = parse_topology(text, source=Path(TOPOLOGY_FILE), state_dir=Path(HOME / ".relevo"))
    at = {vm.node: vm.address for vm in vms}
    meant = [(n.name, n.role, n.standby_for, at[n.name], n.port, n.capacity) for n in topology.nodes]
    read = [(n.name, n.role, n.standby_for, n.address, n.port, n.capacity) for n in parsed.nodes]
    same = (
        read == meant
        and parsed.health == topology.health
        and parsed.standby == topology.standby
        and parsed.controller == vm_controller_settings(topology)
        and parsed.balancer.name == own.node
        and parsed.balancer.address == own.address
    )
    if not same:
        raise RelevoError("the controller's topology does not read back as written (a bug in relevo)")
    return parsed


def vm_controller_settings(topology: Topology) -> ControllerSettings:
    """The topology's controller settings, with a standby's start given the time a VM's container needs."""
    settings = topology.controller
    return dataclasses.replace(settings, start_timeout_s=max(settings.start_timeout_s, VM_START_TIMEOUT_S))


def topology_yaml(
    topology: Topology, vms: tuple[VirtualMachine, ...], own: VirtualMachine | None = None
) -> str:
    """The controller's relevo.yaml: every setting of the topology, addresses and providers the VMs'.
    On a pair, the balancer of `own`'s VM alone: the two VMs' controllers are each one balancer's."""
    balancer, at = own or vms[0], {vm.node: vm for vm in vms}
    controller = vm_controller_settings(topology)
    b = topology.balancer
    doc: dict[str, object] = {
        "version": 1,
        "name": topology.name,
        "provider": "lxd",
        "network": balancer.network,
        "balancer": {
            "name": balancer.node,
            "address": balancer.address,
            # On the VM's loopback (proxy devices; the LXD provider wants a balancer's listeners there):
            # `relevo scenarios` and `relevo bench` run on the VM load the frontend here.
            "frontend": {"address": "127.0.0.1", "port": b.frontend.port},
            "stats": {"address": "127.0.0.1", "port": b.stats.port},
            "balance": str(b.balance),
            "timeout_connect": _ms(b.timeout_connect_s),
            "timeout_server": _ms(b.timeout_server_s),
            "timeout_queue": _ms(b.timeout_queue_s),
            "retries": b.retries,
        },
        "health": {
            "path": topology.health.path,
            "interval": _ms(topology.health.interval_s),
            "fastinter": _ms(topology.health.fastinter_s),
            "downinter": _ms(topology.health.downinter_s),
            "timeout": _ms(topology.health.timeout_s),
            "rise": topology.health.rise,
            "fall": topology.health.fall,
        },
        "standby": {
            "mode": str(topology.standby.mode),
            "temperature": str(topology.standby.temperature),
            "restart": str(topology.standby.restart),
            "hold": _ms(topology.standby.hold_s),
        },
        "controller": {
            field.name.removesuffix("_s"): (_ms(value) if field.name.endswith("_s") else value)
            for field in dataclasses.fields(controller)
            for value in [getattr(controller, field.name)]
        },
        "capacity": _capacity(topology.capacity),
        # Every VM's containers are on its own bridge and made by its provisioning, not by relevo.
        "providers": {"lxd": {"network": BRIDGE, "provisioned": True}},
        "nodes": {
            node.name: {
                "role": str(node.role),
                **({"standby_for": node.standby_for} if node.standby_for else {}),
                "address": at[node.name].address,
                "port": node.port,
                "capacity": _capacity(node.capacity),
                "options": {"remote": node.name},
            }
            for node in topology.nodes
        },
    }
    header = (
        f"# relevo cluster {topology.name!r} as its balancer's VM runs it, written by `relevo export "
        "vagrant`:\n# its failover controller drives each node's container through that VM's LXD remote.\n"
    )
    return header + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)


def _capacity(capacity: Capacity) -> dict[str, object]:
    values = {f.name: getattr(capacity, f.name) for f in dataclasses.fields(capacity)}
    return {k: v for k, v in values.items() if v is not None}


def _ms(seconds: float) -> str:
    milliseconds = round(seconds * 1000)
    return f"{milliseconds}ms"


def balancer_vm_files(
    topology: Topology,
    vms: tuple[VirtualMachine, ...],
    credentials: Credentials,
    own: VirtualMachine | None = None,
) -> list[NodeFile]:
    """The files a balancer's VM (`own`, the first's by default) gets beside its container's: the
    controller's topology, unit and lxc configuration."""
    own = own or vms[0]
    vm_topology = controller_topology(topology, vms, own)
    lxc = {
        "default-remote": "local",
        "remotes": {
            vm.node: {
                "addr": f"https://{vm.address}:{LXD_PORT}",
                "protocol": "lxd",
                "auth_type": "tls",
                "public": False,
            }
            for vm in web_vms(vms)
        },
    }
    unit = unit_name(vm_topology)
    dropin = (
        "[Service]\n# The LXD remotes of the other VMs: their addresses and pinned certificates.\n"
        f"Environment=LXD_CONF={LXC_CONF}\n"
    )
    files = [
        NodeFile(TOPOLOGY_FILE, topology_yaml(topology, vms, own)),
        NodeFile(
            PurePosixPath("/etc/systemd/system") / unit,
            render_systemd_unit(vm_topology, user="root", exe=str(EXE)),
        ),
        NodeFile(PurePosixPath("/etc/systemd/system") / f"{unit}.d" / "lxd.conf", dropin),
        NodeFile(LXC_CONF / "config.yml", yaml.safe_dump(lxc, sort_keys=False)),
        NodeFile(LXC_CONF / "client.crt", credentials.controller.cert),
        NodeFile(LXC_CONF / "client.key", credentials.controller.key, 0o600),
    ]
    files += [
        NodeFile(LXC_CONF / "servercerts" / f"{vm.node}.crt", credentials.servers[vm.node].cert)
        for vm in web_vms(vms)
    ]
    return files


def remote_vm_files(vm: VirtualMachine, credentials: Credentials) -> list[NodeFile]:
    """A web VM's LXD server certificate and the controller's certificate it trusts."""
    server = credentials.servers[vm.node]
    return [
        NodeFile(REMOTE_CERTS / "server.crt", server.cert),
        NodeFile(REMOTE_CERTS / "server.key", server.key, 0o600),
        NodeFile(REMOTE_CERTS / "controller.crt", credentials.controller.cert),
    ]


def load_or_create_credentials(directory: Path, vms: tuple[VirtualMachine, ...]) -> Credentials:
    """The certificates in `directory` (the state directory's `vagrant/`), made with openssl where
    missing; keys 0600."""
    controller = _load_or_create(directory, "controller", "relevo-controller", "clientAuth", None)
    servers = {
        vm.node: _load_or_create(directory, vm.node, f"relevo-lxd-{vm.node}", "serverAuth", vm.address)
        for vm in web_vms(vms)
    }
    return Credentials(controller=controller, servers=servers)


def _load_or_create(directory: Path, name: str, common_name: str, usage: str, address: str | None) -> KeyPair:
    cert_file, key_file = directory / f"{name}.crt", directory / f"{name}.key"
    try:
        return KeyPair(
            open_nofollow(cert_file, limit=1 << 16).decode(), open_nofollow(key_file, limit=1 << 16).decode()
        )
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise RelevoError(f"cannot read {cert_file} or {key_file}: {exc.strerror}") from None
    ensure_dir(directory)
    extensions = ["-addext", f"extendedKeyUsage={usage}"]
    if address is not None:
        extensions += ["-addext", f"subjectAltName=IP:{address}"]
    with tempfile.TemporaryDirectory(prefix="relevo-cert-") as tmp:
        key, cert = Path(tmp) / "key.pem", Path(tmp) / "cert.pem"
        argv = [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp384r1",
            "-nodes", "-days", "3650", "-subj", f"/CN={common_name}", *extensions,
            "-keyout", str(key), "-out", str(cert),
        ]  # fmt: skip
        try:
            subprocess.run(argv, check=True, capture_output=True, timeout=60)
        except FileNotFoundError:
            raise RelevoError(
                "openssl is needed to make the LXD certificates (apt-get install openssl)"
            ) from None
        except subprocess.CalledProcessError as exc:
            raise RelevoError(
                f"openssl failed to make {name}'s certificate: {exc.stderr.decode().strip()}"
            ) from None
        pair = KeyPair(cert.read_text(), key.read_text())
    write_atomic(key_file, pair.key, mode=0o600)
    write_atomic(cert_file, pair.cert, mode=0o644)
    return pair

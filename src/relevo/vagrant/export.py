"""`relevo export vagrant DIR`: the Vagrantfile, one provisioning script per VM, and the files each VM's
container receives (rendered here, on the host, by the renderers every provider uses)."""

from __future__ import annotations

import re
import shlex
import shutil
from dataclasses import dataclass
from functools import cache
from pathlib import Path, PurePosixPath

import jinja2

from relevo.controller.charge import ENVIRONMENT as CHARGE_ENVIRONMENT
from relevo.controller.service import unit_name
from relevo.errors import RelevoError
from relevo.files import claim_state_dir, ensure_dir, write_atomic
from relevo.model import Role, Topology
from relevo.paths import StatePaths
from relevo.providers.lxd import OWNER_KEY, cluster_tag
from relevo.render.haproxy import HAProxyLayout, describe_source
from relevo.safe_open import open_binary
from relevo.secrets import Secrets, load_or_create_secrets
from relevo.services import NodeFile
from relevo.vagrant.box_files import BOX_IMAGE_DIR
from relevo.vagrant.bundle import write_bundle
from relevo.vagrant.controller import (
    BRIDGE,
    EXE,
    HOME,
    LXC_CONF,
    LXD_PORT,
    REMOTE_CERTS,
    TOPOLOGY_FILE,
    Credentials,
    balancer_vm_files,
    controller_topology,
    load_or_create_credentials,
    remote_vm_files,
)
from relevo.vagrant.guest import LOOPBACK, container_name, guest_files, guest_service
from relevo.vagrant.pair import CHARGE_FILE, PRIVATE_NIC, VRRP_STATE, export_vip, keepalived_vm_files
from relevo.vagrant.plan import (
    ExportSettingsError,
    VagrantSettings,
    VirtualMachine,
    balancer_vms,
    plan_vms,
    web_vms,
)


def wrapper(charge: PurePosixPath | None = None) -> str:
    """relevo on the balancer's VM: the uploaded runtime, by the VM's own Python 3 (nothing installed by
    pip). On a pair's balancer VM every relevo run there (its controller's unit too) gets the charge
    settings: a controller acts only while this balancer holds the VIP (controller/charge.py)."""
    charge_line = f"{CHARGE_ENVIRONMENT}=${{{CHARGE_ENVIRONMENT}:-{charge}}} " if charge else ""
    charge_comment = (
        "\n# What says whether this VM's balancer is in charge (a pair: keepalived's word, the VIP)."
        if charge
        else ""
    )
    return f"""#!/bin/sh
# relevo from the runtime `relevo export vagrant` uploaded into /opt/relevo (no pip, no network).
# The LXD remotes of the other VMs (the controller's unit sets the same).{charge_comment}
LXD_CONF=${{LXD_CONF:-{LXC_CONF}}} {charge_line}PYTHONPATH=/opt/relevo/lib \\
    exec /usr/bin/python3 -s -m relevo "$@"
"""


BOOT_TIMEOUT_S = 1800
ANY = "0.0.0.0"  # noqa: S104 - a pair's frontend on the VM: the VIP comes and goes

# How long the balancer's VM waits for the other VMs' provisioning before it starts the controller
# (under emulation, five VMs brought up in parallel take minutes).
WAIT_FOR_OTHERS_S = 1800

# How long a container's systemd has, after its start, to answer with a settled state (under emulation a
# container's boot takes tens of seconds beside four other busy VMs).
SYSTEMD_WAIT_S = 300

# What may reach the Vagrantfile's Ruby strings: no quote, no `#{`, no backslash.
SAFE_VALUE = re.compile(r"^[A-Za-z0-9._/:@+-]{1,200}$")


@dataclass(frozen=True, slots=True)
class ProxyDevice:
    name: str
    what: str
    listen: str
    connect: str
    options: tuple[tuple[str, str], ...] = ()
    directory: str = ""  # on the VM, made before the device (a unix socket's)


@dataclass(frozen=True, slots=True)
class Exported:
    directory: Path
    vms: tuple[VirtualMachine, ...]
    written: tuple[Path, ...]


def export_vagrant(
    topology: Topology,
    settings: VagrantSettings,
    directory: Path,
    *,
    image: Path | None = None,
    secrets: Secrets | None = None,
    credentials: Credentials | None = None,
    runtime: bool = True,
) -> Exported:
    """Write everything `vagrant up` needs into `directory` (created 0700; files written anew, atomically;
    those holding the stats credentials or a private key 0600). With `image`, the LXD image tarball is
    copied in and uploaded to each VM; without, each VM's LXD must already have `settings.image_alias` or
    the box carry the image (`relevo box build`'s does, in BOX_IMAGE_DIR).
    With `runtime`, relevo and its dependencies are packed for the balancer's VM (its controller)."""
    for option, value in (
        ("--box", settings.box),
        ("--libvirt-network-prefix", settings.libvirt_network_prefix),
        ("--libvirt-driver", settings.libvirt_driver),
        ("--cpu-model", settings.cpu_model),
        ("--image-alias", settings.image_alias),
    ):
        if not SAFE_VALUE.match(value):
            raise ExportSettingsError(f"{option} {value!r}: expected letters, digits and . _ / : @ + - only")
    if image is not None and not image.is_file():
        raise ExportSettingsError(
            f"--image {image}: no such file (an LXD image tarball from `relevo image build`)"
        )
    vms = plan_vms(topology, settings)  # input errors before anything is written
    export_vip(topology, vms)  # a pair's VIP on the VMs' network: errors at the topology's line
    for balancer in balancer_vms(vms):
        controller_topology(topology, vms, balancer)  # each balancer VM's topology reads back (else a bug)
    claim_state_dir(topology.state_dir)
    paths = StatePaths(topology.state_dir).held()  # written through its descriptor (see anchor)
    secrets = secrets or load_or_create_secrets(paths.secrets)
    credentials = credentials or load_or_create_credentials(paths.root / "vagrant", vms)
    files: dict[Path, tuple[str, int]] = {}
    files[Path("Vagrantfile")] = (
        render_vagrantfile(topology, settings, vms, image=image is not None, runtime=runtime),
        0o644,
    )
    for vm in vms:
        for guest in guest_files(topology, vm, vms, secrets):
            files[Path("files", vm.node, *guest.path.parts[1:])] = (guest.content, guest.mode)
        for on_vm in vm_files(topology, vm, vms, credentials):
            files[Path("vmfiles", vm.node, *on_vm.path.parts[1:])] = (on_vm.content, on_vm.mode)
        files[Path("provision", f"{vm.node}.sh")] = (
            render_provision(topology, settings, vm, vms, secrets, credentials),
            0o755,
        )
    ensure_dir(directory)
    written = []
    for relative, (content, mode) in files.items():
        target = directory / relative
        ensure_dir(target.parent)
        write_atomic(target, content, mode=mode)
        written.append(target)
    if image is not None:
        written.append(_copy_image(image, directory / "image"))
    if runtime:
        written.append(write_bundle(directory / "runtime"))
    return Exported(directory=directory, vms=vms, written=tuple(written))


def render_vagrantfile(
    topology: Topology,
    settings: VagrantSettings,
    vms: tuple[VirtualMachine, ...],
    *,
    image: bool,
    runtime: bool = True,
) -> str:
    return (
        _environment()
        .get_template("Vagrantfile.j2")
        .render(
            topology=topology,
            source=describe_source(topology),
            settings=settings,
            vms=vms,
            # The balancers' VMs last: their provisioning waits for the others before the controller.
            order=(*web_vms(vms), *balancer_vms(vms)),
            image=image,
            runtime=runtime,
            boot_timeout_s=BOOT_TIMEOUT_S,
        )
    )


def vm_files(
    topology: Topology, vm: VirtualMachine, vms: tuple[VirtualMachine, ...], credentials: Credentials
) -> list[NodeFile]:
    """The files for the VM itself (not its container): the controller's on a balancer's VM (and a pair's
    keepalived), the LXD server certificate and the controller's certificate on every other."""
    if vm.role is Role.BALANCER:
        files = balancer_vm_files(topology, vms, credentials, vm)
        if topology.pair is None:
            return [*files, NodeFile(EXE, wrapper(), 0o755)]
        watch_unit = unit_name(controller_topology(topology, vms, vm))
        return [
            *files,
            NodeFile(EXE, wrapper(CHARGE_FILE), 0o755),
            *keepalived_vm_files(topology, vms, vm, watch_unit),
        ]
    return remote_vm_files(vm, credentials)


def render_provision(
    topology: Topology,
    settings: VagrantSettings,
    vm: VirtualMachine,
    vms: tuple[VirtualMachine, ...],
    secrets: Secrets,
    credentials: Credentials,
) -> str:
    standby_for = topology.node(vm.node).standby_for if vm.role is Role.STANDBY else None
    state_dir = HOME / ".relevo"
    vm_topology = controller_topology(topology, vms, vm if vm.role is Role.BALANCER else None)
    balancers = balancer_vms(vms)
    return (
        _environment()
        .get_template("provision.sh.j2")
        .render(
            topology=topology,
            source=describe_source(topology),
            settings=settings,
            vm=vm,
            balancer=vms[0],
            # A pair's second balancer VM: the web VMs route its container's subnet back to it too.
            peer=balancers[1] if len(balancers) > 1 else None,
            vip=export_vip(topology, vms),
            nic=PRIVATE_NIC,
            vrrp_state=str(VRRP_STATE),
            standby_for=standby_for,
            temperature=str(topology.standby.temperature),
            container=container_name(topology, vm.node),
            files=guest_files(topology, vm, vms, secrets),
            vm_files=vm_files(topology, vm, vms, credentials),
            service=guest_service(topology, vm),
            devices=proxy_devices(topology, vm),
            https_address=f"{vm.address}:{LXD_PORT}",
            certs=str(REMOTE_CERTS),
            controller_fingerprint=credentials.controller.fingerprint,
            exe=str(EXE),
            topology_file=str(TOPOLOGY_FILE),
            state_dir=str(state_dir),
            watch_unit=unit_name(vm_topology),
            others=[
                {"node": other.node, "container": container_name(topology, other.node)}
                for other in web_vms(vms)
            ],
            lxc_conf=str(LXC_CONF),
            owner_key=OWNER_KEY,
            owner=cluster_tag(vm_topology),
            bridge=BRIDGE,
            wait_s=WAIT_FOR_OTHERS_S,
            systemd_wait_s=SYSTEMD_WAIT_S,
            box_image_dir=BOX_IMAGE_DIR,
        )
    )


def proxy_devices(topology: Topology, vm: VirtualMachine) -> list[ProxyDevice]:
    """The seed's way out of a container: an LXD proxy device on the VM's address for each listener."""
    if vm.role is Role.BALANCER and topology.pair is not None:
        ports = [
            # Every address of the VM: its own, the VIP while keepalived puts it on this VM (a listener
            # bound to the VIP alone could not start while the other VM holds it), and loopback, where
            # the controller's topology says the frontend is.
            ("frontend", "the frontend", ANY, vm.port),
            ("stats", "the stats GUI", vm.address, topology.balancer.stats.port),
            # Also where keepalived's checker asks HAProxy whether it answers.
            ("stats-lo", "the stats GUI", LOOPBACK, topology.balancer.stats.port),
        ]
    elif vm.role is Role.BALANCER:
        ports = [
            ("frontend", "the frontend", vm.address, vm.port),
            ("stats", "the stats GUI", vm.address, topology.balancer.stats.port),
            # Where the controller's topology says they are: `relevo scenarios` and `bench` on the VM.
            ("frontend-lo", "the frontend", LOOPBACK, vm.port),
            ("stats-lo", "the stats GUI", LOOPBACK, topology.balancer.stats.port),
        ]
    else:
        ports = [("http", "Apache", vm.address, vm.port)]
    devices = [
        ProxyDevice(f"relevo-{name}", what, f"tcp:{address}:{port}", f"tcp:{LOOPBACK}:{port}")
        for name, what, address, port in ports
    ]
    if vm.role is Role.BALANCER:
        # HAProxy's Runtime API socket on the VM, where its controller drives HAProxy (as the LXD
        # provider maps it into the state directory): root's only.
        socket = StatePaths(Path(HOME / ".relevo")).runtime_socket
        devices.append(
            ProxyDevice(
                "relevo-runtime",
                "HAProxy's Runtime API to the controller",
                f"unix:{socket}",
                f"unix:{HAProxyLayout.in_guest().runtime_socket}",
                (("mode", "0600"), ("uid", "0"), ("gid", "0")),
                str(socket.parent),
            )
        )
    return devices


def _copy_image(image: Path, into: Path) -> Path:
    ensure_dir(into)
    target = into / image.name
    if target.is_file() and not target.is_symlink() and target.stat().st_size == image.stat().st_size:
        return target  # already there (the tarball's name carries its recipe's hash)
    for old in into.iterdir():
        if old.name.endswith((".tar", ".tar.gz", ".tar.xz", ".tar.zst")) and not old.is_symlink():
            old.unlink()  # one image per export: the VM imports the first it finds
    tmp = into / f".{image.name}.tmp"
    try:
        with open_binary(image) as source, tmp.open("wb") as copy:
            shutil.copyfileobj(source, copy, 1 << 20)
        tmp.replace(target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise RelevoError(f"cannot copy {image} into {into}: {exc.strerror}") from None
    return target


def _ruby_string(value: object) -> str:
    text = str(value)
    if not SAFE_VALUE.match(text.replace(" ", "_")):
        raise ValueError(f"unsafe value for the Vagrantfile: {text!r}")
    return f'"{text}"'


def _shell_word(value: object) -> str:
    return shlex.quote(str(value))


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("relevo.vagrant", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 - a Vagrantfile and shell scripts, not HTML
    )
    env.filters["rb"] = _ruby_string
    env.filters["sh"] = _shell_word
    return env

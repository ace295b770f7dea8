"""`relevo export vagrant`: VMs follow the topology, bad options are refused before anything is written,
the stats credentials come from the state directory and are never printed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from relevo.cli import cli
from relevo.model import Role
from relevo.topology import default_text, parse_topology
from relevo.vagrant.plan import ExportSettingsError, VagrantSettings, plan_vms

CUSTOM = """\
name: shop
balancer: {name: front, frontend: {port: 9000}, stats: {port: 9001}}
nodes:
  alpha: {role: web, port: 8081}
  alphabck: {role: standby, standby_for: alpha, port: 8083}
"""


def write_topology(tmp_path: Path, text: str = CUSTOM) -> Path:
    path = tmp_path / "relevo.yaml"
    path.write_text(text)
    return path


def test_seed_topology_gets_the_seeds_addresses():
    """The built-in topology's five nodes get the seed's 192.168.100.2-.6, the balancer first."""
    topology = parse_topology(default_text(), source=None, state_dir=Path("/srv/.relevo"))
    vms = plan_vms(topology, VagrantSettings())
    assert [(vm.node, vm.address) for vm in vms] == [
        ("ha1", "192.168.100.2"),
        ("web1", "192.168.100.3"),
        ("web2", "192.168.100.4"),
        ("web1bck", "192.168.100.5"),
        ("web2bck", "192.168.100.6"),
    ]
    assert [vm.role for vm in vms] == [Role.BALANCER, Role.WEB, Role.WEB, Role.STANDBY, Role.STANDBY]
    assert len({vm.bridge_subnet for vm in vms}) == 5  # each VM's bridge its own subnet


def test_custom_topology_names_ports_and_network():
    """Names, roles and ports come from the topology, addresses from --network."""
    topology = parse_topology(CUSTOM, source=None, state_dir=Path("/srv/.relevo"))
    vms = plan_vms(topology, VagrantSettings(network="10.9.8.0/29", container_network="172.16.0.0/22"))
    assert [(vm.node, vm.role, vm.address, vm.port) for vm in vms] == [
        ("front", Role.BALANCER, "10.9.8.2", 9000),
        ("alpha", Role.WEB, "10.9.8.3", 8081),
        ("alphabck", Role.STANDBY, "10.9.8.4", 8083),
    ]
    assert [vm.container_address for vm in vms] == ["172.16.0.2", "172.16.1.2", "172.16.2.2"]


def test_balancer_vms_get_more_memory_than_web_vms(tmp_path: Path):
    """A pair's two balancer VMs get --balancer-memory (LXD, HAProxy, the controller and `relevo
    scenarios` run there), every web VM --memory; the Vagrantfile sets it on the balancers' VMs alone, and
    a --memory above --balancer-memory is every VM's."""
    pair = default_text().replace("  name: ha1\n", "  name: ha1\n  peer: ha2\n")
    topology = parse_topology(pair, source=None, state_dir=Path("/srv/.relevo"))
    vms = plan_vms(topology, VagrantSettings(memory_mib=768, balancer_memory_mib=1536))
    assert {vm.node: vm.memory_mib for vm in vms} == {
        "ha1": 1536,
        "web1": 768,
        "web2": 768,
        "web1bck": 768,
        "web2bck": 768,
        "ha2": 1536,
    }
    big = plan_vms(topology, VagrantSettings(memory_mib=2048, balancer_memory_mib=1536))
    assert {vm.memory_mib for vm in big} == {2048}
    out = tmp_path / "out"
    args = ["-f", str(write_topology(tmp_path, pair)), "export", "vagrant", str(out), "--memory", "768"]
    result = CliRunner().invoke(cli, [*args, "--balancer-memory", "1280", "--no-runtime"])
    assert result.exit_code == 0, result.output
    vagrantfile = (out / "Vagrantfile").read_text()
    assert "lv.memory = 768\n" in vagrantfile
    blocks = vagrantfile.split("config.vm.define ")[1:]
    with_more = [block.split()[0] for block in blocks if "lv.memory = 1280 }" in block]
    assert with_more == ['"ha1"', '"ha2"']


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (VagrantSettings(network="10.210.4.0/24"), "overlaps"),
        (VagrantSettings(network="10.0.0.0/30"), "too few addresses"),
        (VagrantSettings(network="fd00::/64"), "IPv4"),
        (VagrantSettings(network="10.0.0.1/24"), "host bits"),
        (VagrantSettings(container_network="172.16.0.0/24"), "too few /24"),
    ],
)
def test_bad_networks_are_refused(settings: VagrantSettings, message: str):
    """A network too small, overlapping, IPv6 or with host bits set is a clear error."""
    topology = parse_topology(default_text(), source=None, state_dir=Path("/srv/.relevo"))
    with pytest.raises(ExportSettingsError, match=message):
        plan_vms(topology, settings)


def test_cli_writes_and_never_prints_the_password(tmp_path: Path):
    """The export uses the state directory's credentials (haproxy.cfg 0600) and prints neither."""
    topology = write_topology(tmp_path)
    out = tmp_path / "out"
    for extra in ([], ["--json"]):
        result = CliRunner().invoke(cli, ["-f", str(topology), "export", "vagrant", str(out), *extra])
        assert result.exit_code == 0, result.output
        secrets = json.loads((tmp_path / ".relevo" / "secrets.json").read_text())
        assert secrets["stats_password"] not in result.output
    config = out / "files/front/etc/haproxy/haproxy.cfg"
    assert f"insecure-password {secrets['stats_password']}" in config.read_text()
    assert config.stat().st_mode & 0o777 == 0o600
    listed = json.loads(result.output)
    assert [vm["name"] for vm in listed["vms"]] == ["front", "alpha", "alphabck"]
    assert "server alpha 192.168.100.3:8081" in config.read_text()


@pytest.mark.parametrize(
    "args",
    [
        ["--network", "10.210.0.0/24"],
        ["--box", 'evil"#{`id`}'],
        ["--cpu-model", "a b"],
        ["--provider", "docker"],
        ["--memory", "12"],
        ["--balancer-memory", "100"],
    ],
)
def test_cli_bad_option_exits_2_and_writes_nothing(tmp_path: Path, args: list[str]):
    """A wrong option is exit status 2, one clear line, no traceback, and no directory written."""
    topology = write_topology(tmp_path)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["-f", str(topology), "export", "vagrant", str(out), *args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert not out.exists()


def test_symlinked_directory_is_refused(tmp_path: Path):
    """DIR that is a symbolic link is refused, not followed (relevo often runs as root)."""
    topology = write_topology(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "out").symlink_to(elsewhere)
    result = CliRunner().invoke(cli, ["-f", str(topology), "export", "vagrant", str(tmp_path / "out")])
    assert result.exit_code != 0
    assert list(elsewhere.iterdir()) == []


def test_image_is_shipped_and_uploaded(tmp_path: Path):
    """--image copies the tarball into DIR/image and every VM uploads it before provisioning."""
    topology = write_topology(tmp_path)
    tarball = tmp_path / "relevo-bookworm-abc.tar.zst"
    tarball.write_bytes(b"not really an image")
    out = tmp_path / "out"
    args = ["-f", str(topology), "export", "vagrant", str(out), "--image", str(tarball)]
    assert CliRunner().invoke(cli, args).exit_code == 0
    assert (out / "image" / tarball.name).read_bytes() == tarball.read_bytes()
    vagrantfile = (out / "Vagrantfile").read_text()
    assert vagrantfile.count('provision "file", source: "image"') == 3


def test_the_runtime_bundle_holds_every_library_the_vms_controller_imports():
    """Everything outside the standard library that `relevo watch` imports on the balancer's VM (the LXD
    provider, the controller, its metrics) is packed into the runtime bundle: the VM fetches nothing, and
    a missing prometheus_client made the VM's controller exit at start in the vagrant tier."""
    import subprocess
    import sys

    from relevo.vagrant.bundle import _members

    probe = (
        "import sys, relevo.cli, relevo.controller.daemon, relevo.controller.metrics, relevo.providers.lxd;"
        "print('\\n'.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    third_party = {name for name in loaded.stdout.split() if name not in sys.stdlib_module_names}
    # relevo itself, and the modules compiled (Cython) extensions register at import, not distributions.
    third_party -= {"relevo", "_distutils_hack", "__main__", "cython_runtime"}
    third_party = {name for name in third_party if not name.startswith("_cython_")}
    packed = {Path(member).parts[0].removesuffix(".py") for member in _members()}
    assert third_party - packed == set()

"""`relevo export vagrant` of a pair: a sixth VM for the second balancer, the VIP on the VMs' private
network (checked against it at the topology's line), keepalived on both balancer VMs, and a notify script
that runs each VM's controller only while its keepalived is MASTER."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from relevo.cli import cli
from relevo.model import Role
from relevo.topology import parse_topology
from relevo.vagrant.controller import load_or_create_credentials
from relevo.vagrant.export import vm_files
from relevo.vagrant.pair import NOTIFY, VRRP_STATE, export_vip, keepalived_vm_files, notify_script
from relevo.vagrant.plan import VagrantSettings, balancer_vms, plan_vms

PAIR = "name: duo\nbalancer: {name: ha1, peer: ha2}\n"
# An LXD pair (its own network and VIP) exported to VMs: the VIP written on line 4.
LXD_PAIR = """\
name: duo
provider: lxd
network: 10.204.7.0/24
balancer: {name: ha1, peer: ha2, vip: VIP}
"""


def topology_of(text: str):
    return parse_topology(text, source=Path("/srv/relevo.yaml"), state_dir=Path("/srv/.relevo"))


def test_the_second_balancer_is_a_sixth_vm_after_the_seeds_five():
    """ha2 is the sixth VM, .7, a balancer; the seed's five keep their addresses; the VIP is the .10."""
    topology = topology_of(PAIR)
    vms = plan_vms(topology, VagrantSettings())
    assert [(vm.node, vm.address) for vm in vms] == [
        ("ha1", "192.168.100.2"),
        ("web1", "192.168.100.3"),
        ("web2", "192.168.100.4"),
        ("web1bck", "192.168.100.5"),
        ("web2bck", "192.168.100.6"),
        ("ha2", "192.168.100.7"),
    ]
    assert [vm.node for vm in balancer_vms(vms)] == ["ha1", "ha2"]
    assert vms[-1].role is Role.BALANCER and vms[-1].port == vms[0].port
    assert export_vip(topology, vms) == "192.168.100.10"


def export(tmp_path: Path, text: str, *extra: str):
    path = tmp_path / "relevo.yaml"
    path.write_text(text)
    out = tmp_path / "out"
    args = ["-f", str(path), "export", "vagrant", str(out), "--no-runtime", *extra]
    return path, out, CliRunner().invoke(cli, args)


@pytest.mark.parametrize(
    ("vip", "extra", "message"),
    [
        (
            "10.204.7.10",
            (),
            "balancer.vip: 10.204.7.10 is outside the VMs' private network 192.168.100.0/24 (--network); "
            "expected a free host address of it, such as 192.168.100.10",
        ),
        (
            "10.204.7.39",
            ("--network", "10.204.7.32/27"),
            "balancer.vip: 10.204.7.39 is ha2's VM's address on 10.204.7.32/27; the shared address must be "
            "one no VM has",
        ),
    ],
)
def test_a_vip_outside_the_vms_network_or_on_a_vm_is_refused_at_its_line(tmp_path, vip, extra, message):
    """The VIP the file wrote, outside the VMs' network or equal to a VM's address: the file, line 4 and
    the column of the value, what was expected; exit 2, no traceback, nothing written."""
    path, out, result = export(tmp_path, LXD_PAIR.replace("VIP", vip), *extra)
    assert result.exit_code == 2, result.output
    column = LXD_PAIR.splitlines()[3].index("VIP") + 1
    assert f"{path}:4:{column}: {message}" in result.output
    assert "Traceback" not in result.output
    assert not out.exists()


def test_a_vip_of_the_vms_network_is_kept(tmp_path):
    """A VIP the file wrote inside --network, on no VM, is the one keepalived moves."""
    _, out, result = export(tmp_path, LXD_PAIR.replace("VIP", "10.204.7.50"), "--network", "10.204.7.32/27")
    assert result.exit_code == 0, result.output
    config = (out / "vmfiles/ha2/etc/keepalived/keepalived.conf").read_text()
    assert "10.204.7.50/27 dev eth1" in config


def test_each_balancer_vm_gets_its_side_of_the_pair():
    """ha1 and ha2 name themselves and each other (unicast on the private network), the first has the
    higher priority, the VIP is on eth1, the notify script is called; `failback: true` drops nopreempt."""
    for text, preempt in ((PAIR, False), (PAIR.replace("peer: ha2", "peer: ha2, failback: true"), True)):
        topology = topology_of(text)
        vms = plan_vms(topology, VagrantSettings())
        first, second = balancer_vms(vms)
        ha1, ha2 = (
            keepalived_vm_files(topology, vms, vm, "relevo-watch-duo.service")[0].content
            for vm in (first, second)
        )
        assert "unicast_src_ip 192.168.100.2" in ha1 and "unicast_peer {\n        192.168.100.7\n" in ha1
        assert "unicast_src_ip 192.168.100.7" in ha2 and "unicast_peer {\n        192.168.100.2\n" in ha2
        assert "priority 150" in ha1 and "priority 100" in ha2
        for config in (ha1, ha2):
            assert "interface eth1" in config and "192.168.100.10/24 dev eth1" in config
            assert f"notify {NOTIFY}" in config and "version 3" in config
            assert ("\n    nopreempt\n" in config) is not preempt


def merged_list(texts: list[str], key: str) -> set[str]:
    """A list setting of a unit and its drop-ins, in order, as systemd merges it (an empty one resets)."""
    found: set[str] = set()
    for text in texts:
        for line in text.splitlines():
            if line.startswith(f"{key}="):
                value = line.split("=", 1)[1].split()
                found = found | set(value) if value else set()
    return found


def test_the_controllers_unit_may_read_the_nic_and_probe_the_vip(tmp_path: Path):
    """On a pair's balancer VM the controller's unit, with its drop-ins merged as systemd merges them,
    allows the netlink and packet sockets and CAP_NET_RAW its charge check needs (the NIC's addresses, an
    ARP probe for the VIP): the unit alone allows neither, and the controller then stood by for good."""
    topology = topology_of(PAIR)
    vms = plan_vms(topology, VagrantSettings())
    credentials = load_or_create_credentials(tmp_path, vms)
    for vm in balancer_vms(vms):
        files = {str(f.path): f.content for f in vm_files(topology, vm, vms, credentials)}
        unit = next(path for path in files if path.endswith(".service"))
        texts = [files[unit], *(files[p] for p in sorted(files) if p.startswith(f"{unit}.d/"))]
        families = merged_list(texts, "RestrictAddressFamilies")
        assert {"AF_NETLINK", "AF_PACKET", "AF_INET", "AF_UNIX"} <= families
        assert merged_list(texts, "CapabilityBoundingSet") == {"CAP_NET_RAW"}


def run_notify(tmp_path: Path, state: str) -> tuple[str, str]:
    """The notify script as keepalived calls it (INSTANCE relevo STATE PRIORITY), with its state file in
    tmp_path and a systemctl that records its arguments: (what it wrote, what systemctl was asked)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    calls = tmp_path / "systemctl.args"
    fake = bin_dir / "systemctl"
    fake.write_text(f'#!/bin/sh\necho "$*" >>{calls}\n')
    fake.chmod(0o755)
    state_file = tmp_path / "vrrp-state"
    script = tmp_path / "notify"
    script.write_text(notify_script("relevo-watch-duo.service").replace(str(VRRP_STATE), str(state_file)))
    script.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    subprocess.run([str(script), "INSTANCE", "relevo", state, "100"], env=env, check=True, timeout=30)
    asked = calls.read_text().splitlines()[-1]
    return state_file.read_text().strip(), asked


@pytest.mark.parametrize(
    ("state", "asked"),
    [
        ("MASTER", "start --no-block relevo-watch-duo.service"),
        ("BACKUP", "stop --no-block relevo-watch-duo.service"),
        ("FAULT", "stop --no-block relevo-watch-duo.service"),
        ("STOP", "stop --no-block relevo-watch-duo.service"),
    ],
)
def test_the_notify_script_runs_the_controller_only_while_master(tmp_path, state, asked):
    """MASTER starts the VM's controller, every other state stops it; the state is left for the
    controller's own look (controller/acting.py)."""
    assert run_notify(tmp_path, state) == (state, asked)


def test_shellcheck_accepts_the_notify_script(tmp_path):
    """The notify script is a clean shell script, as every generated script."""
    exe = shutil.which("shellcheck")
    assert exe, "shellcheck is missing: scripts/bootstrap --dev installs it"
    path = tmp_path / "relevo-vrrp-notify"
    path.write_text(notify_script("relevo-watch-duo.service"))
    result = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout

"""The controller on the balancer's VM: the topology it reads, the LXD remotes and certificates it uses,
and relevo packed for a VM that has only Python."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import tarfile
from pathlib import Path

import yaml

from relevo.lxd.remotes import endpoint_for
from relevo.topology import default_text, parse_topology
from relevo.vagrant.bundle import write_bundle
from relevo.vagrant.controller import (
    LXC_CONF,
    balancer_vm_files,
    controller_topology,
    load_or_create_credentials,
    remote_vm_files,
)
from relevo.vagrant.plan import VagrantSettings, plan_vms

CUSTOM = """\
name: shop
health: {interval: 400ms, rise: 3}
controller: {tick: 200ms}
balancer: {name: front, frontend: {port: 9000}, stats: {port: 9001}}
nodes:
  alpha: {role: web, port: 8081, capacity: {workers: 50}}
  alphabck: {role: standby, standby_for: alpha, port: 8083}
"""


def test_controller_topology_keeps_settings_and_puts_each_node_on_its_vm():
    """The VM's topology keeps every setting, probes each node at its VM's address and reaches it
    through an LXD remote named after it, with the LXD provider."""
    topology = parse_topology(CUSTOM, source=None, state_dir=Path("/srv/.relevo"))
    vms = plan_vms(topology, VagrantSettings(network="10.9.8.0/29", container_network="172.16.0.0/22"))
    vm_topology = controller_topology(topology, vms)
    assert [(n.name, n.provider, n.address, n.port, dict(n.options)) for n in vm_topology.nodes] == [
        ("alpha", "lxd", "10.9.8.3", 8081, {"remote": "alpha"}),
        ("alphabck", "lxd", "10.9.8.4", 8083, {"remote": "alphabck"}),
    ]
    assert vm_topology.health == topology.health and vm_topology.health.rise == 3
    assert vm_topology.controller.tick_s == 0.2
    # A VM's container answers seconds after its start: the standby's start is given a minute.
    assert vm_topology.controller.start_timeout_s == 60.0
    assert vm_topology.node("alpha").capacity.workers == 50
    assert vm_topology.balancer.provider == "lxd"
    assert str(vm_topology.state_dir) == "/var/lib/relevo-controller/.relevo"


def test_remotes_resolve_with_the_generated_certificates(tmp_path: Path, monkeypatch):
    """The lxc configuration written for the balancer's VM names each web VM's LXD over HTTPS, pins the
    certificate that VM's LXD is given, and authenticates with the controller's (0600) key."""
    topology = parse_topology(default_text(), source=None, state_dir=tmp_path / ".relevo")
    vms = plan_vms(topology, VagrantSettings())
    credentials = load_or_create_credentials(tmp_path / "creds", vms)
    again = load_or_create_credentials(tmp_path / "creds", vms)
    assert again == credentials  # made once, reused
    assert (tmp_path / "creds" / "controller.key").stat().st_mode & 0o777 == 0o600
    root = tmp_path / "vm"
    for file in balancer_vm_files(topology, vms, credentials):
        target = root / str(file.path).lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(file.content)
    monkeypatch.setenv("LXD_CONF", str(root / str(LXC_CONF).lstrip("/")))
    endpoint = endpoint_for("web1bck")
    assert endpoint.url == "https://192.168.100.5:8443"
    assert endpoint.server_cert is not None
    web1bck = vms[3]
    given = {str(f.path): f for f in remote_vm_files(web1bck, credentials)}
    assert endpoint.server_cert.read_text() == given["/etc/relevo/lxd/server.crt"].content
    assert given["/etc/relevo/lxd/server.key"].mode == 0o600
    assert given["/etc/relevo/lxd/controller.crt"].content == credentials.controller.cert
    # A real certificate and key pair each (the server's carries the VM's address).
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "creds" / "web1bck.crt", tmp_path / "creds" / "web1bck.key")
    assert credentials.servers["web1bck"].fingerprint != credentials.servers["web1"].fingerprint
    unit = next(f for f in balancer_vm_files(topology, vms, credentials) if f.path.name == "lxd.conf")
    assert f"LXD_CONF={LXC_CONF}" in unit.content
    config = yaml.safe_load((root / str(LXC_CONF).lstrip("/") / "config.yml").read_text())
    assert sorted(config["remotes"]) == ["web1", "web1bck", "web2", "web2bck"]


def test_runtime_bundle_runs_relevo_with_a_bare_python(tmp_path: Path):
    """The packed runtime runs `relevo` with only a Python interpreter and PYTHONPATH (no site-packages,
    no pip), and packs to the same bytes twice (the VM reinstalls only on a change)."""
    bundle = write_bundle(tmp_path / "runtime")
    first = bundle.read_bytes()
    assert write_bundle(tmp_path / "runtime").read_bytes() == first
    with tarfile.open(bundle) as tar:
        tar.extractall(tmp_path / "opt", filter="data")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(tmp_path / "opt" / "lib")}
    # -S: no site-packages at all, only the standard library and the bundle.
    where = subprocess.run(
        [sys.executable, "-S", "-c", "import relevo, yaml, jinja2, click, rich; print(relevo.__file__)"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert where.returncode == 0, where.stderr
    assert where.stdout.startswith(str(tmp_path / "opt" / "lib"))
    result = subprocess.run(
        [sys.executable, "-S", "-m", "relevo", "render", "systemd"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "ExecStart=" in result.stdout
    version = (tmp_path / "opt" / "python-version").read_text().strip()
    assert version == f"{sys.version_info[0]}.{sys.version_info[1]}"

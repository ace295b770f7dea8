"""`relevo doctor`'s address and port checks: a port another process holds is named with that process and
the command that frees it; an LXD bridge subnet that overlaps a route of this host, a container name or a
node address another instance holds are each reported with the edit or command that fixes it."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from relevo import doctor, doctor_addresses
from relevo.cli import cli
from relevo.cluster import Cluster
from relevo.lxd.client import Instance
from relevo.model import Endpoint
from relevo.port_holders import describe_holder, holders, listening_inodes
from relevo.preflight import bind_problem
from relevo.providers import lxd_doctor
from relevo.providers.lxd import OWNER_KEY, LXDProvider
from relevo.topology import parse_topology

# A loopback /24 of its own, so no other test's listeners are in the way.
NET = f"127.{90 + os.getpid() % 30}.{os.getpid() % 250}"


@contextlib.contextmanager
def listening(address: str) -> Iterator[int]:
    """A socket of this process listening on `address` at a free port."""
    with socket.socket() as server:
        server.bind((address, 0))
        server.listen()
        yield server.getsockname()[1]


def test_the_holder_of_a_port_is_the_process_that_listens_on_it() -> None:
    """holders() finds this very process listening, by its socket's inode; nothing on a free port."""
    with listening(f"{NET}.2") as port:
        assert [h.pid for h in holders(f"{NET}.2", port)] == [os.getpid()]
        assert describe_holder(f"{NET}.2", port).startswith(f"PID {os.getpid()} (")
    assert holders(f"{NET}.2", port) == []


TCP_TABLE = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt uid timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111
   1: 0100007F:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 222
   2: 0100007F:1F92 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 333
"""


def test_a_listener_on_every_address_holds_the_port_on_each(tmp_path: Path) -> None:
    """From the kernel's table: 0.0.0.0:8080 holds 8080 on every address, 127.0.0.1:8081 only its own
    address, and an established connection holds nothing."""
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "tcp").write_text(TCP_TABLE)
    assert listening_inodes("127.0.0.9", 8080, tmp_path) == {111}
    assert listening_inodes("127.0.0.1", 8081, tmp_path) == {222}
    assert listening_inodes("127.0.0.9", 8081, tmp_path) == set()
    assert listening_inodes("127.0.0.1", 8082, tmp_path) == set()


def test_up_s_port_check_names_the_process_in_the_way() -> None:
    """The check `relevo up` makes before starting anything says which process holds the port."""
    with listening(f"{NET}.2") as port:
        problem = bind_problem(Endpoint(address=f"{NET}.2", port=port))
    assert problem is not None and f"in use by PID {os.getpid()} (" in problem


def local_topology(tmp_path: Path, port: int) -> Path:
    (tmp_path / "relevo.yaml").write_text(
        f"network: {NET}.0/24\nbalancer: {{frontend: {{port: {port}}}, stats: {{port: {port + 1}}}}}\n"
    )
    return tmp_path / "relevo.yaml"


def test_doctor_names_the_process_holding_a_port_and_the_command_that_frees_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A frontend port held by another process: the check fails (exit 1), names the PID and its
    command, and the fix is `kill PID` or another port in the topology file; free ports are ok."""
    monkeypatch.setattr(doctor, "run_checks", lambda **_: [])
    with listening(f"{NET}.2") as port:
        if port > 65000:
            pytest.skip("the kernel gave a port too high for the stats port beside it")
        source = local_topology(tmp_path, port)
        result = CliRunner().invoke(cli, ["doctor", "--json", "-f", str(source)])
    assert result.exit_code == 1, result.output
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    frontend = checks["ha1 frontend"]
    assert frontend["ok"] is False
    assert f"{NET}.2:{port} is already in use by PID {os.getpid()} (" in frontend["detail"]
    assert frontend["fix"] == f"kill {os.getpid()}, or give ha1 frontend another address or port in {source}"
    assert checks["ha1 stats"]["ok"] is True and checks["ha1 stats"]["detail"] == f"{NET}.2:{port + 1} free"
    assert {checks[n]["ok"] for n in ("web1", "web2", "web1bck", "web2bck")} == {True}


def lxd_provider(tmp_path: Path, network: str = "10.213.240.0/24") -> LXDProvider:
    text = f"name: doc\nprovider: lxd\nnetwork: {network}\n"
    topology = parse_topology(text, source=tmp_path / "relevo.yaml", state_dir=tmp_path / ".relevo")
    return LXDProvider(topology)


def test_a_bridge_subnet_on_a_route_of_this_host_is_refused_with_a_free_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The subnet relevo would bridge overlaps a host route: fail, naming the route's device, and
    suggest a subnet free here; the cluster's own bridge is not a clash."""
    provider = lxd_provider(tmp_path)
    route = ipaddress.IPv4Network("10.213.240.0/24")
    monkeypatch.setattr(lxd_doctor, "host_routes", lambda: [(route, "eth7")])
    monkeypatch.setattr(lxd_doctor, "free_subnet", lambda: ipaddress.IPv4Network("10.213.3.0/24"))
    check = lxd_doctor.subnet_check(provider, "relevo.yaml")
    assert not check.ok
    assert check.detail == "10.213.240.0/24 overlaps this host's route to 10.213.240.0/24 (dev eth7)"
    assert check.fix == "set `network: 10.213.3.0/24` in relevo.yaml (free on this host)"
    monkeypatch.setattr(lxd_doctor, "host_routes", lambda: [(route, provider.network_name)])
    assert lxd_doctor.subnet_check(provider, "relevo.yaml").ok


def instance(name: str, owner: str = "", address: str = "") -> Instance:
    return Instance(
        name=name,
        status="Running",
        status_code=103,
        config={OWNER_KEY: owner} if owner else {},
        addresses={"eth0": (address,)} if address else {},
    )


def test_names_and_addresses_other_instances_hold_are_named(tmp_path: Path) -> None:
    """An instance not this cluster's with a node's container name, or a node's address, fails the
    check with the instance named; this cluster's own containers are fine."""
    provider = lxd_provider(tmp_path)
    nodes = list(provider.topology.node_names)
    found = [
        instance("doc-web1", owner="someone-else"),
        instance("other", address="10.213.240.4"),
        instance("doc-ha1", owner=provider.owner, address="10.213.240.2"),
    ]
    checks = {c.name: c for c in lxd_doctor.instance_checks(provider, nodes, found, "lxd", "f.yaml")}
    assert not checks["LXD names"].ok
    assert checks["LXD names"].detail.startswith("doc-web1 on lxd already exist")
    assert checks["LXD names"].fix == "lxc delete doc-web1  (or set another `name:` in f.yaml)"
    assert not checks["LXD addresses"].ok
    assert checks["LXD addresses"].detail == "on lxd: 10.213.240.4 (web2) by instance other"
    clean = lxd_doctor.instance_checks(provider, nodes, found[2:], "lxd", "f.yaml")
    assert all(c.ok for c in clean)


def test_a_remote_lxc_does_not_know_is_named_once_with_the_command_that_adds_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two nodes on a remote missing from lxc's configuration: one failed check, naming the remote and
    `lxc remote add NAME https://HOST:8443`."""
    monkeypatch.setenv("LXD_CONF", str(tmp_path / "lxc"))
    text = (
        "name: doc\nprovider: lxd\nnetwork: 10.213.240.0/24\nnodes:\n"
        "  web1: {role: web, options: {remote: far, network: br0}}\n"
        "  web2: {role: web, options: {remote: far, network: br0}}\n"
    )
    topology = parse_topology(text, source=tmp_path / "relevo.yaml", state_dir=tmp_path / ".relevo")
    provider = LXDProvider(topology)
    checks = provider.doctor_checks(["web1", "web2"], "f.yaml")
    remotes = [c for c in checks if c.name == "LXD remote"]
    assert len(remotes) == 1 and not remotes[0].ok
    assert "LXD remote 'far'" in remotes[0].detail
    assert remotes[0].fix == "lxc remote add far https://HOST:8443"


def test_doctor_asks_each_provider_for_its_checks_and_names_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """doctor_addresses and the doctor command import no provider and test no provider's name: each
    provider that has checks of its own (`Doctoring`, LXD's here) is asked for them once, with its nodes."""
    import inspect

    from relevo.cli import doctor as cli_doctor
    from relevo.providers.base import Doctoring

    for module in (doctor_addresses, cli_doctor):
        code = inspect.getsource(module)
        assert "relevo.providers.lxd" not in code and '"lxd"' not in code, module.__name__
    provider = lxd_provider(tmp_path)
    assert isinstance(provider, Doctoring)
    asked: list[tuple[str, ...]] = []

    def record(nodes, where):
        asked.append(tuple(nodes))
        return []

    monkeypatch.setattr(provider, "doctor_checks", record)
    monkeypatch.setattr(Cluster, "provider_for", lambda self, node: provider)
    doctor_addresses.topology_checks(provider.topology)
    assert asked == [tuple(provider.topology.node_names)]

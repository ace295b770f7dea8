"""An LXD pair: what each balancer container is made with and what goes into it (no daemon needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import pytest

from relevo.model import Topology
from relevo.paths import StatePaths
from relevo.providers.lxd_guest import ANY, PAIR_RESTART, GuestServices, keepalived_files
from relevo.providers.lxd_rules import check_topology
from relevo.providers.lxd_setup import NIC, balancer_nic, balancer_proxies
from relevo.services import NodeFile
from relevo.topology import parse_topology

PAIR = "provider: lxd\nnetwork: 10.205.7.0/24\nbalancer: {peer: ha2, vip: 10.205.7.10}\n"


@pytest.fixture
def pair(short_tmp: Path) -> Topology:
    """The pair, its state directory in a short_tmp: balancer_proxies refuses a Runtime API socket path
    past AF_UNIX's limit, which pytest's tmp_path (longer under pytest-xdist) may exceed."""
    return parse_topology(PAIR, source=None, state_dir=short_tmp / ".relevo")


def test_the_pairs_frontend_is_the_vip(pair):
    """Both balancers of an LXD pair serve the frontend at the VIP (the host reaches it through the
    bridge); the lxd rules accept that, and each stats page stays on its own loopback address."""
    topology = pair
    assert [b.frontend.address for b in topology.balancers] == ["10.205.7.10", "10.205.7.10"]
    assert [b.stats.address for b in topology.balancers] == ["127.205.7.2", "127.205.7.3"]
    assert check_topology(topology) == []


def test_each_balancer_has_its_own_stats_and_runtime_proxies_and_no_frontend_proxy(pair):
    """ha1's and ha2's proxy devices: stats on their own loopback address, the Runtime API socket at the
    path the controller reads for that balancer, and no frontend proxy (it could not follow the VIP)."""
    topology = pair
    paths = StatePaths(topology.state_dir)
    ha1 = balancer_proxies(topology, paths, "ha1")
    ha2 = balancer_proxies(topology, paths, "ha2")
    assert sorted(ha1) == sorted(ha2) == ["relevo-log", "relevo-runtime", "relevo-stats"]
    assert ha1["relevo-stats"]["listen"] == "tcp:127.205.7.2:8404"
    assert ha2["relevo-stats"]["connect"] == "tcp:10.205.7.3:8404"
    assert ha1["relevo-runtime"]["listen"] != ha2["relevo-runtime"]["listen"]
    assert ha2["relevo-runtime"]["listen"].endswith("/balancers/ha2/admin.sock")


def test_the_balancer_nic_lets_the_vip_through():
    """The balancer NIC has IPv4 filtering off (on, LXD drops the ARP of the address keepalived adds)."""
    nic = balancer_nic("rlvbr")
    assert nic["security.ipv4_filtering"] == "false"
    assert (nic["parent"], nic["name"]) == ("rlvbr", NIC)


def test_each_balancer_gets_keepalived_its_checker_and_a_delayed_haproxy_restart(pair):
    """A pair's balancer gets its own keepalived.conf (unicast to the other), the checker as an
    executable, and HAProxy's unit restarts only after the takeover (RestartSec), so systemd does not
    race keepalived; keepalived is ordered after HAProxy, so a stopping container releases the VIP before
    HAProxy stops listening; HAProxy listens on every address (the VIP moves on and
    off its NIC)."""
    topology = pair
    files = {str(f.path): f for f in keepalived_files(topology, "ha2", NIC)}
    conf = files["/etc/keepalived/keepalived.conf"].content
    assert "unicast_src_ip 10.205.7.3" in conf and "10.205.7.2\n" in conf
    assert files["/usr/local/sbin/relevo-haproxy-check"].mode == 0o755
    dropin = files["/etc/systemd/system/keepalived.service.d/relevo.conf"].content.splitlines()
    assert {"After=relevo-haproxy-check.service", "After=haproxy.service"} <= set(dropin)
    assert PAIR_RESTART == "RestartSec=2s\n"
    binds = GuestServices(topology, host=None)._guest_binds("ha2")  # type: ignore[arg-type]
    assert (binds.frontend.address, binds.stats.address) == (ANY, ANY)


def test_both_balancers_send_their_request_log_to_the_one_receiver(pair):
    """Each balancer's HAProxy logs to UDP on its container's loopback; a proxy device bound in the
    container carries it to the dashboard's one receiver on this host (the first stats address, the
    dashboard's port number): UDP, as LXD's proxy carries unix sockets as streams only."""
    topology = pair
    paths = StatePaths(topology.state_dir)
    for name in ("ha1", "ha2"):
        device = balancer_proxies(topology, paths, name)["relevo-log"]
        assert device == {
            "type": "proxy",
            "listen": "udp:127.0.0.1:5140",
            "connect": f"udp:127.205.7.2:{topology.dashboard.port}",
            "bind": "instance",
        }


class GuestFiles:
    """The host seam of GuestServices, in memory: each node's files, and the commands run in it."""

    def __init__(self) -> None:
        self.files: dict[tuple[str, PurePosixPath], str] = {}
        self.ran: list[tuple[str, ...]] = []

    def read_file(self, node: str, path: PurePosixPath) -> str:
        return self.files.get((node, path), "")

    def put_files(
        self, node: str, files: Sequence[NodeFile], *, directories: Sequence[PurePosixPath] = ()
    ) -> None:
        self.files.update({(node, f.path): f.content for f in files})

    def run(self, node: str, argv: list[str], *, what: str) -> str:
        self.ran.append((node, *argv))
        return ""


def test_an_edited_failback_reloads_the_running_balancers_keepalived_only(short_tmp):
    """`relevo up` again after `balancer.failback` changed: ha1's keepalived.conf is rewritten without
    `nopreempt`, checked with `keepalived -t` in the guest, and keepalived (not HAProxy, whose config is
    the same) is the unit to reload; unchanged, nothing is checked or reloaded."""
    state = short_tmp / ".relevo"
    host = GuestFiles()
    first = GuestServices(parse_topology(PAIR, source=None, state_dir=state), host)  # type: ignore[arg-type]
    assert first.install("ha1", check=True) == ["haproxy.service", "keepalived.service"]
    assert first.install("ha1", check=True) == []
    host.ran.clear()
    edited = PAIR.replace("vip: 10.205.7.10}", "vip: 10.205.7.10, failback: true}")
    guest = GuestServices(parse_topology(edited, source=None, state_dir=state), host)  # type: ignore[arg-type]
    assert guest.install("ha1", check=True) == ["keepalived.service"]
    conf = PurePosixPath("/etc/keepalived/keepalived.conf")
    assert "nopreempt" not in host.files["ha1", conf]
    assert host.ran == [("ha1", "keepalived", "-t", "-f", str(conf))]
    host.ran.clear()
    guest.reload("ha1", ["keepalived.service"])
    assert host.ran == [("ha1", "systemctl", "reload", "keepalived.service")]

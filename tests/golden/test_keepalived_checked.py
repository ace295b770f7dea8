"""Every rendered keepalived.conf is accepted by the real keepalived (`keepalived -t -f FILE`), and the
checker script by shellcheck; the settings that make a takeover fast are in each."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from relevo.render.keepalived import render_checker, render_keepalived
from relevo.topology import parse_topology

PAIRS = {
    "defaults": "balancer: {peer: ha2, vip: 10.205.3.10}",
    "failback": "balancer: {name: lb1, peer: lb2, vip: 10.205.3.200, failback: true, advert: 1s}",
    "tuned": "balancer: {peer: ha2, vip: 10.205.3.9, router_id: 255, advert: 10ms, "
    "peer_address: 10.205.3.77}",
}


def topology(extra: str):
    text = f"provider: lxd\nnetwork: 10.205.3.0/24\n{extra}\n"
    return parse_topology(text, source=None, state_dir=Path("/srv/.relevo"))


def keepalived_check(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("keepalived", path="/usr/sbin:/usr/bin:/sbin")
    if exe is None:
        pytest.fail("keepalived is not installed: scripts/bootstrap --dev installs it")
    path = tmp_path / "keepalived.conf"
    path.write_text(text)
    return subprocess.run([exe, "-t", "-f", str(path)], capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("case", sorted(PAIRS))
@pytest.mark.parametrize("which", [0, 1])
def test_keepalived_accepts_each_balancers_config(tmp_path, case, which):
    """`keepalived -t` accepts the config of either balancer of each pair, with no warning."""
    pair = topology(PAIRS[case])
    balancer = pair.balancers[which]
    result = keepalived_check(tmp_path, render_keepalived(pair, balancer.name, interface="eth0"))
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


def test_keepalived_t_rejects_a_broken_config(tmp_path):
    """The check is real: the same config with VRRP version 7 is refused (so a bad render fails)."""
    text = render_keepalived(topology(PAIRS["defaults"]), "ha1", interface="eth0")
    result = keepalived_check(tmp_path, text.replace("version 3", "version 7"))
    assert result.returncode != 0


def test_the_config_is_unicast_vrrp3_with_fast_adverts_and_a_tracked_haproxy():
    """Each balancer names itself and its peer (unicast), VRRP v3, the sub-second advert, the VIP with the
    network's prefix, HAProxy tracked by file, and the first balancer the higher priority."""
    pair = topology(PAIRS["defaults"])
    ha1 = render_keepalived(pair, "ha1", interface="eth0")
    ha2 = render_keepalived(pair, "ha2", interface="eth0")
    assert "unicast_src_ip 10.205.3.2" in ha1 and "unicast_peer {\n        10.205.3.3\n" in ha1
    assert "unicast_src_ip 10.205.3.3" in ha2 and "unicast_peer {\n        10.205.3.2\n" in ha2
    for text in (ha1, ha2):
        assert "version 3" in text and "advert_int 0.10" in text
        assert "10.205.3.10/24 dev eth0" in text
        assert "track_file {\n        haproxy_alive" in text
        assert "state BACKUP" in text and "nopreempt" in text
    assert "priority 150" in ha1 and "priority 100" in ha2


def test_failback_drops_nopreempt():
    """`failback: true`: the returning balancer may take the address back, so no `nopreempt`."""
    text = render_keepalived(topology(PAIRS["failback"]), "lb2", interface="eth0")
    assert "nopreempt" not in text.replace("# ", "")
    assert "advert_int 1.00" in text


def test_not_a_pair_is_refused():
    """Only a balancer of a pair with a VIP gets a keepalived config."""
    with pytest.raises(ValueError, match="no balancer pair"):
        render_keepalived(topology(""), "ha1", interface="eth0")
    with pytest.raises(ValueError, match="not a balancer"):
        render_keepalived(topology(PAIRS["defaults"]), "web1", interface="eth0")


def test_shellcheck_accepts_the_checker(tmp_path):
    """The track_file checker is a clean shell script (shellcheck, as for every generated script)."""
    exe = shutil.which("shellcheck")
    if exe is None:
        pytest.fail("shellcheck is not installed: scripts/bootstrap --dev installs it")
    path = tmp_path / "relevo-haproxy-check"
    path.write_text(render_checker(topology(PAIRS["defaults"])))
    result = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("failback", [False, True])
@pytest.mark.parametrize("which", [0, 1])
def test_keepalived_accepts_each_balancer_vms_config(tmp_path, failback, which):
    """`relevo export vagrant` of a pair: keepalived -t accepts each balancer VM's config (its private NIC,
    eth1 on the VMs, named as one this machine has: keepalived -t refuses an interface that is missing)."""
    from relevo.vagrant.pair import PRIVATE_NIC, keepalived_vm_files
    from relevo.vagrant.plan import VagrantSettings, balancer_vms, plan_vms

    text = "balancer: {peer: ha2, failback: true}" if failback else "balancer: {peer: ha2}"
    pair = parse_topology(text, source=None, state_dir=Path("/srv/.relevo"))
    vms = plan_vms(pair, VagrantSettings())
    config = keepalived_vm_files(pair, vms, balancer_vms(vms)[which], "relevo-watch.service")[0].content
    result = keepalived_check(tmp_path, config.replace(f" {PRIVATE_NIC}\n", " eth0\n"))
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr

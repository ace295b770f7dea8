"""A VM pair's controller acts only while its balancer is in charge: the charge it looks at before every
tick's actions (keepalived's word, the VIP on the NIC, a peer answering ARP for the VIP) decides whether
web1's death is acted on, in both orders of a takeover and a hand-over and in a split brain; each change
of the verdict is journalled with its reason."""

from __future__ import annotations

import json
import socket
import struct
from pathlib import Path

import pytest

from relevo.controller import nic
from relevo.controller.acting import Charge, ChargeSeen, in_charge
from relevo.controller.charge import ChargeSettings, ChargeWatch, load_settings, read_word
from relevo.controller.loop import Controller
from relevo.errors import RelevoError
from relevo.providers.base import NodeState

from .fakes import World, controller, events, run, topology

VIP = "192.168.100.10"


class Keepalived:
    """What one balancer VM shows: keepalived's last word and whether its NIC carries the VIP."""

    def __init__(self) -> None:
        self.word: str | None = None
        self.vip = False
        self.peer_claims = False

    def __call__(self, *, first: bool = True) -> Charge:
        seen = ChargeSeen(word=self.word, carries_vip=self.vip, peer_claims=self.peer_claims)
        return in_charge(seen, first=first)


@pytest.fixture
def topo(tmp_path: Path):
    return topology(tmp_path)


def web1_dies_under(topo, charge) -> tuple[World, Controller]:
    """A controller with `charge`, web1 stopped after it settled."""
    world = World.seed(topo)
    ctl = controller(topo, world)
    ctl.charge = charge
    return world, ctl


@pytest.mark.parametrize("order", ["word first", "address first"])
def test_a_takeover_fails_web1_over_only_once_both_word_and_vip_are_there(topo, order):
    """web1 dies while this balancer is BACKUP: nothing is started; keepalived's MASTER and the VIP on the
    NIC come in either order, and only with both does web1bck start."""
    keepalived = Keepalived()
    keepalived.word = "BACKUP"
    world, ctl = web1_dies_under(topo, keepalived)
    run(world, ctl, 1)
    world.nodes["web1"].process = NodeState.STOPPED
    run(world, ctl, 2)
    assert world.starts["web1bck"] == 0, "acted while BACKUP"
    if order == "word first":
        keepalived.word = "MASTER"
    else:
        keepalived.vip = True
    run(world, ctl, 2)
    assert world.starts["web1bck"] == 0, f"acted with only one sign ({order})"
    keepalived.word, keepalived.vip = "MASTER", True
    run(world, ctl, 2)
    assert world.starts["web1bck"] == 1
    moves = [(e["from"], e["to"]) for e in events(topo, "controller") if e["to"] in ("acting", "standing by")]
    assert moves[0] == ("starting", "standing by") and moves[-1] == ("standing by", "acting")


@pytest.mark.parametrize("order", ["address first", "word first"])
def test_a_hand_over_stops_acting_at_the_first_sign_in_either_order(topo, order):
    """In charge, then the VIP gone (word still MASTER) or the word BACKUP (VIP still on the NIC): web1's
    death is left to the peer, and the journal says why."""
    keepalived = Keepalived()
    keepalived.word, keepalived.vip = "MASTER", True
    world, ctl = web1_dies_under(topo, keepalived)
    run(world, ctl, 1)
    if order == "address first":
        keepalived.vip = False
    else:
        keepalived.word = "BACKUP"
    world.nodes["web1"].process = NodeState.STOPPED
    run(world, ctl, 3)
    assert world.starts["web1bck"] == 0
    standing = [e for e in events(topo, "controller") if e["to"] == "standing by"]
    assert standing and standing[-1]["from"] == "acting"
    assert ("not on this VM's NIC" if order == "address first" else "keepalived says BACKUP") in standing[-1][
        "reason"
    ]


@pytest.mark.parametrize(("first", "acts"), [(True, True), (False, False)])
def test_in_a_split_brain_only_the_first_balancer_acts(topo, first, acts):
    """Both MASTER with the VIP, each seeing the other answer ARP for it: the first balancer's controller
    fails web1 over, the second's does not."""
    keepalived = Keepalived()
    keepalived.word, keepalived.vip, keepalived.peer_claims = "MASTER", True, True
    world, ctl = web1_dies_under(topo, lambda: keepalived(first=first))
    run(world, ctl, 1)
    world.nodes["web1"].process = NodeState.STOPPED
    run(world, ctl, 3)
    assert (world.starts["web1bck"] == 1) is acts
    assert "split brain" in ctl.last_snapshot["charge"]["why"]


def test_without_a_charge_the_controller_acts_as_it_always_did(topo):
    """No charge (one balancer, LXD's host controller): web1's death is acted on, nothing journalled."""
    world, ctl = web1_dies_under(topo, None)
    run(world, ctl, 1)
    world.nodes["web1"].process = NodeState.STOPPED
    run(world, ctl, 2)
    assert world.starts["web1bck"] == 1
    assert "charge" not in ctl.last_snapshot


# --- the watch: what it reads ------------------------------------------------------------------------
class FakeClaims:
    def __init__(self) -> None:
        self.probes = 0
        self.answers: list[bool] = []

    def probe(self) -> None:
        self.probes += 1

    def heard(self) -> bool:
        return self.answers.pop(0) if self.answers else False

    def close(self) -> None:
        pass


def settings(tmp_path: Path, *, first: bool = True) -> ChargeSettings:
    return ChargeSettings(vip=VIP, nic="eth1", state_file=tmp_path / "vrrp-state", first=first)


def test_the_watch_reads_the_notify_scripts_word_and_the_nics_addresses(tmp_path):
    """No word file yet is no word; MASTER written with the VIP among the NIC's addresses is in charge; a
    NIC that cannot be read is not carrying the VIP."""
    gone = OSError(19, "No such device")
    addresses: list[set[str] | OSError] = [{"192.168.100.2"}, {"192.168.100.2", VIP}, gone]

    def read() -> set[str]:
        found = addresses.pop(0)
        if isinstance(found, OSError):
            raise found
        return found

    config = settings(tmp_path)
    watch = ChargeWatch(config, addresses=read)
    assert watch.look() == ChargeSeen(word=None, carries_vip=False)
    config.state_file.write_text("MASTER\n")
    assert watch().acts
    assert watch.look() == ChargeSeen(word="MASTER", carries_vip=False)


def test_a_peer_answering_arp_for_the_vip_is_a_split_brain_while_its_answer_is_fresh(tmp_path):
    """A probe goes out at most once per PEER_LOOK_S; an answer heard makes `peer_claims` true until
    CLAIM_FRESH_S has passed without another."""
    clock = [100.0]
    claims = FakeClaims()
    watch = ChargeWatch(
        settings(tmp_path, first=False), word=lambda: "MASTER", addresses=lambda: {VIP}, claims=claims,
        clock=lambda: clock[0],
    )  # fmt: skip
    assert watch().acts and claims.probes == 1
    clock[0] += 0.1
    assert watch().acts and claims.probes == 1, "probed again within PEER_LOOK_S"
    claims.answers = [True]
    verdict = watch()
    assert not verdict.acts and "split brain" in verdict.why
    clock[0] += 3.0
    assert watch().acts, "an old answer kept the split brain"


def test_read_word_and_bad_settings(tmp_path):
    """The word is the file's first line; settings that are not export's JSON are an error naming them."""
    (tmp_path / "w").write_text("FAULT\n")
    assert read_word(tmp_path / "w") == "FAULT"
    assert read_word(tmp_path / "missing") is None
    good = tmp_path / "charge.json"
    good.write_text(settings(tmp_path).to_json())
    assert load_settings(good) == settings(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"vip": VIP}))
    with pytest.raises(RelevoError, match=r"RELEVO_VRRP_CHARGE=.*bad\.json"):
        load_settings(bad)


# --- the NIC: netlink and ARP, as bytes -----------------------------------------------------------------
def netlink_address(index: int, address: str, family: int = socket.AF_INET) -> bytes:
    local = struct.pack("=HH", 8, nic.IFA_LOCAL) + socket.inet_aton(address)
    body = nic.IFADDRMSG.pack(family, 24, 0, 0, index) + local
    return nic.NLMSG_HEADER.pack(nic.NLMSG_HEADER.size + len(body), nic.RTM_NEWADDR, 2, 1, 0) + body


def test_an_address_dump_is_read_for_one_interface_until_done():
    """Addresses of other interfaces are left out; the dump ends at NLMSG_DONE; an error is an OSError."""
    done = nic.NLMSG_HEADER.pack(20, nic.NLMSG_DONE, 2, 1, 0) + bytes(4)
    first = netlink_address(3, "192.168.100.2") + netlink_address(2, "10.0.0.5")
    assert nic.parse_addresses(first, 3) == ({"192.168.100.2"}, False)
    assert nic.parse_addresses(netlink_address(3, VIP) + done, 3) == ({VIP}, True)
    error = nic.NLMSG_HEADER.pack(20, nic.NLMSG_ERROR, 0, 1, 0) + struct.pack("=i", -1)
    with pytest.raises(OSError):
        nic.parse_addresses(error, 3)


def test_this_hosts_loopback_addresses_by_netlink():
    """The real dump: lo carries 127.0.0.1."""
    assert "127.0.0.1" in nic.ipv4_addresses("lo")


def test_an_arp_reply_from_another_mac_claims_the_address():
    """A probe asks from 0.0.0.0; a reply from another MAC for the VIP claims it, one from this NIC's MAC,
    a request, or another address does not."""
    own, other = bytes.fromhex("525400000001"), bytes.fromhex("525400000002")
    probe = nic.arp_probe(own, VIP)
    fields = nic.ARP_FRAME.unpack(probe)
    assert fields[0] == nic.BROADCAST and fields[7] == nic.ARP_REQUEST and fields[9] == bytes(4)
    assert fields[11] == socket.inet_aton(VIP)

    def reply(mac: bytes, address: str, operation: int = nic.ARP_REPLY) -> bytes:
        return nic.ARP_FRAME.pack(
            own, mac, nic.ETH_P_ARP, 1, nic.ETH_P_IP, 6, 4, operation, mac, socket.inet_aton(address), own,
            bytes(4),
        )  # fmt: skip

    assert nic.claims(reply(other, VIP), VIP, own)
    assert not nic.claims(reply(own, VIP), VIP, own)
    assert not nic.claims(reply(other, VIP, nic.ARP_REQUEST), VIP, own)
    assert not nic.claims(reply(other, "192.168.100.7"), VIP, own)
    assert not nic.claims(probe[:20], VIP, own)

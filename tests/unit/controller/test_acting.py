"""The rule a VM pair's controllers act by: only while its keepalived says MASTER and its NIC carries the
VIP, whichever of the two comes first on a takeover or goes first on a hand-over; in a split brain that
either can see, the first balancer alone."""

from __future__ import annotations

import pytest

from relevo.controller.acting import ChargeSeen, in_charge


def acts(*looks: tuple[str | None, bool], first: bool = True, peer_claims: bool = False) -> list[bool]:
    """The verdict at each look (keepalived's word, the VIP on the NIC)."""
    return [
        in_charge(ChargeSeen(word=word, carries_vip=vip, peer_claims=peer_claims), first=first).acts
        for word, vip in looks
    ]


@pytest.mark.parametrize("first", [True, False])
def test_a_takeover_acts_once_both_the_word_and_the_address_are_there_in_either_order(first):
    """MASTER notified before the address is seen, or the address seen before the notify: no action
    until both are there."""
    assert acts((None, False), ("BACKUP", False), ("MASTER", False), ("MASTER", True), first=first) == [
        False,
        False,
        False,
        True,
    ]
    assert acts(("BACKUP", False), ("BACKUP", True), ("MASTER", True), first=first) == [False, False, True]


@pytest.mark.parametrize("word", ["BACKUP", "FAULT", "STOP"])
def test_a_hand_over_stops_at_the_first_sign_in_either_order(word):
    """The address gone while the word still says MASTER, or the word changed while the address is still
    there: the controller stops acting at once, never waiting for the other sign."""
    assert acts(("MASTER", True), ("MASTER", False), (word, False)) == [True, False, False]
    assert acts(("MASTER", True), (word, True), (word, False)) == [True, False, False]


def test_a_split_brain_seen_lets_only_the_first_balancer_act():
    """Both MASTER, both carrying the VIP, each seeing the other's claim: ha1 acts, ha2 stands by (and
    says why); once the claim ends ha2, still in charge, acts."""
    split = ChargeSeen(word="MASTER", carries_vip=True, peer_claims=True)
    first, second = in_charge(split, first=True), in_charge(split, first=False)
    assert (first.acts, second.acts) == (True, False)
    assert "split brain" in second.why and "first" in second.why
    assert in_charge(ChargeSeen(word="MASTER", carries_vip=True), first=False).acts


def test_a_split_brain_hidden_by_the_partition_lets_both_act():
    """The limit, pinned: a partition that also cuts ARP hides each one's claim from the other, so both
    act (as VRRP cannot tell it from a dead peer either; the README says so)."""
    blind = ChargeSeen(word="MASTER", carries_vip=True, peer_claims=False)
    assert in_charge(blind, first=True).acts and in_charge(blind, first=False).acts


def test_a_claim_of_the_peer_alone_never_makes_a_backup_act():
    """The peer's claim changes nothing for a balancer that is not MASTER with the address."""
    assert acts(("BACKUP", False), ("FAULT", True), ("MASTER", False), peer_claims=True) == [
        False,
        False,
        False,
    ]

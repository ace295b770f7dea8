"""The controller beside each balancer acts only while its balancer holds the VIP; never two at once."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from relevo.controller.charge import Charge, Vrrp, address, holder_unwell, notify, parse_notify, peer_state

MASTER, BACKUP, FAULT, STOP = Vrrp.MASTER, Vrrp.BACKUP, Vrrp.FAULT, Vrrp.STOP


def side(me: str) -> Charge:
    return Charge(me=me, peer="ha2" if me == "ha1" else "ha1", first="ha1")


def kinds(events) -> list[tuple[str, str, str]]:
    return [(e.kind.value, e.from_, e.to) for e in events]


def test_notify_lines_are_parsed_for_our_instance_only():
    """keepalived's FIFO lines: our instance's state, nothing for another instance or a GROUP line."""
    assert parse_notify('INSTANCE "relevo" MASTER 150\n', "relevo") is MASTER
    assert parse_notify('INSTANCE "relevo" FAULT 0', "relevo") is FAULT
    assert parse_notify('INSTANCE "other" MASTER 150', "relevo") is None
    assert parse_notify('GROUP "g" MASTER', "relevo") is None
    assert parse_notify("garbage", "relevo") is None


def test_the_backup_takes_over_and_journals_the_move_from_the_first_evidence():
    """ha2's controller: BACKUP (stands by, ha1 holds), ha1's HAProxy stops answering at 10.00 (first
    evidence), ha1 FAULT at 10.02, MASTER at 10.08: `vip-moved ha1 → ha2` in 0.08 s, and it acts."""
    charge, events = notify(side("ha2"), BACKUP, 1.0)
    assert not charge.in_charge and charge.holder == "ha1" and events == []
    charge, _ = peer_state(charge, MASTER, 1.0)
    charge = holder_unwell(charge, 10.0)
    charge, _ = peer_state(charge, FAULT, 10.02)
    charge, events = notify(charge, MASTER, 10.08)
    assert charge.in_charge and charge.holder == "ha2"
    moved = [e for e in events if e.kind.value == "vip-moved"]
    assert [(e.from_, e.to) for e in moved] == [("ha1", "ha2")]
    assert moved[0].durations["moved_s"] == 0.08
    assert ("controller", "standing by", "acting") in kinds(events)


def test_an_address_check_first_then_the_fifo_line_gives_the_same_verdict():
    """Both orders of evidence: the VIP seen on the interface before keepalived's MASTER line is not yet
    charge (the FIFO still says BACKUP); after the line, it is."""
    charge, _ = notify(side("ha2"), BACKUP, 1.0)
    charge, _ = address(charge, True, 2.0)
    assert not charge.in_charge
    charge, events = notify(charge, MASTER, 2.01)
    assert charge.in_charge and "vip-moved" in [e.kind.value for e in events]
    other, _ = notify(side("ha2"), BACKUP, 1.0)
    other, _ = notify(other, MASTER, 2.0)
    other, _ = address(other, True, 2.01)
    assert other.in_charge and other.holder == charge.holder == "ha2"


def test_master_without_the_address_waits_for_it():
    """keepalived says MASTER but the interface has no VIP yet (or lost it): the controller stands by."""
    charge, _ = notify(side("ha1"), MASTER, 1.0)
    charge, _events = address(charge, False, 1.01)
    assert not charge.in_charge
    charge, _ = address(charge, True, 1.05)
    assert charge.in_charge


def test_losing_the_address_stands_down_at_once_whatever_the_other_evidence_says():
    """In charge, then FAULT (its HAProxy died): standing by at once, even with the VIP still on the
    interface; a lost FIFO line is covered by the address check alone."""
    charge, _ = notify(side("ha1"), MASTER, 1.0)
    charge, _ = address(charge, True, 1.0)
    assert charge.in_charge
    down, events = notify(charge, FAULT, 5.0)
    assert not down.in_charge and ("controller", "acting", "standing by") in kinds(events)
    assert down.holder == "ha2"
    gone, _ = address(charge, False, 5.0)
    assert not gone.in_charge


def test_split_brain_only_the_first_balancer_acts_in_either_order():
    """Both MASTER (adverts lost between them): ha1's controller acts, ha2's stands by and says why,
    whether it saw its own MASTER or the peer's first; when ha1 goes BACKUP, ha2 acts."""
    ha2_a, _ = peer_state(side("ha2"), MASTER, 1.0)
    ha2_a, events_a = notify(ha2_a, MASTER, 2.0)
    ha2_b, _ = notify(side("ha2"), MASTER, 1.0)
    ha2_b, events_b = peer_state(ha2_b, MASTER, 2.0)
    for charge, events in ((ha2_a, events_a), (ha2_b, events_b)):
        assert not charge.in_charge and charge.split
        assert any(e.to == "split-brain" and "only ha1 acts" in e.reason for e in events)
    ha1, _ = notify(side("ha1"), MASTER, 1.0)
    ha1, _ = peer_state(ha1, MASTER, 2.0)
    assert ha1.in_charge and ha1.split
    ha2_a, events = peer_state(ha2_a, BACKUP, 3.0)
    assert ha2_a.in_charge and not ha2_a.split


def test_an_unreadable_peer_is_no_split():
    """A peer whose state cannot be read is the ordinary failover (it may be dead): the MASTER acts."""
    charge, _ = notify(side("ha2"), MASTER, 1.0)
    charge, _ = peer_state(charge, None, 1.0)
    assert charge.in_charge


STATES = st.sampled_from([MASTER, BACKUP, FAULT, STOP])


@settings(deadline=None)  # a pure function, but a loaded 2-core machine stalls any example
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(["ha1", "ha2"]), STATES, st.booleans(), st.booleans()), max_size=30
    )
)
def test_two_controllers_never_act_at_once(steps):
    """Any sequence of VRRP states on either side, each controller told its own state and its address
    (held when MASTER, unless the check lags) and the peer's published state, in either order: after
    every step at most one of the two controllers acts."""
    charges = {"ha1": side("ha1"), "ha2": side("ha2")}
    vrrp = {"ha1": BACKUP, "ha2": BACKUP}
    at = 0.0
    for name, state, own_first, address_lags in steps:
        at += 0.01
        vrrp[name] = state
        other = "ha2" if name == "ha1" else "ha1"
        mine = charges[name]
        if own_first:
            mine, _ = notify(mine, state, at)
            charges[other], _ = peer_state(charges[other], state, at)
        else:
            charges[other], _ = peer_state(charges[other], state, at)
            mine, _ = notify(mine, state, at)
        if not address_lags:
            mine, _ = address(mine, state is MASTER, at)
        charges[name] = mine
        assert not (charges["ha1"].in_charge and charges["ha2"].in_charge), (vrrp, charges)

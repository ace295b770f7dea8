"""The controller following a pair's VIP: `vip-moved` journalled once per move, timed from the first
evidence, and the host's neighbour table read the way the LXD provider reads it."""

from __future__ import annotations

from relevo.controller.events import EventKind
from relevo.controller.vip import VipSeen, follow
from relevo.providers.lxd_vip import neighbour

BOTH = {"ha1": True, "ha2": True}


def test_the_first_sight_is_no_move_and_a_steady_holder_journals_nothing():
    """Seeing ha1 hold the VIP at start, then again, journals nothing."""
    seen, events = follow(VipSeen(), "ha1", BOTH, 1.0)
    seen, more = follow(seen, "ha1", BOTH, 1.1)
    assert (seen.holder, events, more) == ("ha1", [], [])


def test_a_move_is_timed_from_the_first_tick_the_holder_did_not_answer():
    """ha1's HAProxy stops answering at 2.0 (evidence), the VIP is seen on ha2 at 2.3: one vip-moved
    ha1 → ha2 taking 0.3 s, and nothing more after it."""
    seen, _ = follow(VipSeen(), "ha1", BOTH, 1.0)
    seen, a = follow(seen, "ha1", {"ha1": False, "ha2": True}, 2.0)
    seen, b = follow(seen, "ha1", {"ha1": False, "ha2": True}, 2.1)
    seen, moved = follow(seen, "ha2", {"ha1": False, "ha2": True}, 2.3)
    seen, after = follow(seen, "ha2", {"ha1": False, "ha2": True}, 2.4)
    assert a == b == after == []
    assert [(e.kind, e.from_, e.to) for e in moved] == [(EventKind.VIP_MOVED, "ha1", "ha2")]
    assert moved[0].durations["moved_s"] == 0.3


def test_evidence_is_forgotten_when_the_holder_answers_again():
    """A holder that missed one read and answered again (no move) does not date a later move."""
    seen, _ = follow(VipSeen(), "ha1", BOTH, 1.0)
    seen, _ = follow(seen, "ha1", {"ha1": False, "ha2": True}, 2.0)
    seen, _ = follow(seen, "ha1", BOTH, 2.1)
    seen, moved = follow(seen, "ha2", BOTH, 5.0)
    assert moved[0].durations["moved_s"] == 0.0


def test_an_unknown_holder_keeps_the_last_one():
    """A look that finds no answer (None) is no move, and the next sight of ha1 is none either."""
    seen, _ = follow(VipSeen(), "ha1", BOTH, 1.0)
    seen, a = follow(seen, None, BOTH, 1.1)
    seen, b = follow(seen, "ha1", BOTH, 1.2)
    assert (seen.holder, a, b) == ("ha1", [], [])


TABLE = """IP address       HW type     Flags       HW address            Mask     Device
10.203.0.10      0x1         0x2         00:16:3E:AA:BB:CC     *        rlvbr
10.203.0.10      0x1         0x2         00:16:3e:00:00:01     *        other
10.203.0.11      0x1         0x0         00:00:00:00:00:00     *        rlvbr
"""


def test_the_neighbour_table_names_the_mac_on_the_bridge_only():
    """The VIP's MAC is read from the bridge's row (lower case), not another device's; an incomplete
    entry (flags 0) or a missing one gives None."""
    assert neighbour(TABLE, "10.203.0.10", "rlvbr") == "00:16:3e:aa:bb:cc"
    assert neighbour(TABLE, "10.203.0.11", "rlvbr") is None
    assert neighbour(TABLE, "10.203.0.12", "rlvbr") is None

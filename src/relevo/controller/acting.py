"""Whether the controller beside one balancer of a VM pair may act (pure: what that VM sees in, the verdict
out). On LXD one controller runs on the host and follows the VIP (vip.py); on the VMs the host is no
place for it (losing the `ha1` VM must lose neither the address nor the controller), so each balancer VM
runs one, and each may act only while its own balancer is in charge:

- its keepalived's last word, as its notify script wrote it, is MASTER, and
- its private NIC carries the VIP at this look.

Both, because the two do not change together: keepalived puts the address on before it notifies MASTER
and takes it off before it notifies BACKUP or FAULT, so a look between the two sees one without the
other; either alone would let a controller act while the peer's already does (a hand-over), or before
its own keepalived has settled (a takeover). keepalived's notify also starts and stops the controller's
unit (vagrant/pair.py): this rule covers the moments around that, checked before every tick's actions.

A split brain (the adverts lost between the two: both MASTER, both carrying the VIP): when this VM sees
the peer claim the address too (an ARP reply for the VIP from another MAC on the private network), only
the topology's first balancer acts. A partition that cuts ARP between the two as well hides the claim
from both, and both act: VRRP itself cannot tell that from a dead peer, and neither can this rule.
"""

from __future__ import annotations

from dataclasses import dataclass

MASTER = "MASTER"


@dataclass(frozen=True, slots=True, kw_only=True)
class ChargeSeen:
    """One look at this balancer VM."""

    word: str | None  # keepalived's last state word (MASTER, BACKUP, FAULT, STOP); None: none yet
    carries_vip: bool  # the private NIC carries the VIP now
    peer_claims: bool = False  # the other balancer VM answers for the VIP too (a split brain)


@dataclass(frozen=True, slots=True)
class Charge:
    acts: bool
    why: str


def in_charge(seen: ChargeSeen, *, first: bool) -> Charge:
    """May this VM's controller act now? `first`: this is the topology's first balancer (the one that
    acts in a split brain)."""
    if seen.word != MASTER:
        return Charge(False, f"keepalived says {seen.word or 'nothing yet'}, not MASTER")
    if not seen.carries_vip:
        return Charge(False, "keepalived says MASTER but the VIP is not on this VM's NIC (yet, or any more)")
    if seen.peer_claims and not first:
        return Charge(False, "split brain: the other balancer holds the VIP too; the first one acts")
    if seen.peer_claims:
        return Charge(True, "split brain: the other balancer holds the VIP too; this one, the first, acts")
    return Charge(True, "keepalived says MASTER and the VIP is on this VM's NIC")

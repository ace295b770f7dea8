"""Who is in charge of a balancer pair: the controller beside each balancer acts only while its balancer
holds the shared address (VIP). Pure: notify lines and address checks in, a verdict and events out.

Evidence, each stamped when it was seen:
- keepalived's notify FIFO (`vrrp_notify_fifo`): `INSTANCE "relevo" MASTER 150`, `BACKUP`, `FAULT`, `STOP`
  lines, 1-18 ms after the change (MEASURED.md);
- the address itself: does this balancer's interface carry the VIP now (what the kernel says, so a FIFO
  line lost to a restarted reader is not the only truth).

The rule: in charge only while the latest FIFO state is MASTER *and* the address check (when there is
one) agrees. Either one saying otherwise stands the controller down at once: two controllers may both
stand down for a moment (nobody acts for a tick or two, which costs nothing while HAProxy serves), but
never both act on one piece of evidence.

Split brain (VRRP adverts lost between the balancers: both MASTER, both carry the address): each
controller also reads the peer's last published state (`peer`). When both are MASTER, only the first
balancer of the topology acts (a fixed order, the same on both sides, so exactly one yields); the other
journals `split-brain` and stands by until one of them is BACKUP again. A peer whose state cannot be read
is not evidence of a split: a dead peer is the ordinary failover case.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, replace

from relevo.controller.events import Event, EventKind


class Vrrp(enum.StrEnum):
    MASTER = "MASTER"
    BACKUP = "BACKUP"
    FAULT = "FAULT"
    STOP = "STOP"


# `INSTANCE "name" STATE priority` (keepalived 2.2's notify FIFO format); GROUP lines are not ours.
_LINE = re.compile(r'^INSTANCE "(?P<instance>[^"]+)" (?P<state>MASTER|BACKUP|FAULT|STOP)(?: (?P<prio>\d+))?$')


def parse_notify(line: str, instance: str) -> Vrrp | None:
    """The state a notify FIFO line reports for `instance`, or None for anything else."""
    match = _LINE.match(line.strip())
    if match is None or match["instance"] != instance:
        return None
    return Vrrp(match["state"])


@dataclass(frozen=True, slots=True, kw_only=True)
class Charge:
    """What one controller knows about its balancer's hold on the address."""

    me: str
    peer: str
    first: str  # the topology's first balancer: the one that acts in a split brain
    vrrp: Vrrp | None = None  # the latest FIFO state (None: nothing seen yet)
    holds_address: bool | None = None  # the latest address check (None: not checked)
    peer_vrrp: Vrrp | None = None  # the peer's published state (None: unknown)
    in_charge: bool = False
    # When the first sign of a move was seen (a FAULT/BACKUP/STOP of the holder, or our own MASTER):
    # where `vip-moved` counts its time from.
    evidence_at: float | None = None
    holder: str | None = None  # who held the address as far as this controller knows
    split: bool = False  # both MASTER, as far as this controller can see


def notify(charge: Charge, state: Vrrp, at: float) -> tuple[Charge, list[Event]]:
    """A FIFO line: our keepalived entered `state` at `at`."""
    evidence = charge.evidence_at
    if evidence is None and (state is Vrrp.MASTER or charge.vrrp is Vrrp.MASTER):
        evidence = at  # our own takeover, or our own loss: a move has begun
    return _settle(replace(charge, vrrp=state, evidence_at=evidence), at)


def address(charge: Charge, holds: bool, at: float) -> tuple[Charge, list[Event]]:
    """An address check: this balancer's interface carries the VIP (`holds`) or not, at `at`."""
    return _settle(replace(charge, holds_address=holds), at)


def peer_state(charge: Charge, state: Vrrp | None, at: float) -> tuple[Charge, list[Event]]:
    """The peer's published VRRP state (None: it cannot be read)."""
    evidence = charge.evidence_at
    if evidence is None and charge.peer_vrrp is Vrrp.MASTER and state is not Vrrp.MASTER:
        evidence = at  # the peer let go (or went silent): the first sign of a move towards us
    return _settle(replace(charge, peer_vrrp=state, evidence_at=evidence), at)


def holder_unwell(charge: Charge, at: float) -> Charge:
    """The balancer holding the address looks dead or hung (its HAProxy stopped answering): the first
    evidence of a move, when nothing came earlier."""
    if charge.evidence_at is not None or charge.holder == charge.me:
        return charge
    return replace(charge, evidence_at=at)


def _settle(charge: Charge, at: float) -> tuple[Charge, list[Event]]:
    events: list[Event] = []
    master = charge.vrrp is Vrrp.MASTER and charge.holds_address is not False
    split = master and charge.peer_vrrp is Vrrp.MASTER
    acting = master and (not split or charge.me == charge.first)
    holder = charge.holder
    evidence = charge.evidence_at
    if master and holder != charge.me:
        if holder is not None:
            moved_s = at - evidence if evidence is not None else 0.0
            events.append(
                Event(
                    kind=EventKind.VIP_MOVED,
                    node=charge.me,
                    from_=holder,
                    to=charge.me,
                    reason=f"keepalived made {charge.me} MASTER and it holds the address",
                    durations={"moved_s": round(max(0.0, moved_s), 4)},
                )
            )
        holder, evidence = charge.me, None
    elif not master and charge.vrrp is not None and holder != charge.peer:
        holder = charge.peer  # we do not hold it (or let it go): as far as we know, the peer does
        evidence = None if charge.holder is None else evidence
    if split != charge.split:
        what = f"both balancers are MASTER (VRRP adverts lost between them): only {charge.first} acts"
        events.append(
            _event(charge, "split-brain" if split else "one master", what if split else "one MASTER again")
        )
    if acting != charge.in_charge:
        reason = f"{charge.peer} is MASTER too; {charge.first} acts" if split else _why(charge)
        events.append(_event(charge, "acting" if acting else "standing by", reason))
    return replace(charge, in_charge=acting, holder=holder, evidence_at=evidence, split=split), events


def _why(charge: Charge) -> str:
    if charge.vrrp is not Vrrp.MASTER:
        state = charge.vrrp.value if charge.vrrp else "silent"
        return f"keepalived is {state}: the controller beside {charge.peer} acts"
    if charge.holds_address is False:
        return "keepalived says MASTER but the interface has no VIP: waiting for the address"
    return f"{charge.me} holds the address: this controller acts"


def _event(charge: Charge, to: str, reason: str) -> Event:
    from_ = "acting" if charge.in_charge else "standing by"
    return Event(kind=EventKind.CONTROLLER, node=charge.me, from_=from_, to=to, reason=reason)

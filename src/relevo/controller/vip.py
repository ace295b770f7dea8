"""The one controller of an LXD pair follows whichever balancer holds the VIP (pure: what the host's
network says and what the controller saw of each balancer in, the holder and `vip-moved` out).

Why one controller on the host rather than one beside each balancer: on LXD the controller already runs
on the host, outside both balancer containers, so losing a balancer's container loses neither the address
(keepalived moves it) nor the controller; and one controller, held to one instance by its pid lock, can
never act twice at once. It sets every server state on both HAProxy processes (balancers.BalancerSet),
so whichever one holds the VIP, and both in a split brain, serve with the same states. Where the host
cannot see the balancers' network (a pair of VMs) a controller runs beside each balancer, by the rule
of acting.py: act only while its keepalived says MASTER and its interface carries the VIP, and in a
split brain let the first balancer act.

The time of a move counts from its first evidence: the first tick at which the holder's HAProxy did not
answer (killed, hung, its container gone), else the tick at which the new holder was seen.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from relevo.controller.events import Event, EventKind


@dataclass(frozen=True, slots=True, kw_only=True)
class VipSeen:
    holder: str | None = None  # the balancer last seen holding the VIP (None: not seen yet)
    evidence_at: float | None = None  # when the holder first looked unwell, since it was last well


def follow(
    seen: VipSeen, holder: str | None, answering: Mapping[str, bool], at: float
) -> tuple[VipSeen, list[Event]]:
    """One look: `holder` holds the VIP now (None: unknown this time), `answering` is which balancers'
    HAProxy answered this tick."""
    evidence = seen.evidence_at
    if seen.holder is not None and not answering.get(seen.holder, True):
        evidence = at if evidence is None else evidence
    elif seen.holder is not None:
        evidence = None
    if holder is None or holder == seen.holder:
        return replace(seen, evidence_at=evidence), []
    if seen.holder is None:
        return VipSeen(holder=holder), []  # the first sight is no move
    moved_s = at - evidence if evidence is not None else 0.0
    why = "its HAProxy stopped answering" if evidence is not None else "keepalived moved it"
    event = Event(
        kind=EventKind.VIP_MOVED,
        node=holder,
        from_=seen.holder,
        to=holder,
        reason=f"the VIP is on {holder} now ({seen.holder} held it; {why})",
        durations={"moved_s": round(max(0.0, moved_s), 4)},
    )
    return VipSeen(holder=holder), [event]

"""Which balancer is in charge: the one a fault meant for "the balancer" must hit, or it proves nothing.

With a VIP (LXD, the VMs) that is the balancer holding the address, as this host's network sees it (the
provider's `HoldsVip`). It is not always the first: after a takeover keepalived's `nopreempt` leaves the
address on the peer, so a second fault on the first balancer would hit the backup (no client notices,
and the scenario's check passes or fails for nothing: seen on the LXD pair).

Without a VIP (the local provider) both HAProxy processes bind the frontend with SO_REUSEPORT and the
kernel spreads new connections over both: neither holds more than the other, so "in charge" means the
first balancer of the topology that runs (the one whose view the controller reads first). Losing it
costs what losing either would: its share of new connections until the kernel drops its socket, and the
requests in flight on its connections.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from relevo.errors import ProviderError
from relevo.model import Topology
from relevo.polling import wait_until
from relevo.providers.base import HoldsVip, NodeState

# The first look may only start the host's ARP lookup for the VIP (lxd_vip); the answer is there within
# milliseconds (gratuitous ARP 0.2-10 ms after a takeover, MEASURED.md), so this is a generous bound.
HOLDER_WAIT_S = 2.0
HOLDER_POLL_S = 0.05


@dataclass(frozen=True, slots=True, kw_only=True)
class InCharge:
    name: str
    why: str  # said beside the fault in the scenario's result ("it holds the VIP 10.1.2.10")


def balancer_in_charge(
    topology: Topology,
    provider: object,
    status: Callable[[str], NodeState],
    *,
    wait_s: float = HOLDER_WAIT_S,
) -> InCharge:
    """The balancer in charge now (see the module doc); `provider` is the balancers' provider. A VIP
    whose holder this host cannot see within `wait_s` is an error: guessing would fault the wrong one."""
    names = [b.name for b in topology.balancers]
    pair = topology.pair
    if pair is not None and pair.vip is not None and isinstance(provider, HoldsVip):
        seen: list[str | None] = []

        def look() -> bool:
            seen.append(provider.vip_holder())
            return seen[-1] in names

        if wait_until(look, wait_s, HOLDER_POLL_S):
            holder = seen[-1]
            assert holder is not None
            return InCharge(name=holder, why=f"it holds the VIP {pair.vip}")
        raise ProviderError(
            f"no balancer holds the VIP {pair.vip} as this host sees it (neither of {', '.join(names)} "
            f"within {wait_s:g} s): the fault would hit one at random"
        )
    if pair is None:
        return InCharge(name=names[0], why="the only balancer")
    for name in names:
        if status(name) is NodeState.RUNNING:
            return InCharge(
                name=name, why="the first running balancer: both serve the frontend with SO_REUSEPORT"
            )
    return InCharge(name=names[0], why="no balancer runs; the first")

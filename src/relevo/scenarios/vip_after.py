"""Where a pair's VIP settles once a scenario's faults are over: the check of `failback:` (the address stays
with the survivor, or moves back to the balancer that returned).

It looks only once the pair is whole again (both HAProxy processes answer the GET their keepalived's
checker sends), since before that the returning balancer could not take the address even if it should.
Then it watches the holder, as this host's network sees it, for a window long enough for a returning
keepalived to take the address: leaving FAULT takes one checker round (0.1 s) and a preempting BACKUP
takes over at the first advert it hears from a lower priority, so a move back shows within a few adverts.
A failback ends the window as soon as the address is back; a nopreempt pair must hold it the whole window.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from relevo.cluster import Cluster
from relevo.controller.probe import http_probe
from relevo.model import Topology
from relevo.polling import wait_until
from relevo.providers.base import HoldsVip
from relevo.render.haproxy import ALIVE_PATH
from relevo.scenarios.result import VipAfter

# The returning balancer's container or HAProxy starts in well under a second (MEASURED.md); a loaded
# 2-core machine stretches that by ten.
WHOLE_WITHIN_S = 30.0
ALIVE_TIMEOUT_S = 1.0
LOOK_S = 0.05
# The window: at least this long, and at least this many adverts (a 1 s advert needs its few seconds).
WINDOW_MIN_S = 2.0
WINDOW_ADVERTS = 10


def watch_vip(cluster: Cluster, hit: str, *, back: bool) -> VipAfter:
    """Where the VIP settles after the faults that hit `hit` (see the module doc), as this host sees it."""
    topology = cluster.topology
    provider = cluster.provider_for(hit)
    if not isinstance(provider, HoldsVip):
        other = next(b.name for b in topology.balancers if b.name != hit)
        return VipAfter(hit=hit, other=other, whole=False, holders=())
    return settle(topology, hit, back=back, whole=lambda: pair_answers(topology), holder=provider.vip_holder)


def pair_answers(topology: Topology) -> bool:
    """Both balancers' HAProxy answer their checker's GET (through their stats address)."""
    return all(
        http_probe(b.stats, path=ALIVE_PATH, expect_status=200, timeout_s=ALIVE_TIMEOUT_S).ok
        for b in topology.balancers
    )


def settle(
    topology: Topology,
    hit: str,
    *,
    back: bool,
    whole: Callable[[], bool],
    holder: Callable[[], str | None],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], object] = time.sleep,
) -> VipAfter:
    """Wait until `whole`, then look at `holder` over the window; with `back`, until it names `hit`."""
    pair = topology.pair
    assert pair is not None
    other = next(b.name for b in topology.balancers if b.name != hit)
    if not wait_until(whole, WHOLE_WITHIN_S, LOOK_S * 4, clock=clock, sleep=sleep):
        return VipAfter(hit=hit, other=other, whole=False, holders=(holder(),))
    holders: list[str | None] = []

    def look() -> bool:
        holders.append(holder())
        return back and holders[-1] == hit

    window_s = max(WINDOW_MIN_S, WINDOW_ADVERTS * pair.advert_s)
    wait_until(look, window_s, LOOK_S, clock=clock, sleep=sleep)
    return VipAfter(hit=hit, other=other, whole=True, holders=tuple(holders))

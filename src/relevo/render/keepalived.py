"""keepalived for a pair of balancers: each balancer's keepalived.conf and the checker that tells it
whether HAProxy answers (see MEASURED.md, keepalived on LXD, for why each setting is what it is)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import PurePosixPath

from relevo.model import Balancer, BalancerPair, Topology
from relevo.render import render_template
from relevo.render.haproxy import ALIVE_PATH, describe_source

# The first balancer wins an election when neither holds the address; in a container keepalived cannot
# take priority 255 (the address owner's), and both are below it.
PRIORITY_FIRST = 150
PRIORITY_PEER = 100
# The checker: one HTTP GET to HAProxy's stats frontend every CHECK_INTERVAL_S, given CHECK_TIMEOUT_S;
# a refused connection counts at once, CHECK_FALL_TIMEOUTS unanswered GETs in a row only. Measured: a
# SIGKILLed HAProxy handed the address over in 0.08-0.09 s, a SIGSTOPped one in 0.32-0.34 s with one
# timeout; at load average 25 on 2 cores (five engineers and five VMs) one timeout made both balancers
# flap between FAULT and MASTER every few seconds, two in a row did not.
CHECK_INTERVAL_S = 0.1
CHECK_TIMEOUT_S = 0.3
CHECK_FALL_TIMEOUTS = 2
INSTANCE = "relevo"


@dataclass(frozen=True, slots=True)
class KeepalivedLayout:
    """Where keepalived's files are on a balancer (a container or VM: Debian's places)."""

    config: PurePosixPath
    checker: PurePosixPath
    track_file: PurePosixPath

    @classmethod
    def in_guest(cls) -> KeepalivedLayout:
        return cls(
            config=PurePosixPath("/etc/keepalived/keepalived.conf"),
            checker=PurePosixPath("/usr/local/sbin/relevo-haproxy-check"),
            track_file=PurePosixPath("/run/relevo/haproxy-alive"),
        )


def pair_of(topology: Topology) -> BalancerPair:
    if topology.pair is None or topology.pair.vip is None:
        raise ValueError(f"cluster {topology.name!r} has no balancer pair with a VIP")
    return topology.pair


def render_keepalived(
    topology: Topology,
    balancer: str,
    *,
    interface: str,
    layout: KeepalivedLayout | None = None,
    notify: PurePosixPath | None = None,
) -> str:
    """`balancer`'s keepalived.conf: unicast VRRP v3 to its peer, the VIP on `interface`; `notify`, a
    script told of each state change (a balancer VM's: its controller runs only while MASTER)."""
    pair = pair_of(topology)
    me, peer = _me_and_peer(topology, pair, balancer)
    network = ipaddress.ip_network(topology.network)
    return render_template(
        "keepalived.conf.j2",
        topology=topology,
        source=describe_source(topology),
        pair=pair,
        me=me,
        peer=peer,
        instance=INSTANCE,
        interface=interface,
        prefix=network.prefixlen,
        priority=PRIORITY_FIRST if me.name == topology.balancer.name else PRIORITY_PEER,
        advert=f"{pair.advert_s:.2f}",
        layout=layout or KeepalivedLayout.in_guest(),
        check_ms=round(1000 * CHECK_FALL_TIMEOUTS * (CHECK_INTERVAL_S + CHECK_TIMEOUT_S)),
        notify=notify,
    )


def render_checker(topology: Topology, layout: KeepalivedLayout | None = None) -> str:
    """The script that feeds keepalived's track_file (the same on both balancers)."""
    return render_template(
        "relevo-haproxy-check.j2",
        layout=layout or KeepalivedLayout.in_guest(),
        interval_s=f"{CHECK_INTERVAL_S:g}",
        timeout_s=f"{CHECK_TIMEOUT_S:g}",
        fall=CHECK_FALL_TIMEOUTS,
        stats_port=topology.balancer.stats.port,
        alive_path=ALIVE_PATH,
    )


def _me_and_peer(topology: Topology, pair: BalancerPair, name: str) -> tuple[Balancer, Balancer]:
    first, second = topology.balancer, pair.peer
    if name == first.name:
        return first, second
    if name == second.name:
        return second, first
    raise ValueError(f"{name!r} is not a balancer of cluster {topology.name!r}")

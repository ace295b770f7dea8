"""Which balancer a fault meant for "the balancer" hits: a pair's VIP holder as the provider sees it, the
first running one where both share the frontend (local), the only one of a single balancer."""

from __future__ import annotations

import pytest

from relevo.errors import ProviderError
from relevo.providers.base import NodeState
from relevo.providers.in_charge import balancer_in_charge
from relevo.topology import parse_topology

LXD_PAIR = "provider: lxd\nnetwork: 10.205.0.0/24\nbalancer: {peer: ha2, vip: 10.205.0.10}\n"


class SeesVip:
    """The edge: a provider whose host sees the VIP's holder, one answer per look (the last repeats)."""

    def __init__(self, *answers: str | None) -> None:
        self.answers = list(answers)
        self.looks = 0

    def vip_holder(self) -> str | None:
        self.looks += 1
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


class Blind:
    """A provider with no notion of a VIP (the local one)."""


def running(*names: str):
    return lambda name: NodeState.RUNNING if name in names else NodeState.STOPPED


def topology_of(text: str, tmp_path):
    return parse_topology(text, source=None, state_dir=tmp_path / ".relevo")


def test_a_vip_pair_faults_the_holder_even_when_it_is_the_second_balancer(tmp_path):
    """After a takeover the VIP stays on ha2 (nopreempt): ha2 is in charge, though ha1 runs too."""
    chosen = balancer_in_charge(topology_of(LXD_PAIR, tmp_path), SeesVip("ha2"), running("ha1", "ha2"))
    assert chosen.name == "ha2"
    assert chosen.why == "it holds the VIP 10.205.0.10"


def test_a_vip_holder_not_seen_yet_is_looked_for_again(tmp_path):
    """The first look only starts the host's ARP lookup (None); the next one names the holder."""
    provider = SeesVip(None, "ha1")
    chosen = balancer_in_charge(topology_of(LXD_PAIR, tmp_path), provider, running("ha1", "ha2"))
    assert chosen.name == "ha1" and provider.looks == 2


def test_a_vip_holder_never_seen_is_an_error_not_a_guess(tmp_path):
    """No holder within the wait (or a MAC that is no balancer's): an error naming the VIP, never the
    first balancer by default."""
    with pytest.raises(ProviderError, match=r"no balancer holds the VIP 10\.205\.0\.10"):
        balancer_in_charge(topology_of(LXD_PAIR, tmp_path), SeesVip(None), running("ha1"), wait_s=0.0)


def test_a_local_pair_faults_the_first_running_balancer(tmp_path):
    """Locally both serve the frontend (SO_REUSEPORT): the first running one in the topology's order is in
    charge; ha2 when ha1 is down."""
    topology = topology_of("balancer: {peer: ha2}\n", tmp_path)
    both = balancer_in_charge(topology, Blind(), running("ha1", "ha2"))
    assert both.name == "ha1" and "SO_REUSEPORT" in both.why
    assert balancer_in_charge(topology, Blind(), running("ha2")).name == "ha2"


def test_a_single_balancer_is_always_in_charge(tmp_path):
    """One balancer: it, whatever its state (the seed's layout is unchanged)."""
    chosen = balancer_in_charge(topology_of("", tmp_path), Blind(), running())
    assert (chosen.name, chosen.why) == ("ha1", "the only balancer")

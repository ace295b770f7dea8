"""A pair's balancer scenarios aim at the balancer in charge when the fault is applied (not at the
topology's first balancer), once per scenario, and say which one they hit in the result's markers."""

from __future__ import annotations

import contextlib

import pytest

from relevo.providers.in_charge import InCharge
from relevo.scenarios import timeline as timeline_module
from relevo.scenarios.catalogue import catalogue
from relevo.scenarios.timeline import Timeline
from relevo.topology import parse_topology

from .test_timed_faults import FakeClock

LXD_PAIR = "provider: lxd\nnetwork: 10.205.0.0/24\nbalancer: {peer: ha2, vip: 10.205.0.10}\n"


class PairCluster:
    """A cluster whose VIP is on ha2 until ha2 is stopped (then on ha1): records what is done to whom."""

    def __init__(self, topology) -> None:
        self.topology = topology
        self.holder = "ha2"
        self.asked = 0
        self.calls: list[str] = []

    def balancer_in_charge(self) -> InCharge:
        self.asked += 1
        return InCharge(name=self.holder, why=f"it holds the VIP {self.topology.pair.vip}")

    def fault(self, node, fault):
        self.calls.append(f"{fault} {node}")

    def stop(self, node):
        self.calls.append(f"stop {node}")
        self.holder = "ha1" if node == "ha2" else "ha2"

    def start(self, node):
        self.calls.append(f"start {node}")


@pytest.fixture
def pair(tmp_path, monkeypatch):
    monkeypatch.setattr(timeline_module, "fault_lock", lambda cluster, fault: contextlib.nullcontext())
    topology = parse_topology(LXD_PAIR, source=None, state_dir=tmp_path / ".relevo")
    scenarios, _ = catalogue(topology)
    return PairCluster(topology), scenarios


def play(cluster, scenario) -> Timeline:
    clock = FakeClock(8.0)
    line = Timeline(cluster, scenario, clock)
    line.play(sleep=clock.sleep)
    return line


@pytest.mark.parametrize(
    ("name", "done", "action"),
    [
        ("kill-balancer", "crash-service ha2", "kill-service"),
        ("hang-balancer", "hang ha2", "hang"),
        ("lose-balancer-host", "crash ha2", "kill"),
        ("reload-balancer", "reload ha2", "reload"),
    ],
)
def test_each_balancer_fault_hits_the_vip_holder_and_says_so(pair, name, done, action):
    """With the VIP on ha2 (after an earlier takeover), the fault goes to ha2, and its marker names ha2
    and why it was chosen."""
    cluster, scenarios = pair
    line = play(cluster, scenarios[name])
    assert cluster.calls == [done]
    assert [m.label for m in line.markers] == [f"{action} ha2 (in charge: it holds the VIP 10.205.0.10)"]
    assert not line.verdicts


def test_a_failback_starts_the_balancer_its_stop_took_out(pair):
    """failback-balancer: the stop goes to the holder (ha2); the start, after the VIP moved to ha1, goes to
    ha2 too: the balancer in charge is resolved once per scenario."""
    cluster, scenarios = pair
    line = play(cluster, scenarios["failback-balancer"])
    assert cluster.calls == ["stop ha2", "start ha2"]
    assert cluster.asked == 1
    assert [m.label for m in line.markers] == [
        "stop ha2 (in charge: it holds the VIP 10.205.0.10)",
        "start ha2 (the balancer in charge at this scenario's first fault)",
    ]


def test_faults_on_web_nodes_are_not_redirected(pair):
    """A pair's web-node scenarios keep their named node and never ask who is in charge."""
    cluster, scenarios = pair
    play(cluster, scenarios["kill-web1"])
    assert cluster.calls == ["crash web1"] and cluster.asked == 0


def test_a_holder_that_cannot_be_seen_fails_the_fault_with_the_reason(pair):
    """When the provider cannot tell who holds the VIP, nothing is done and the fault's verdict says why."""
    from relevo.errors import ProviderError

    cluster, scenarios = pair

    def blind() -> InCharge:
        raise ProviderError("no balancer holds the VIP 10.205.0.10 as this host sees it")

    cluster.balancer_in_charge = blind
    line = play(cluster, scenarios["kill-balancer"])
    assert cluster.calls == []
    assert [(v.ok, v.detail) for v in line.verdicts] == [
        (False, "no balancer holds the VIP 10.205.0.10 as this host sees it")
    ]
    assert line.verdicts[0].what == "fault kill-service the balancer in charge"

"""failback-balancer on a VIP pair: once both balancers answer again, the address must stay with the
survivor (`failback: false`, nopreempt) or be back on the returned balancer (`failback: true`); a move
the topology does not want, or a pair never whole again, fails the scenario."""

from __future__ import annotations

import pytest

from relevo.scenarios.catalogue import catalogue
from relevo.scenarios.checks import check_vip
from relevo.scenarios.vip_after import settle
from relevo.topology import parse_topology

LXD_PAIR = "provider: lxd\nnetwork: 10.205.0.0/24\nbalancer: {{peer: ha2, vip: 10.205.0.10{extra}}}\n"


def pair(tmp_path, extra: str = ""):
    text = LXD_PAIR.format(extra=extra)
    return parse_topology(text, source=None, state_dir=tmp_path / ".relevo")


class Clock:
    """Time that passes only through the waits' own sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def holders_then(first: str, *, after_s: float, then: str, clock: Clock):
    """The VIP on `first` until `after_s` of the window's time, then on `then`."""
    began: list[float] = []

    def holder() -> str:
        began.append(began[0] if began else clock.now)
        return first if clock.now - began[0] < after_s else then

    return holder


def test_the_catalogue_asks_failback_balancer_where_the_vip_settles(tmp_path):
    """failback-balancer on a VIP pair expects the address to stay (failback: false) or come back (true),
    and a move; on the local pair (no VIP) nothing is said of an address."""
    stays, _ = catalogue(pair(tmp_path))
    back, _ = catalogue(pair(tmp_path, ", failback: true"))
    local, _ = catalogue(parse_topology("balancer: {peer: ha2}\n", source=None, state_dir=tmp_path / "l"))
    assert stays["failback-balancer"].expect.vip_back is False
    assert stays["failback-balancer"].expect.events == ("vip-moved",)
    assert "the VIP stays with the other" in stays["failback-balancer"].description
    assert back["failback-balancer"].expect.vip_back is True
    assert "the VIP moves back to it" in back["failback-balancer"].description
    assert local["failback-balancer"].expect.vip_back is None
    assert check_vip(local["failback-balancer"].expect, None) == []


def test_a_nopreempt_pair_passes_when_the_vip_stays_and_fails_when_it_moves_back(tmp_path):
    """failback: false: the holder is the survivor (ha2) at every look of the window → passes; the
    returned ha1 taking the address half a second into the window → fails, naming both holders."""
    topology = pair(tmp_path)
    expect = catalogue(topology)[0]["failback-balancer"].expect
    clock = Clock()
    stayed = settle(
        topology, "ha1", back=False, whole=lambda: True, holder=lambda: "ha2", clock=clock, sleep=clock.sleep
    )
    assert stayed.whole and len(stayed.holders) > 10 and set(stayed.holders) == {"ha2"}
    [verdict] = check_vip(expect, stayed)
    assert verdict.ok, verdict
    assert verdict.what == "expect: the VIP stays on ha2"
    clock = Clock()
    moved = settle(
        topology,
        "ha1",
        back=False,
        whole=lambda: True,
        holder=holders_then("ha2", after_s=0.5, then="ha1", clock=clock),
        clock=clock,
        sleep=clock.sleep,
    )
    [verdict] = check_vip(expect, moved)
    assert not verdict.ok
    assert "held by ha2, ha1" in verdict.detail


def test_a_failback_pair_passes_once_the_vip_is_back_and_fails_when_it_stays(tmp_path):
    """failback: true: the looks end as soon as the returned ha1 holds the address → passes; the address
    left on ha2 for the whole window → fails."""
    topology = pair(tmp_path, ", failback: true")
    expect = catalogue(topology)[0]["failback-balancer"].expect
    clock = Clock()
    returned = settle(
        topology,
        "ha1",
        back=True,
        whole=lambda: True,
        holder=holders_then("ha2", after_s=0.3, then="ha1", clock=clock),
        clock=clock,
        sleep=clock.sleep,
    )
    assert returned.holders[-1] == "ha1" and clock.now < 1.0
    [verdict] = check_vip(expect, returned)
    assert verdict.ok and verdict.what == "expect: the VIP back on ha1", verdict
    clock = Clock()
    stayed = settle(
        topology, "ha1", back=True, whole=lambda: True, holder=lambda: "ha2", clock=clock, sleep=clock.sleep
    )
    [verdict] = check_vip(expect, stayed)
    assert not verdict.ok


@pytest.mark.parametrize("back", [False, True])
def test_a_pair_that_is_never_whole_again_fails(tmp_path, back):
    """The returned balancer never answers its checker's GET: no window is watched, the verdict fails
    (whatever holds the address: the survivor holding it proves nothing about nopreempt)."""
    topology = pair(tmp_path, ", failback: true" if back else "")
    expect = catalogue(topology)[0]["failback-balancer"].expect
    clock = Clock()
    seen = settle(
        topology, "ha1", back=back, whole=lambda: False, holder=lambda: "ha2", clock=clock, sleep=clock.sleep
    )
    assert not seen.whole and seen.holders == ("ha2",)
    [verdict] = check_vip(expect, seen)
    assert not verdict.ok and "not whole again" in verdict.detail


def test_no_fault_hit_a_balancer_fails_the_vip_expectation(tmp_path):
    """The stop never happened (the load ended first): there is no balancer to judge, so it fails."""
    expect = catalogue(pair(tmp_path))[0]["failback-balancer"].expect
    [verdict] = check_vip(expect, None)
    assert not verdict.ok

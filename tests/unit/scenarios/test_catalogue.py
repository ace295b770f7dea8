"""The built-in scenarios: the seed's five and the fault scenarios, bound to the topology's names."""

from __future__ import annotations

from relevo.scenarios.catalogue import SEED_FIVE, catalogue, names
from relevo.scenarios.model import Action, Model
from relevo.topology import parse_topology


def topology_of(text: str, tmp_path):
    return parse_topology(text, source=None, state_dir=tmp_path / ".relevo")


def test_the_seed_layout_runs_every_built_in_scenario(tmp_path):
    """With the seed's four web nodes, all twenty scenarios are available, in catalogue order."""
    available, unavailable = catalogue(topology_of("", tmp_path))
    assert list(available) == list(names())
    assert not unavailable
    assert len(available) == 20


def test_the_seed_five_are_static_closed_loop_runs_with_the_seeds_plan(tmp_path):
    """The seed's five: 1000 threads x 50 loops, ramp-up 1 s, the controller off, no fault, and each
    carries the seed's published row; standbys in the 'backup running' rows are in rotation."""
    available, _ = catalogue(topology_of("", tmp_path))
    for name in SEED_FIVE:
        scenario = available[name]
        assert scenario.load.model is Model.CLOSED
        assert (scenario.load.threads, scenario.load.loops, scenario.load.ramp_up_s) == (1000, 50, 1.0)
        assert scenario.setup.controller is False
        assert scenario.faults == ()
        assert scenario.seed_row == name
    assert available["no-servers"].setup.running == ()
    assert available["two-plus-one-standby"].setup.in_rotation == ("web1bck",)
    assert available["two-plus-two-standbys"].setup.in_rotation == ("web1bck", "web2bck")
    assert "in rotation" in available["two-plus-two-standbys"].description


def test_fault_scenarios_default_to_the_open_model_with_faults_on_the_timeline(tmp_path):
    """Fault scenarios run open loop; single faults expect 0 failed requests; kill-both with cold
    standbys is measured, with warm ones it must lose nothing."""
    cold, _ = catalogue(topology_of("", tmp_path))
    for name in ("kill-web1", "hang-web2", "hang-web2-workers", "flap-web1", "recover-web1"):
        scenario = cold[name]
        assert scenario.load.model is Model.OPEN
        assert scenario.expect.max_failed == 0
        assert scenario.faults
    assert [(f.action, f.node) for f in cold["hang-web2-workers"].faults] == [(Action.HANG_WORKERS, "web2")]
    assert cold["kill-both"].expect.max_failed is None
    warm, _ = catalogue(topology_of("standby: {temperature: warm}\n", tmp_path))
    assert warm["kill-both"].expect.max_failed == 0


def test_scenarios_use_the_topologys_own_names_and_skip_what_it_cannot_play(tmp_path):
    """A topology with one primary named `alpha` and its standby: scenarios needing a second primary are
    unavailable, with the reason; the others name `alpha`."""
    text = "nodes:\n  alpha: {role: web}\n  alpha2: {role: standby, standby_for: alpha}\n"
    available, unavailable = catalogue(topology_of(text, tmp_path))
    assert "two-servers" in unavailable
    assert "web2" in unavailable["two-servers"]
    assert available["kill-web1"].faults[0].node == "alpha"
    assert available["kill-web1"].expect.served_by == ("alpha2",)
    assert set(available) | set(unavailable) == set(names())


def test_a_pair_adds_its_balancer_faults_and_keeps_the_other_rows(tmp_path):
    """On a pair: the single's rows (kill-balancer with the pair's expectation), then hang-balancer,
    lose-balancer-host and failback-balancer, each (and reload-balancer) aimed at the balancer in charge
    when applied (named ha1 until then); the single keeps its rows, aimed at its one balancer."""
    single, _ = catalogue(topology_of("", tmp_path))
    pair, unavailable = catalogue(topology_of("balancer: {peer: ha2}\n", tmp_path))
    assert not unavailable
    assert list(pair) == list(names(pair=True))
    assert set(single) < set(pair)
    assert [n for n in pair if n not in single] == [
        "hang-balancer",
        "lose-balancer-host",
        "failback-balancer",
    ]
    for name in ("kill-balancer", "hang-balancer", "lose-balancer-host", "reload-balancer"):
        assert [(f.node, f.in_charge) for f in pair[name].faults] == [("ha1", True)]
        assert pair[name].faults[0].label.endswith(" the balancer in charge")
        assert "the balancer in charge" in pair[name].description
    assert all(f.in_charge for f in pair["failback-balancer"].faults)
    assert not any(f.in_charge for s in single.values() for f in s.faults)
    assert not any(f.in_charge for f in pair["kill-web1"].faults)
    # Locally the survivor serves new connections at once: at most one in-flight request per connection.
    assert pair["kill-balancer"].expect.max_failed == 500
    assert single["kill-balancer"].expect.max_failed is None
    assert pair["failback-balancer"].expect.max_failed == 0
    assert [f.action for f in pair["failback-balancer"].faults] == [Action.STOP, Action.START]
    for name in set(single) - {"kill-balancer"}:
        assert pair[name].expect == single[name].expect


def test_a_pair_with_a_vip_expects_the_address_to_move(tmp_path):
    """On LXD the balancer faults expect the controller to journal `vip-moved`."""
    text = "provider: lxd\nnetwork: 10.205.0.0/24\nbalancer: {peer: ha2, vip: 10.205.0.10}\n"
    pair, _ = catalogue(topology_of(text, tmp_path))
    for name in ("kill-balancer", "hang-balancer", "lose-balancer-host"):
        assert pair[name].expect.events == ("vip-moved",)

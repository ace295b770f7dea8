"""A pair of balancers in the topology: one key away, and every mistake a line-exact error."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from relevo.cli import cli
from relevo.errors import TopologyError
from relevo.topology import parse_topology

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def parse(text: str):
    return parse_topology(text, source=Path("/x/relevo.yaml"), state_dir=Path("/x/.relevo"))


def error_of(text: str) -> TopologyError:
    with pytest.raises(TopologyError) as info:
        parse(text)
    return info.value


def test_one_balancer_stays_the_default():
    """Without `peer:` there is no pair, and the nodes keep the seed's addresses."""
    topology = parse("balancer: {name: ha1}\n")
    assert topology.pair is None
    assert [b.name for b in topology.balancers] == ["ha1"]
    assert topology.node("web1").address == "127.100.0.3"


def test_a_peer_is_one_key_away():
    """`peer: ha2` adds a second balancer with the first one's settings, the next address, its own stats
    and the same frontend (both HAProxy processes bind it locally)."""
    topology = parse("balancer: {name: ha1, peer: ha2, retries: 5}\n")
    assert topology.pair is not None
    peer = topology.pair.peer
    assert (peer.name, peer.address, peer.retries) == ("ha2", "127.100.0.3", 5)
    assert peer.frontend == topology.balancer.frontend
    assert (peer.stats.address, peer.stats.port) == ("127.100.0.3", 8404)
    assert topology.node_names[:2] == ("ha1", "ha2")
    assert topology.node("web1").address == "127.100.0.4"
    assert topology.is_balancer("ha2") and not topology.is_balancer("web1")


def test_an_lxd_pair_reads_its_vrrp_settings():
    """On LXD the pair shares a VIP; failback, the router id and the advert interval are read too."""
    topology = parse(
        "provider: lxd\nnetwork: 10.205.0.0/24\n"
        "balancer: {peer: ha2, vip: 10.205.0.10, failback: true, router_id: 7, advert: 200ms}\n"
    )
    assert topology.pair is not None
    assert (topology.pair.vip, topology.pair.failback, topology.pair.router_id) == ("10.205.0.10", True, 7)
    assert topology.pair.advert_s == pytest.approx(0.2)


def test_an_lxd_pair_shares_the_networks_tenth_address_by_default():
    """Without `vip:` an LXD pair shares its network's .10, and both balancers' frontend is that VIP (so
    examples/pair-lxd.yaml runs after changing only `name:` and `network:`)."""
    topology = parse("provider: lxd\nnetwork: 10.205.4.0/24\nbalancer: {peer: ha2}\n")
    assert topology.pair is not None and topology.pair.vip == "10.205.4.10"
    assert {b.frontend.address for b in topology.balancers} == {"10.205.4.10"}


BAD = [
    (
        "balancer: {name: ha1, peer: web1}\n",
        1,
        29,
        "balancer.peer: 'web1' is also a web node's name",
    ),
    (
        "balancer: {name: ha1, peer: ha1}\n",
        1,
        29,
        "balancer.peer: 'ha1' is the balancer's own name: two balancers cannot share one node (one LXD "
        "container",
    ),
    (
        "network: 127.105.9.0/24\nbalancer:\n  peer: ha2\n  vip: 127.105.9.10\n",
        4,
        8,
        "balancer.vip: the local provider has no virtual address",
    ),
    (
        "provider: lxd\nnetwork: 10.205.0.0/24\nbalancer:\n  peer: ha2\n  vip: 10.205.1.10\n",
        5,
        8,
        "balancer.vip: 10.205.1.10 is outside the cluster's network 10.205.0.0/24",
    ),
    (
        "provider: lxd\nnetwork: 10.205.0.0/24\nbalancer:\n  peer: ha2\n  vip: 10.205.0.4\n",
        5,
        8,
        "balancer.vip: 10.205.0.4 is already nodes.web1's address",
    ),
    (
        "provider: lxd\nnetwork: 10.205.0.0/24\nbalancer:\n  peer: ha2\n  vip: 10.205.0.3\n",
        5,
        8,
        "balancer.vip: 10.205.0.3 is already the peer ha2's address",
    ),
    (
        "provider: lxd\nnetwork: 10.205.0.0/24\nbalancer:\n  peer: ha2\n  peer_address: 10.205.0.10\n",
        4,
        9,
        "balancer.vip: 10.205.0.10 is already the peer ha2's address",
    ),
    (
        "balancer: {vip: 127.100.0.10}\n",
        1,
        17,
        "balancer.vip: only a pair has it; add `peer: NAME`",
    ),
    (
        "balancer: {peer: ha2, peer_address: 127.100.0.2}\n",
        1,
        37,
        "balancer.peer_address: 127.100.0.2 is already the balancer ha1's address",
    ),
    (
        "balancer: {peer: ha2, advert: 15ms5}\n",
        1,
        31,
        "balancer.advert: expected a duration",
    ),
    (
        "balancer: {peer: ha2, advert: 105ms}\n",
        1,
        31,
        "balancer.advert: VRRP v3 counts it in hundredths of a second",
    ),
]


@pytest.mark.parametrize(("text", "line", "column", "expected"), BAD)
def test_pair_mistakes_name_their_line(text, line, column, expected):
    """A peer that is a web node or the balancer itself, a VIP outside the network, on a node's address,
    on the local provider or missing on LXD: each names the line and column of the key at fault."""
    error = error_of(text)
    assert (error.line, error.column) == (line, column), str(error)
    assert error.reason.startswith(expected), error.reason


@pytest.mark.parametrize(("text", "line", "column", "expected"), BAD[:5])
def test_the_cli_refuses_a_bad_pair_with_exit_2_and_starts_nothing(
    tmp_path, monkeypatch, text, line, column, expected
):
    """`relevo up` on a bad pair prints file:line:column and the reason, exits 2, makes no state."""
    (tmp_path / "relevo.yaml").write_text(text)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["up"])
    assert result.exit_code == 2, result.output
    assert f"relevo.yaml:{line}:{column}: {expected}" in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert not (tmp_path / ".relevo").exists()


@pytest.mark.parametrize("name", ["pair.yaml", "pair-lxd.yaml"])
def test_the_examples_are_pairs(name):
    """The README's examples load as pairs (the LXD one with its VIP on its own network)."""
    path = EXAMPLES / name
    topology = parse_topology(path.read_text(), source=path, state_dir=path.parent / ".relevo")
    assert topology.pair is not None
    assert (topology.pair.vip is None) == (topology.balancer.provider == "local")

"""An LXD pair end to end: two balancer containers with keepalived and the VIP on the bridge that
examples/pair-lxd.yaml (its name and network changed, the test's image named) makes relevo create. Under
a bounded open-loop load to the VIP, the balancer holding it loses its HAProxy (SIGKILL), then hangs
(frozen), then loses its container (force-stopped): each time the VIP moves to the other balancer, the
controller journals `vip-moved` (the pair scenarios' expectation) and the frontend answers again; the
failed requests and the journalled move times are printed. Then kill-balancer and hang-balancer run as
scenarios in a row, the second aimed at the balancer the first left holding the VIP. One pair for all
(the tier's time budget), then `relevo destroy` leaves LXD as it was."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from relevo import lifecycle
from relevo.cluster import Cluster
from relevo.controller.journal import read_events
from relevo.loadgen.engine import LoadRun
from relevo.lxd.client import LXDClient
from relevo.model import Topology
from relevo.providers.base import Fault
from relevo.providers.lxd import LXDProvider
from relevo.services.haproxy import runtime_sockets
from relevo.topology import load_topology

from .conftest import (
    RATE_RPS,
    TierImage,
    get,
    lxc_listings,
    lxd_inventory,
    open_load,
    up_on_lxd,
    wait_until,
)

pytestmark = [pytest.mark.lxd, pytest.mark.timeout(900)]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "pair-lxd.yaml"
CLIENT_TIMEOUT_S = 5.0
# The pair's scenarios run in a row, each aimed at the VIP's holder of its time.
ROW = ("kill-balancer", "hang-balancer", "failback-balancer")
ROW_LOAD_S = 10  # each scenario's load: its faults are over by 4 s, the start's container up well before
# failback-balancer with `failback: true`: the move back comes once the started container's HAProxy answers,
# which must be while the load runs. At load 18-21 it came 10.4 s in (the start at 4 s took 5 s): 16 s.
FAILBACK_LOAD_S = 16


@dataclass
class Pair:
    topology: Topology
    cluster: Cluster
    provider: LXDProvider
    client: LXDClient
    before: dict[str, object]
    listed: dict[str, list[str]]

    @property
    def url(self) -> str:
        return self.topology.balancer.frontend.url + "/"

    def other(self, name: str) -> str:
        return next(b.name for b in self.topology.balancers if b.name != name)

    def alive(self, name: str) -> bool:
        """The balancer's HAProxy answers keepalived's checker's question, through its stats proxy."""
        with contextlib.suppress(OSError):
            return get(self.topology.balancer_named(name).stats.url + "/relevo-alive")[0] == 200
        return False

    def moves(self) -> list[dict[str, object]]:
        return [e for e in read_events(self.cluster.paths.events) if e.get("kind") == "vip-moved"]

    def explain(self) -> str:
        events = read_events(self.cluster.paths.events, 30)
        return "\n" + "\n".join(str(e) for e in events) + f"\nholder: {self.provider.vip_holder()}"


@pytest.fixture(scope="module")
def lxd_pair(
    lxd: LXDClient, tier_image: TierImage, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pair]:
    """examples/pair-lxd.yaml up on LXD (its balancer and nodes sections under the test's name, network
    and image); destroyed (and the image removed) at the end, whatever happened."""
    body = "balancer:" + EXAMPLE.read_text().split("\nbalancer:", 1)[1]
    with up_on_lxd(lxd, tier_image, tmp_path_factory.mktemp("pair"), "rp", body) as up:
        cluster = Cluster(up.topology)
        provider = cluster.provider_for(up.topology.balancer.name)
        assert isinstance(provider, LXDProvider)
        yield Pair(up.topology, cluster, provider, lxd, up.before, up.listed)


def pair_load(pair: Pair) -> LoadRun:
    # Fewer connections and a shorter client timeout than a five-node cluster's load: two balancers
    # and two web containers share the two cores with the client.
    return open_load(pair.url, threads=100, timeout_s=CLIENT_TIMEOUT_S)


def answered(load: LoadRun) -> int:
    return sum(sum(s.served_by.values()) for s in load.seconds())


def holder_now(pair: Pair) -> str:
    """The balancer holding the VIP, once both answer and the host sees one (after the last fault)."""
    wait_until(
        lambda: all(pair.alive(b.name) for b in pair.topology.balancers),
        "both balancers answer",
        timeout_s=120,
        explain=pair.explain,
    )
    found: list[str] = []

    def seen() -> str:
        found.append(pair.provider.vip_holder() or "")
        return found[-1]

    wait_until(seen, "the VIP has a holder", explain=pair.explain)
    return found[-1]


def fault_moves_the_vip(pair: Pair, fault: Fault, what: str) -> None:
    """Under load: `fault` on the VIP's holder → the VIP on the other balancer, `vip-moved` journalled
    from the one to the other, and the frontend answering again."""
    holder = holder_now(pair)
    other = pair.other(holder)
    moves_before = len(pair.moves())
    with pair_load(pair) as load:
        wait_until(lambda: answered(load) > 100, "the VIP serves the load")
        pair.cluster.fault(holder, fault)
        wait_until(
            lambda: pair.provider.vip_holder() == other,
            f"the VIP moves to {other}",
            timeout_s=30,
            explain=pair.explain,
        )
        wait_until(
            lambda: len(pair.moves()) > moves_before,
            "the controller journals vip-moved",
            timeout_s=30,
            explain=pair.explain,
        )
        after = answered(load)
        wait_until(lambda: answered(load) > after + 100, "the frontend answers again", explain=pair.explain)
        load.stop()
        result = load.wait(timeout_s=CLIENT_TIMEOUT_S + 5)
    move = pair.moves()[moves_before]
    durations = move.get("durations")
    moved_s = durations.get("moved_s") if isinstance(durations, dict) else None
    total = result.stats.total()
    print(
        f"\n{what}: {holder} → {other}; {total.errors} of {total.count} requests failed at "
        f"{RATE_RPS:.0f} req/s ({dict(total.error_kinds)}); journalled moved_s "
        f"{moved_s}"
    )
    assert (move["from"], move["to"]) == (holder, other), pair.explain()
    assert total.count > 200, f"too little traffic to judge: {total.count} samples"
    assert total.dropped == 0
    if fault is Fault.HANG:
        pair.cluster.fault(holder, Fault.RESUME)


def test_the_pair_serves_at_the_vip_from_the_host(lxd_pair: Pair) -> None:
    """The frontend is the VIP on the bridge: the host's GETs are answered by both web nodes, one
    balancer holds the address, both containers' NICs have IPv4 filtering off, status says who holds it."""
    pair = lxd_pair
    assert pair.topology.pair is not None
    assert pair.url == f"http://{pair.topology.pair.vip}:8080/"
    answers = [get(pair.url) for _ in range(20)]
    assert {status for status, _ in answers} == {200}
    assert {server for _, server in answers} == {"web1", "web2"}
    assert holder_now(pair) in ("ha1", "ha2")
    for balancer in pair.topology.balancers:
        nic = pair.client.instance(pair.provider.container_name(balancer.name)).devices["eth0"]
        assert nic["security.ipv4_filtering"] == "false"


def test_a_killed_haproxy_hands_the_vip_over(lxd_pair: Pair) -> None:
    """kill-balancer: the holder's HAProxy SIGKILLed (its container lives): keepalived's checker puts it
    in FAULT, the VIP moves, `vip-moved` is journalled and the frontend answers again."""
    fault_moves_the_vip(lxd_pair, Fault.CRASH_SERVICE, "kill-balancer")


def test_a_frozen_balancer_hands_the_vip_over(lxd_pair: Pair) -> None:
    """hang-balancer: the holder's container frozen: its adverts stop, the peer takes the VIP."""
    fault_moves_the_vip(lxd_pair, Fault.HANG, "hang-balancer")


def test_a_lost_balancer_container_hands_the_vip_over(lxd_pair: Pair) -> None:
    """lose-balancer-host: the holder's container force-stopped: the peer takes the VIP; the controller
    starts the lost one again."""
    fault_moves_the_vip(lxd_pair, Fault.CRASH, "lose-balancer-host")


def test_balancer_scenarios_in_a_row_each_fault_the_vip_holder(lxd_pair: Pair) -> None:
    """`relevo scenarios --only kill-balancer,hang-balancer,failback-balancer` on the pair: the kill moves
    the VIP (it stays on the other balancer: nopreempt), so the hang must fault that other one, not the
    first balancer, and the failback the first again (the hang moved the VIP back to it); each meets its
    expectation (`vip-moved` journalled; the failback: no failed request on the planned moves, and the VIP
    still on the survivor once the stopped balancer is back), their markers name the balancer hit, and
    `relevo status --json` lists both balancers, one holding the VIP."""
    pair = lxd_pair
    holder_now(pair)
    source = pair.topology.source
    assert source is not None
    data, done = scenarios_json(pair, source, ROW)
    hit = {name: balancer_hit(name, run) for name, run in data.items()}
    # The first is whoever held the VIP when the kill came, not a read before the run: in one run under load
    # 21 the kill found the VIP on the other balancer than that read (no fault between), the row then right.
    first = hit["kill-balancer"]
    expected = {"kill-balancer": first, "hang-balancer": pair.other(first), "failback-balancer": first}
    assert hit == expected, f"{hit}{pair.explain()}"
    settled = [v for v in data["failback-balancer"]["verdicts"] if "the VIP stays on" in v["what"]]
    assert [v["what"] for v in settled] == [f"expect: the VIP stays on {pair.other(first)}"], settled
    print(f"\nfailback-balancer: {settled[0]['detail']}; {data['failback-balancer']['verdicts']}")
    assert done.returncode == 0, done.stderr[-3000:]

    def listed() -> dict[str, object]:
        """`relevo status --json`'s balancers: whether each holds the VIP, as the controller last saw."""
        argv = [sys.executable, "-m", "relevo", "-f", str(source), "status", "--json"]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True).stdout
        return {b["name"]: b["holds_vip"] for b in json.loads(out)["balancers"]}

    wait_until(
        lambda: list(listed().values()).count(True) == 1,
        "status --json names one VIP holder",
        timeout_s=30,
        explain=lambda: str(listed()),
    )
    assert set(listed()) == {"ha1", "ha2"}


def test_failback_true_moves_the_vip_back_to_the_first_balancer_with_no_failed_request(
    lxd_pair: Pair,
) -> None:
    """`balancer.failback: true` on the running pair (its file edited, `relevo up` again: keepalived
    reloaded without `nopreempt`): the VIP settles on the first balancer; then `failback-balancer` stops
    it and starts it again under load: the VIP moves to the peer and back to the first balancer while the
    load runs, each move journalled as `vip-moved`, no request failed, and the VIP ends on the first."""
    pair = lxd_pair
    source = pair.topology.source
    assert source is not None
    text = source.read_text()
    assert text.count("failback: false") == 1, text
    source.write_text(text.replace("failback: false", "failback: true"))
    edited = load_topology(source)
    assert edited.pair is not None and edited.pair.failback
    lifecycle.up(edited)
    first, other = pair.topology.balancer.name, pair.other(pair.topology.balancer.name)
    holder_now(pair)
    wait_until(
        lambda: pair.provider.vip_holder() == first,
        f"the VIP on {first}, which preempts now",
        timeout_s=30,
        explain=pair.explain,
    )
    data, done = scenarios_json(pair, source, ("failback-balancer",), load_s=FAILBACK_LOAD_S)
    run = data["failback-balancer"]
    assert balancer_hit("failback-balancer", run) == first, pair.explain()
    back = [v for v in run["verdicts"] if "the VIP back on" in v["what"]]
    assert [(v["what"], v["ok"]) for v in back] == [(f"expect: the VIP back on {first}", True)], back
    moves = [(m["label"].split()[1], m["t_s"]) for m in run["markers"] if m["kind"] == "vip-moved"]
    print(f"\nfailback-balancer with failback: true: moves {moves}; {run['verdicts']}")
    assert [label for label, _ in moves] == [f"{first}→{other}", f"{other}→{first}"], pair.explain()
    assert moves[-1][1] < FAILBACK_LOAD_S, f"the move back came {moves[-1][1]} s in: after the load"
    assert done.returncode == 0, done.stderr[-3000:]


def scenarios_json(
    pair: Pair, source: Path, names: tuple[str, ...], *, load_s: int = ROW_LOAD_S
) -> tuple[dict[str, Any], subprocess.CompletedProcess[str]]:
    """`relevo scenarios --only NAMES --json` on the pair at 200 req/s for `load_s` each: each scenario's
    result, once every one passed (all the broken verdicts said at once, whole: a long message would be
    cut), and the run itself."""
    done = subprocess.run(
        [
            sys.executable,
            *("-m", "relevo", "-f", str(source), "scenarios", "--json", "--no-report"),
            *("--only", ",".join(names), "--rate", "200", "--duration", f"{load_s}s"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    data = json.loads(done.stdout) if done.stdout.startswith("{") else {}
    assert list(data) == list(names), done.stdout[-3000:] + done.stderr[-3000:]
    broken = {name: [v for v in run["verdicts"] if not v["ok"]] for name, run in data.items()}
    assert all(run["passed"] for run in data.values()), f"{broken}{pair.explain()}"
    return data, done


def balancer_hit(name: str, run: dict[str, Any]) -> str:
    """The balancer a pair scenario's faults hit: its first fault marker names it, the one in charge."""
    faults = [m["label"] for m in run["markers"] if m["source"] == "fault"]
    assert len(faults) == (2 if name == "failback-balancer" else 1), faults
    assert "(in charge: it holds the VIP" in faults[0], faults
    return str(faults[0].split()[1])


def test_destroy_leaves_lxd_as_it_was(lxd_pair: Pair) -> None:
    """`relevo destroy` of the pair removes both balancer containers, the web containers and the bridge,
    and nothing else."""
    pair = lxd_pair
    holder_now(pair)  # the lost one is back: destroy removes a running pair
    lifecycle.destroy(pair.topology)
    assert lxc_listings() == pair.listed
    assert lxd_inventory(pair.client) == pair.before
    assert not any(socket.exists() for socket in runtime_sockets(pair.topology).values())

"""The built-in scenarios: the seed's five layouts, then the failures the seed never tried.

They are written for the seed's shape (two primaries, each with its standby) and bound to the
topology's own node names: the first primary plays `web1`, the second `web2`, their standbys `web1bck`
and `web2bck`. A scenario that needs a node the topology lacks is listed as unavailable, with why.

The seed's five are static layouts (the controller is off, nothing fails): in its "backup running" runs
the started standbys were in the round-robin pool beside the primaries, and so they are here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from relevo.controller.events import EventKind
from relevo.model import Temperature, Topology
from relevo.providers.base import Impairment
from relevo.scenarios.model import (
    LASTING_ACTIONS,
    OPEN_CONNECTIONS,
    Action,
    Expectation,
    FaultStep,
    LoadSettings,
    Scenario,
    Setup,
)

SEED_FIVE = ("no-servers", "one-server", "two-servers", "two-plus-one-standby", "two-plus-two-standbys")
FAULT_AT_S = 2.0
# The 503 page HAProxy serves when no server is up: failures of `no-servers` must all be this code.
UNAVAILABLE_CODE = "503"


@dataclass(frozen=True, slots=True)
class Cast:
    """Who plays the seed's roles in this topology (None: nobody)."""

    web1: str | None
    web2: str | None
    web1bck: str | None
    web2bck: str | None
    balancer: str

    @classmethod
    def of(cls, topology: Topology) -> Cast:
        primaries = [n.name for n in topology.primaries]
        web1 = primaries[0] if primaries else None
        web2 = primaries[1] if len(primaries) > 1 else None

        def standby(primary: str | None) -> str | None:
            node = topology.standby_of(primary) if primary else None
            return node.name if node else None

        return cls(web1, web2, standby(web1), standby(web2), topology.balancer.name)


def catalogue(topology: Topology) -> tuple[dict[str, Scenario], dict[str, str]]:
    """The built-in scenarios this topology can run, in order, and the others with the reason."""
    cast = Cast.of(topology)
    available: dict[str, Scenario] = {}
    unavailable: dict[str, str] = {}
    builders = _BUILDERS if topology.pair is None else _PAIR_BUILDERS
    for name, needs, build in builders:
        missing = [role for role in needs if getattr(cast, role) is None]
        if missing:
            unavailable[name] = "the topology has no node for " + ", ".join(missing)
            continue
        available[name] = build(cast, topology)
    return available, unavailable


def names(*, pair: bool = False) -> tuple[str, ...]:
    """The built-in scenarios, in order: a single balancer's, or a pair's."""
    return tuple(name for name, _, _ in (_PAIR_BUILDERS if pair else _BUILDERS))


# --- the seed's five ----------------------------------------------------------------------------------
def _static(running: tuple[str | None, ...], rotation: tuple[str | None, ...] = ()) -> Setup:
    return Setup(
        running=tuple(n for n in running if n),
        in_rotation=tuple(n for n in rotation if n),
        controller=False,
    )


def _no_servers(c: Cast, t: Topology) -> Scenario:
    return Scenario(
        name="no-servers",
        description="HAProxy with every web server stopped: each request gets the custom 503 page",
        load=LoadSettings.seed(),
        setup=_static(()),
        expect=Expectation(min_error_pct=100.0, error_codes=(UNAVAILABLE_CODE,)),
        seed_row="no-servers",
    )


def _one_server(c: Cast, t: Topology) -> Scenario:
    return Scenario(
        name="one-server",
        description=f"{c.web1} alone behind HAProxy",
        load=LoadSettings.seed(),
        setup=_static((c.web1,)),
        expect=Expectation(max_failed=0, served_by=(c.web1,) if c.web1 else ()),
        seed_row="one-server",
    )


def _two_servers(c: Cast, t: Topology) -> Scenario:
    return Scenario(
        name="two-servers",
        description=f"{c.web1} and {c.web2}, round-robin",
        load=LoadSettings.seed(),
        setup=_static((c.web1, c.web2)),
        expect=Expectation(max_failed=0, served_by=_present(c.web1, c.web2)),
        seed_row="two-servers",
    )


def _two_plus_one(c: Cast, t: Topology) -> Scenario:
    return Scenario(
        name="two-plus-one-standby",
        description=f"{c.web1}, {c.web2} and the standby {c.web1bck} started and in rotation "
        "(the seed's 'backup running' meaning)",
        load=LoadSettings.seed(),
        setup=_static((c.web1, c.web2, c.web1bck), (c.web1bck,)),
        expect=Expectation(max_failed=0, served_by=_present(c.web1, c.web2, c.web1bck)),
        seed_row="two-plus-one-standby",
    )


def _two_plus_two(c: Cast, t: Topology) -> Scenario:
    return Scenario(
        name="two-plus-two-standbys",
        description=f"{c.web1}, {c.web2} and both standbys started and in rotation "
        "(the seed's 'backups running' meaning)",
        load=LoadSettings.seed(),
        setup=_static((c.web1, c.web2, c.web1bck, c.web2bck), (c.web1bck, c.web2bck)),
        expect=Expectation(max_failed=0, served_by=_present(c.web1, c.web2, c.web1bck, c.web2bck)),
        seed_row="two-plus-two-standbys",
    )


# --- failures under load ---------------------------------------------------------------------------------
def _faulted(
    name: str, description: str, faults: list[tuple[float, Action, str | None]], expect: Expectation
) -> Scenario:
    return Scenario(
        name=name,
        description=description,
        load=LoadSettings.open_loop(),
        faults=tuple(FaultStep(at_s=at, action=action, node=node) for at, action, node in faults),
        expect=expect,
    )


def _zero_failed(*served_by: str | None, events: tuple[str, ...] = ("failover",)) -> Expectation:
    return Expectation(max_failed=0, served_by=_present(*served_by), events=events)


def _kill_web1(c: Cast, t: Topology) -> Scenario:
    return _faulted(
        "kill-web1",
        f"SIGKILL {c.web1} under load: {c.web1bck} takes its place",
        [(FAULT_AT_S, Action.KILL, c.web1)],
        _zero_failed(c.web1bck),
    )


def _kill_web1_no_standby(c: Cast, t: Topology) -> Scenario:
    # Measured, nothing expected: beside kill-web1 it shows what the standby buys. With nodes that have a
    # CPU quota (capacity.cpu) and a rate one node cannot carry, the survivor's queue and latency grow.
    return Scenario(
        name="kill-web1-no-standby",
        description=f"SIGKILL {c.web1} with the controller off: {c.web2} alone carries the load "
        "(compare with kill-web1: what the standby buys)",
        load=LoadSettings.open_loop(),
        setup=Setup(controller=False),
        faults=(FaultStep(at_s=FAULT_AT_S, action=Action.KILL, node=c.web1),),
    )


def _kill_both(c: Cast, t: Topology) -> Scenario:
    warm = t.standby.temperature is Temperature.WARM
    # Cold standbys: requests that arrive while no server is up are lost; measured, not expected away.
    # Warm ones are put in service with one Runtime API call: nothing may be lost.
    expect = _zero_failed(c.web1bck, c.web2bck) if warm else Expectation(events=("failover",))
    return _faulted(
        "kill-both",
        f"SIGKILL {c.web1} and {c.web2} at once: both standbys take over ({t.standby.temperature} standbys)",
        [(FAULT_AT_S, Action.KILL, c.web1), (FAULT_AT_S, Action.KILL, c.web2)],
        expect,
    )


def _hang_web2(c: Cast, t: Topology) -> Scenario:
    return _faulted(
        "hang-web2",
        f"SIGSTOP every process of {c.web2}: alive, answering nothing",
        [(FAULT_AT_S, Action.HANG, c.web2)],
        _zero_failed(c.web2bck),
    )


def _hang_web2_workers(c: Cast, t: Topology) -> Scenario:
    return _faulted(
        "hang-web2-workers",
        f"SIGSTOP only {c.web2}'s Apache workers: its parent lives, nobody answers",
        [(FAULT_AT_S, Action.HANG_WORKERS, c.web2)],
        _zero_failed(c.web2bck),
    )


def _flap_web1(c: Cast, t: Topology) -> Scenario:
    steps: list[tuple[float, Action, str | None]] = []
    for i in range(2):
        steps += [(1.5 + 2.0 * i, Action.KILL, c.web1), (2.5 + 2.0 * i, Action.START, c.web1)]
    return _faulted(
        "flap-web1",
        f"{c.web1} killed and restarted twice, 1 s apart",
        steps,
        _zero_failed(),
    )


def _recover_web1(c: Cast, t: Topology) -> Scenario:
    scenario = _faulted(
        "recover-web1",
        f"{c.web1} killed, then started again once {c.web1bck} serves: traffic returns to it and "
        f"{c.web1bck} is drained",
        [(1.5, Action.KILL, c.web1), (2.5, Action.START, c.web1)],
        _zero_failed(c.web1bck, events=("failover", "failback")),
    )
    # The start waits for the failover too: a standby on a slow provider (an emulated VM) takes seconds.
    kill, start = scenario.faults
    return replace(scenario, faults=(kill, replace(start, after=str(EventKind.FAILOVER))))


def _maintenance_web1(c: Cast, t: Topology) -> Scenario:
    return _faulted(
        "maintenance-web1",
        f"an operator puts {c.web1} in MAINT (a planned stop), then back in service",
        [(FAULT_AT_S, Action.MAINTENANCE, c.web1), (FAULT_AT_S + 3.0, Action.READY, c.web1)],
        _zero_failed(events=()),
    )


def _reload_balancer(c: Cast, t: Topology) -> Scenario:
    who = c.balancer if t.pair is None else _in_charge(t)
    return _faulted(
        "reload-balancer",
        f"{who} reloads its configuration mid-run (new workers, old ones finish)",
        [(FAULT_AT_S, Action.RELOAD, c.balancer)],
        _zero_failed(events=()),
    )


def _kill_balancer(c: Cast, t: Topology) -> Scenario:
    return _faulted(
        "kill-balancer",
        f"SIGKILL {c.balancer}: clients are refused until the controller restarts it",
        [(FAULT_AT_S, Action.KILL, c.balancer)],
        Expectation(),
    )


# --- a pair of balancers ----------------------------------------------------------------------------------
# On a pair the balancer in charge is lost while the other serves: the VIP's holder with keepalived (LXD),
# which after a takeover is not always the first balancer (nopreempt), so each fault is aimed when it is
# applied (FaultStep.in_charge; providers/in_charge.py). Locally both HAProxy processes share the frontend
# (SO_REUSEPORT): new connections go to the survivor at once, and only requests in flight on the lost one's
# connections fail (the load's connections are spread over both: half of them at most, one request each).
# With keepalived the address moves instead: measured 0.08-0.34 s of refused requests.
def _pair_lost(c: Cast, t: Topology) -> Expectation:
    if t.pair is not None and t.pair.vip is not None:
        return Expectation(events=("vip-moved",))
    return Expectation(max_failed=OPEN_CONNECTIONS // 2)


def _in_charge(t: Topology) -> str:
    """Who the pair's faults hit, in words for a description."""
    if t.pair is not None and t.pair.vip is not None:
        return "the balancer in charge (the VIP's holder)"
    return "the balancer in charge (the first running one: both serve the frontend)"


def _at_the_one_in_charge(scenario: Scenario) -> Scenario:
    return replace(scenario, faults=tuple(replace(f, in_charge=True) for f in scenario.faults))


def _kill_balancer_pair(c: Cast, t: Topology) -> Scenario:
    assert t.pair is not None
    return _at_the_one_in_charge(
        _faulted(
            "kill-balancer",
            f"SIGKILL the HAProxy of {_in_charge(t)}: the other serves on; the lost one is restarted "
            "with the current server states",
            # With a VIP only HAProxy dies (its keepalived sees it and hands the address over); locally the
            # node is its HAProxy.
            [(FAULT_AT_S, Action.KILL_SERVICE if t.pair.vip is not None else Action.KILL, c.balancer)],
            _pair_lost(c, t),
        )
    )


def _hang_balancer(c: Cast, t: Topology) -> Scenario:
    assert t.pair is not None
    # Locally a hung HAProxy keeps its listening socket: the kernel still hands it its share of new
    # connections until the controller sees the hang (paused processes: certain) and restarts it; those
    # connections are lost. Measured, nothing promised here; with keepalived the checker's HTTP GET
    # sees the hang and the address moves.
    expect = _pair_lost(c, t) if t.pair.vip is not None else Expectation()
    return _at_the_one_in_charge(
        _faulted(
            "hang-balancer",
            f"{_in_charge(t)} hung (SIGSTOP; a frozen container): the other serves on; the hung one is "
            "restarted",
            [(FAULT_AT_S, Action.HANG, c.balancer)],
            expect,
        )
    )


def _lose_balancer_host(c: Cast, t: Topology) -> Scenario:
    assert t.pair is not None
    # The provider's crash of the whole node: a container force-stopped; locally its process group
    # SIGKILLed (a host has nothing more to lose there).
    return _at_the_one_in_charge(
        _faulted(
            "lose-balancer-host",
            f"the host of {_in_charge(t)} is lost (its container force-stopped; locally every process "
            "killed): the other serves on",
            [(FAULT_AT_S, Action.KILL, c.balancer)],
            _pair_lost(c, t),
        )
    )


def _failback_balancer(c: Cast, t: Topology) -> Scenario:
    assert t.pair is not None
    # Stopped on purpose (its server states saved, its connections closed as HAProxy stops) and started
    # again: a planned move both ways, so nothing may fail. The start goes to the balancer the stop took
    # out (the scenario's balancer in charge is resolved once). With a VIP the address leaves it, then
    # stays with the survivor (nopreempt) or moves back (`failback: true`), as the topology says.
    expect = Expectation(max_failed=0)
    if t.pair.vip is not None:
        expect = Expectation(max_failed=0, events=("vip-moved",), vip_back=t.pair.failback)
    settles = "moves back to it" if t.pair.failback else "stays with the other"
    return _at_the_one_in_charge(
        _faulted(
            "failback-balancer",
            f"{_in_charge(t)} stopped (planned), then started again: the other serves meanwhile, and the "
            "stopped one comes back with the current states"
            + (f"; the VIP {settles}" if t.pair.vip is not None else ""),
            [(1.5, Action.STOP, c.balancer), (4.0, Action.START, c.balancer)],
            expect,
        )
    )


def _reload_balancer_pair(c: Cast, t: Topology) -> Scenario:
    return _at_the_one_in_charge(_reload_balancer(c, t))


def _kill_controller(c: Cast, t: Topology) -> Scenario:
    return _faulted(
        "kill-controller",
        f"SIGKILL the controller mid-failover of {c.web1}, then start it again: it converges",
        [
            (FAULT_AT_S, Action.KILL, c.web1),
            (FAULT_AT_S + 0.15, Action.KILL_CONTROLLER, None),
            (FAULT_AT_S + 1.0, Action.START_CONTROLLER, None),
        ],
        _zero_failed(c.web1bck),
    )


# --- network faults, each for a span and healed after it --------------------------------------------------
def _lasting(action: Action, node: str | None, at_s: float, for_s: float, **amount: float) -> FaultStep:
    impairment = Impairment(fault=LASTING_ACTIONS[action], **amount)  # type: ignore[arg-type]
    return FaultStep(at_s=at_s, action=action, node=node, for_s=for_s, amount=impairment)


# A partition must outlast the failover it expects: detection plus the standby's start. A local Apache
# starts in ~0.1 s; a container in ~2 s (MEASURED.md), which a 2.5 s partition did not outlast on LXD
# (healed before web1bck served: no failover, measured in the lxd tier).
PARTITION_S = 2.5
PARTITION_CONTAINER_S = 4.0


def _partition_web1(c: Cast, t: Topology) -> Scenario:
    assert c.web1 is not None
    span = PARTITION_S if t.node(c.web1).provider == "local" else PARTITION_CONTAINER_S
    return Scenario(
        name="partition-web1",
        description=f"the balancer and the controller cannot reach {c.web1} for {span:g} s (it keeps "
        f"running): {c.web1bck} takes over, {c.web1} gets its traffic back after the heal",
        load=LoadSettings.open_loop(),
        faults=(_lasting(Action.PARTITION, c.web1, 1.5, span),),
        expect=_zero_failed(c.web1bck, events=("failover", "failback")),
    )


def _slow_web2(c: Cast, t: Topology) -> Scenario:
    # Slower than the controller's "overloaded" share (half) of its probe timeout, faster than the health
    # check's timeout, with room for the delaying proxy's own latency under load (0.3 s measured here):
    # journalled, never a failover.
    ms = round(0.6 * min(t.probe_timeout_s, t.health.timeout_s) * 1000)
    return Scenario(
        name="slow-web2",
        description=f"every answer of {c.web2} takes {ms} ms for 4 s, within the health timeout: "
        "no failover, `overloaded` journalled",
        load=LoadSettings.open_loop(),
        faults=(_lasting(Action.SLOW, c.web2, FAULT_AT_S, 4.0, ms=ms),),
        expect=Expectation(max_failed=0, events=("overloaded",), no_events=("failover",)),
    )


def _lossy_web1(c: Cast, t: Topology) -> Scenario:
    return Scenario(
        name="lossy-web1",
        description=f"5 % of the packets to and from {c.web1} lost for 4 s: what it costs (measured)",
        load=LoadSettings.open_loop(),
        faults=(_lasting(Action.LOSS, c.web1, FAULT_AT_S, 4.0, pct=5.0),),
    )


def _flap_network_web1(c: Cast, t: Topology) -> Scenario:
    return Scenario(
        name="flap-network-web1",
        description=f"{c.web1} cut off from the network three times for 1 s, 1 s apart (measured)",
        load=LoadSettings.open_loop(),
        faults=tuple(_lasting(Action.PARTITION, c.web1, 1.0 + 2.0 * i, 1.0) for i in range(3)),
    )


def _present(*nodes: str | None) -> tuple[str, ...]:
    return tuple(n for n in nodes if n)


_BUILDERS = (
    ("no-servers", (), _no_servers),
    ("one-server", ("web1",), _one_server),
    ("two-servers", ("web1", "web2"), _two_servers),
    ("two-plus-one-standby", ("web1", "web2", "web1bck"), _two_plus_one),
    ("two-plus-two-standbys", ("web1", "web2", "web1bck", "web2bck"), _two_plus_two),
    ("kill-web1", ("web1", "web1bck"), _kill_web1),
    ("kill-web1-no-standby", ("web1", "web2"), _kill_web1_no_standby),
    ("kill-both", ("web1", "web2", "web1bck", "web2bck"), _kill_both),
    ("hang-web2", ("web2", "web2bck"), _hang_web2),
    ("hang-web2-workers", ("web2", "web2bck"), _hang_web2_workers),
    ("flap-web1", ("web1", "web1bck"), _flap_web1),
    ("recover-web1", ("web1", "web1bck"), _recover_web1),
    ("maintenance-web1", ("web1", "web2"), _maintenance_web1),
    ("reload-balancer", ("web1",), _reload_balancer),
    ("kill-balancer", ("web1",), _kill_balancer),
    ("kill-controller", ("web1", "web1bck"), _kill_controller),
    ("partition-web1", ("web1", "web1bck"), _partition_web1),
    ("slow-web2", ("web2",), _slow_web2),
    ("lossy-web1", ("web1",), _lossy_web1),
    ("flap-network-web1", ("web1",), _flap_network_web1),
)

# A pair of balancers: the same rows, the balancer's faults with the pair's expectations, and the pair's own.
_PAIR_BUILDERS = (
    *(
        (n, needs, _reload_balancer_pair if n == "reload-balancer" else build)
        for n, needs, build in _BUILDERS
        if n != "kill-balancer"
    ),
    ("kill-balancer", ("web1",), _kill_balancer_pair),
    ("hang-balancer", ("web1",), _hang_balancer),
    ("lose-balancer-host", ("web1",), _lose_balancer_host),
    ("failback-balancer", ("web1",), _failback_balancer),
)

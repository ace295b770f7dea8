"""The controller's new states, tick by tick on the in-memory fake: starting and stopping off the tick,
overloaded, a hung balancer, operator maintenance, and a journal that tells only what happened."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import pytest

from relevo.errors import RuntimeAPIError
from relevo.haproxy.runtime import AdminState
from relevo.providers.base import NodeState

from .fakes import World, controller, events, run, topology


@pytest.fixture
def topo(tmp_path: Path):
    return topology(tmp_path)


def serving(world: World, standby: str, primary: str) -> bool:
    return (
        world.nodes[standby].process is NodeState.RUNNING
        and world.servers[standby].admin is AdminState.READY
        and world.servers[standby].up
        and world.servers[primary].admin is not AdminState.READY
    )


def state(topo) -> dict[str, Any]:
    return json.loads((topo.state_dir / "controller-state.json").read_text())


# --- starting / stopping off the tick --------------------------------------------------------------
def test_slow_start_of_one_standby_does_not_delay_the_other_pair(topo):
    """web1bck takes 5 s to start; web2 failing meanwhile is still replaced within a few ticks."""
    world = World.seed(topo)
    ctl = controller(topo, world)
    run(world, ctl, 1)
    world.nodes["web1bck"].action_s = 5.0
    world.nodes["web1"].process = NodeState.STOPPED
    run(world, ctl, 0.3)
    assert state(topo)["nodes"]["web1bck"]["busy"] == "starting"
    world.nodes["web2"].process = NodeState.STOPPED
    run(world, ctl, 0.4)
    assert serving(world, "web2bck", "web2"), "web2's failover waited for web1bck's start"
    assert world.nodes["web1bck"].process is NodeState.STOPPED, "the slow start is not done yet"
    run(world, ctl, 5)
    assert serving(world, "web1bck", "web1")
    assert world.starts["web1bck"] == 1, "a start still running was submitted again"


def test_primary_failing_during_the_standby_stop_waits_for_the_stop_then_starts_it(topo):
    """The standby's stop (failback) takes 2 s; web1 dies again meanwhile: the stop ends, then the
    standby is started again and serves; never two actions on one node at once."""
    world = World.seed(topo)
    ctl = controller(topo, world)
    world.nodes["web1"].process = NodeState.STOPPED
    run(world, ctl, 1)
    world.nodes["web1"].process = NodeState.RUNNING
    world.nodes["web1bck"].action_s = 2.0
    for _ in range(60):  # until the failback's stop is under way
        run(world, ctl, 0.1)
        if state(topo)["nodes"]["web1bck"]["busy"] == "stopping":
            break
    assert state(topo)["nodes"]["web1bck"]["busy"] == "stopping"
    world.nodes["web1"].process = NodeState.STOPPED
    run(world, ctl, 1)
    assert world.starts["web1bck"] == 1, "started while its stop still ran"
    run(world, ctl, 4)
    assert world.stops["web1bck"] == 1
    assert world.starts["web1bck"] == 2
    assert serving(world, "web1bck", "web1")


def test_start_past_the_action_timeout_is_a_failure_and_retried(tmp_path):
    """A start still running after `action_timeout` is journalled as failed (action-failed and
    standby-failed), and the primary is not left in maint meanwhile."""
    topo = topology(tmp_path)
    world = World.seed(topo)
    ctl = controller(topo, world, action_timeout_s=2.0)
    run(world, ctl, 1)
    world.nodes["web1bck"].action_s = 60.0
    world.nodes["web1"].process = NodeState.STOPPED
    run(world, ctl, 3)
    failed = events(topo, "action-failed")
    assert failed and "still running after 2 s" in str(failed[0]["reason"])
    assert [e["node"] for e in events(topo, "standby-failed")] == ["web1bck"]
    assert world.servers["web1"].admin is AdminState.READY


# --- overloaded: reported, nothing done -----------------------------------------------------------
def test_slow_but_answering_primary_is_overloaded_and_left_alone(topo):
    """A primary answering its probe in 0.8 s of a 1 s timeout is journalled `overloaded` once; no
    standby is started and nothing is set."""
    world = World.seed(topo)
    ctl = controller(topo, world)
    run(world, ctl, 1)
    world.nodes["web1"].slow = True
    run(world, ctl, 3)
    assert world.calls == [("save", "", "")]  # at its start only
    (overloaded,) = events(topo, "overloaded")
    assert overloaded["node"] == "web1" and overloaded["to"] == "overloaded"
    assert state(topo)["nodes"]["web1"]["overloaded"] is True
    world.nodes["web1"].slow = False
    run(world, ctl, 1)
    assert [e["to"] for e in events(topo, "overloaded")] == ["overloaded", "up"]


def test_one_timeout_then_an_answer_is_overloaded_not_down(topo):
    """A single probe timeout (ambiguous) followed by an answer: overloaded, no failover."""
    world = World.seed(topo)
    ctl = controller(topo, world)
    run(world, ctl, 1)
    world.nodes["web2"].hung = True
    run(world, ctl, 0.1)
    world.nodes["web2"].hung = False
    run(world, ctl, 1)
    assert world.starts["web2bck"] == 0
    assert not [e for e in events(topo, "health") if e["to"] == "down"]
    assert [e["node"] for e in events(topo, "overloaded")][:1] == ["web2"]


# --- the balancer ----------------------------------------------------------------------------------------
def test_hung_balancer_is_restarted_and_a_primary_failing_meanwhile_still_fails_over(topo):
    """HAProxy paused: journalled as hung, killed and started again (one restart), and web1 dying during
    the hang gets its standby started at once and in service when HAProxy answers again."""
    world = World.seed(topo)
    ctl = controller(topo, world)
    run(world, ctl, 1)
    world.balancer_process, world.haproxy_alive = NodeState.PAUSED, False
    world.balancer_action_s = 0.5
    world.nodes["web1"].process = NodeState.STOPPED
    run(world, ctl, 0.2)
    assert world.starts["web1bck"] == 1, "web1bck's start waited for HAProxy"
    assert [(v, n) for v, n, _ in world.calls if n == "ha1"] == [], "the restart is still running"
    run(world, ctl, 1)
    assert [(v, n) for v, n, _ in world.calls if n == "ha1"] == [("fault", "ha1"), ("start", "ha1")]
    assert serving(world, "web1bck", "web1")
    steps = [(e["from"], e["to"]) for e in events(topo, "health") if e["node"] == "ha1"]
    assert steps == [("answering", "hung"), ("hung", "answering")]
    assert [e["node"] for e in events(topo, "action") if e["to"] == "running"][:1] == ["web1bck"]


def test_balancer_not_answering_but_running_is_not_restarted(topo):
    """A Runtime API that does not answer while HAProxy's processes run (busy, or a slow socket) is
    ambiguous: journalled, waited out, never restarted."""
    world = World.seed(topo)
    ctl = controller(topo, world)
    run(world, ctl, 1)
    world.haproxy_alive = False
    run(world, ctl, 5)
    assert world.starts["ha1"] == 0
    assert [e["to"] for e in events(topo, "health") if e["node"] == "ha1"] == ["not answering"]


# --- operators win ---------------------------------------------------------------------------------------
def test_primary_put_in_maint_by_hand_is_planned_maintenance(topo):
    """web2 set to MAINT by a person: its standby takes over, web2 stays in MAINT however healthy, and
    once the person puts it back to READY traffic returns and the standby is stopped."""
    world = World.seed(topo)
    ctl = controller(topo, world)
    run(world, ctl, 1)
    world.servers["web2"].admin = AdminState.MAINT
    run(world, ctl, 0.5)
    assert serving(world, "web2bck", "web2")
    run(world, ctl, 10)
    assert world.servers["web2"].admin is AdminState.MAINT, "a person's maint was overruled"
    assert ("set-state", "ready") not in world.verbs("web2")
    (operator,) = events(topo, "operator")
    assert operator["node"] == "web2" and operator["to"] == "maint"
    assert state(topo)["nodes"]["web2"]["maintenance"] is True
    world.servers["web2"].admin = AdminState.READY
    run(world, ctl, 5)
    assert world.servers["web2bck"].admin is AdminState.MAINT
    assert world.nodes["web2bck"].process is NodeState.STOPPED


def test_primary_drained_by_hand_keeps_its_drain_and_the_standby_serves(topo):
    """web1 set to DRAIN by a person: the standby takes over; web1 is left draining, not put in maint."""
    world = World.seed(topo)
    ctl = controller(topo, world)
    run(world, ctl, 1)
    world.servers["web1"].admin = AdminState.DRAIN
    run(world, ctl, 5)
    assert world.servers["web1bck"].admin is AdminState.READY
    assert world.servers["web1"].admin is AdminState.DRAIN
    assert world.verbs("web1") == []


def test_operator_maintenance_survives_a_controller_restart(topo):
    """A new controller (fresh memory) still knows web2's maint is a person's, from its saved record."""
    world = World.seed(topo)
    first = controller(topo, world)
    run(world, first, 1)
    world.servers["web2"].admin = AdminState.MAINT
    run(world, first, 1)
    second = controller(topo, world)
    run(world, second, 5)
    assert world.servers["web2"].admin is AdminState.MAINT
    assert serving(world, "web2bck", "web2")


def test_failover_state_the_controller_set_is_not_taken_for_a_person(topo):
    """After an ordinary failover (web1 in maint by the controller), recovery still fails back."""
    world = World.seed(topo)
    ctl = controller(topo, world)
    world.nodes["web1"].process = NodeState.STOPPED
    run(world, ctl, 1)
    world.nodes["web1"].process = NodeState.RUNNING
    run(world, ctl, 5)
    assert world.servers["web1"].admin is AdminState.READY
    assert events(topo, "operator") == []


# --- the journal tells the truth ---------------------------------------------------------------------
def test_runtime_failure_during_takeover_gives_one_failover_and_one_action_failed(topo):
    """`set server … state ready` fails once: one action-failed, then one failover event, timed from the
    fault to the moment HAProxy really took the standby."""
    world = World.seed(topo)
    ctl = controller(topo, world)
    run(world, ctl, 1)
    world.failing_sets[("web1bck", "ready")] = 1
    world.nodes["web1"].process = NodeState.STOPPED
    fault_at = world.clock.now
    run(world, ctl, 2)
    assert serving(world, "web1bck", "web1")
    (failover,) = events(topo, "failover")
    failed = events(topo, "action-failed")
    assert len(failed) == 1 and "set-state web1bck ready" in str(failed[0]["reason"])
    ready_at = [e for e in events(topo, "action") if e["node"] == "web1bck" and e["to"] == "ready"]
    assert len(ready_at) == 1
    until = failover["durations"]["until_served_s"]
    assert until == pytest.approx(float(ready_at[0]["ts"]) - fault_at, abs=0.11)
    assert until > 0.2, "counted from the planned takeover, not from when it happened"


@pytest.mark.parametrize("seed", range(12))
def test_random_faults_never_give_negative_or_duplicate_timings(tmp_path, seed):
    """Kills, hangs, recoveries, standby crashes and Runtime API errors at random: every duration is
    >= 0, and each failover event matches one real `ready` of a standby."""
    topo = topology(tmp_path)
    world = World.seed(topo)
    ctl = controller(topo, world)
    rng = random.Random(seed)  # noqa: S311 - reproducible fault sequences, not secrets
    run(world, ctl, 1)
    for _ in range(40):
        name = rng.choice(["web1", "web2", "web1bck", "web2bck"])
        fake = world.nodes[name]
        match rng.randrange(5):
            case 0:
                fake.process = NodeState.STOPPED
            case 1:
                fake.hung = not fake.hung
            case 2 if not name.endswith("bck"):
                fake.process, fake.hung = NodeState.RUNNING, False
            case 3:
                world.runtime_errors = rng.randrange(3)
            case _:
                pass
        run(world, ctl, rng.choice([0.1, 0.3, 1.0, 4.0]))
    for event in events(topo):
        for name, value in event["durations"].items():
            assert value >= 0, f"negative {name}: {event}"
    readies = [e for e in events(topo, "action") if e["node"].endswith("bck") and e["to"] == "ready"]
    failovers = events(topo, "failover")
    assert len(failovers) == len([e for e in readies if e["from"] != "ready"])
    assert [e["ts"] for e in failovers] == sorted(e["ts"] for e in failovers)


def test_unwritable_journal_does_not_stop_failover_and_catches_up(topo):
    """events.jsonl cannot be written (here a directory stands in its way): the failover happens
    anyway, status says the journal is failing, and once it can be written every event is there."""
    world = World.seed(topo)
    ctl = controller(topo, world)
    warnings: list[str] = []
    ctl.events._warn = warnings.append
    run(world, ctl, 1)
    journal = topo.state_dir / "events.jsonl"
    journal.rename(topo.state_dir / "before.jsonl")
    journal.mkdir()
    world.nodes["web1"].process = NodeState.STOPPED
    run(world, ctl, 1)
    assert serving(world, "web1bck", "web1")
    report = state(topo)["journal"]
    assert report["ok"] is False and report["pending"] > 0
    assert warnings and "cannot write the journal" in warnings[0]
    shutil.rmtree(journal)
    run(world, ctl, 0.2)
    assert state(topo)["journal"]["ok"] is True
    assert [e["node"] for e in events(topo, "failover")] == ["web1bck"]
    assert "written again" in warnings[-1]


def test_journal_rotates_past_its_size(tmp_path):
    """Past `journal_max_bytes` the journal moves to events.jsonl.1; `relevo events` still reads both."""
    topo = topology(tmp_path)
    world = World.seed(topo)
    ctl = controller(topo, world)
    ctl.events.max_bytes = 2000
    for _ in range(5):
        world.nodes["web1"].process = NodeState.STOPPED
        run(world, ctl, 1)
        world.nodes["web1"].process = NodeState.RUNNING
        run(world, ctl, 5)
    for path in (topo.state_dir / "events.jsonl", topo.state_dir / "events.jsonl.1"):
        assert 0 < path.stat().st_size < 2000 + 1000, f"{path.name} is not bounded"
    found = events(topo)
    assert [e["ts"] for e in found] == sorted(e["ts"] for e in found), "the rotated part is read first"
    assert [e["kind"] for e in found if e["kind"] in ("failover", "failback")][-1] == "failback"


class BulkWorld(World):
    """A provider that can tell every node's state in one call (as LXD lists all its instances)."""

    bulk_calls: int = 0

    def statuses(self, nodes):
        self.bulk_calls += 1
        return {name: self.status(name) for name in nodes}


def test_a_provider_that_can_reads_every_state_in_one_call_per_tick(topo):
    """With the BulkStatus ability, the states the probes leave open are asked in one call per tick."""
    from relevo.providers.base import BulkStatus

    base = World.seed(topo)
    world = BulkWorld(nodes=base.nodes, servers=base.servers)
    assert isinstance(world, BulkStatus)
    ctl = controller(topo, world)
    world.nodes["web1"].process = NodeState.STOPPED
    run(world, ctl, 1)
    assert world.bulk_calls == 10, "one call per tick (the stopped standbys and web1 together)"
    assert serving(world, "web1bck", "web1")


def test_probe_timeout_is_never_stricter_than_haproxys_check(tmp_path):
    """`controller.probe_timeout: 300ms` with `health.timeout: 1s`: the probe waits 1 s, as HAProxy."""
    from relevo.topology import parse_topology

    def probe_timeout(text: str) -> float:
        return parse_topology(text, source=None, state_dir=tmp_path).probe_timeout_s

    assert probe_timeout("health: {timeout: 1s}\ncontroller: {probe_timeout: 300ms}") == 1.0
    assert probe_timeout("health: {timeout: 1s}\ncontroller: {probe_timeout: 2s}") == 2.0
    assert probe_timeout("") == 1.0, "the default follows HAProxy's default check timeout"


def test_a_command_applied_after_its_timeout_is_the_controllers_not_a_persons(topo):
    """`state ready` times out but HAProxy applies it late: no operator event, the standby is not held
    as a person's, and the failover is journalled once."""
    world = World.seed(topo)
    ctl = controller(topo, world)
    run(world, ctl, 1)
    real = world.set_state

    def late(server, state):
        if server == "web1bck" and str(state) == "ready" and not world.calls.count(("late", server, "")):
            world.calls.append(("late", server, ""))
            real(server, state)  # applied...
            raise RuntimeAPIError("timed out")  # ...but the answer never came

        return real(server, state)

    world.set_state = late
    world.nodes["web1"].process = NodeState.STOPPED
    run(world, ctl, 2)
    assert events(topo, "operator") == []
    assert [e["node"] for e in events(topo, "failover")] == ["web1bck"]
    assert len(events(topo, "action-failed")) == 1
    world.nodes["web1"].process = NodeState.RUNNING
    run(world, ctl, 5)
    assert world.nodes["web1bck"].process is NodeState.STOPPED, "the pair was left as a person's"


def haproxy_dead_after_a_failover(topo):
    """web1 stopped and web1bck serving in its place, then HAProxy dead, its last saved states lost (it
    will come back with its configured ones)."""
    world = World.seed(topo)
    ctl = controller(topo, world)
    world.nodes["web1"].process = NodeState.STOPPED
    run(world, ctl, 1)
    assert serving(world, "web1bck", "web1")
    world.lost_states = True
    world.haproxy_alive, world.balancer_process = False, NodeState.STOPPED
    return world, ctl


def test_haproxy_restarted_without_its_states_is_set_right_not_taken_for_a_person(topo):
    """HAProxy dies after a failover and comes back with its configured states (the last save was
    lost): the controller puts web1bck back in service and web1 in maint, and journals no person."""
    world, ctl = haproxy_dead_after_a_failover(topo)
    run(world, ctl, 1)
    assert world.starts["ha1"] == 1
    assert serving(world, "web1bck", "web1")
    assert events(topo, "operator") == []


def test_a_persons_maint_lost_by_a_haproxy_restart_is_put_back(topo):
    """web2 in maint by hand, then HAProxy restarted without its states: web2 is set to maint again."""
    world = World.seed(topo)
    ctl = controller(topo, world)
    run(world, ctl, 1)
    world.servers["web2"].admin = AdminState.MAINT
    run(world, ctl, 1)
    world.lost_states = True
    world.haproxy_alive, world.balancer_process = False, NodeState.STOPPED
    run(world, ctl, 1)
    assert world.servers["web2"].admin is AdminState.MAINT
    assert serving(world, "web2bck", "web2")
    assert [e["to"] for e in events(topo, "operator")] == ["maint"]


def test_a_persons_maint_made_while_haproxy_was_not_answering_is_not_overruled(topo):
    """web1 set to MAINT by a person just before HAProxy's Runtime API stopped answering for a while (its
    processes running throughout): when it answers again, web1's maint is a person's, not a restart's
    leftover, so web1bck takes over and web1 is not put back. Found by the state machine in
    test_decide_property.py."""
    world = World.seed(topo)
    ctl = controller(topo, world)
    run(world, ctl, 1)
    world.servers["web1"].admin = AdminState.MAINT
    world.haproxy_alive = False
    run(world, ctl, 0.5)
    world.haproxy_alive = True
    run(world, ctl, 2)
    assert world.starts["ha1"] == 0
    assert world.servers["web1"].admin is AdminState.MAINT, "a person's maint was overruled"
    assert ("set-state", "ready") not in world.verbs("web1")
    assert serving(world, "web1bck", "web1")
    assert [e["to"] for e in events(topo, "operator")] == ["maint"]


def test_haproxy_restarted_after_answering_late_still_gets_the_controllers_states(topo):
    """HAProxy killed after a failover, restarted without its states, and silent for a while after its
    restart: when it answers, its configured states are still a restart's, not a person's (web1bck put
    back in service, no person journalled)."""
    world, ctl = haproxy_dead_after_a_failover(topo)
    real_start = world.start

    def start_silent(node: str) -> None:
        real_start(node)
        if node == "ha1":
            world.haproxy_alive = False  # running, its Runtime API not answering yet

    world.start = start_silent
    run(world, ctl, 1)
    assert world.starts["ha1"] == 1
    assert not serving(world, "web1bck", "web1")
    world.haproxy_alive = True
    run(world, ctl, 1)
    assert serving(world, "web1bck", "web1")
    assert events(topo, "operator") == []


class Crash(BaseException):
    """The controller process dies here (SIGKILL): nothing after this line of its runs."""


@pytest.mark.parametrize("applied", [False, True], ids=["before-the-command", "after-the-command"])
@pytest.mark.parametrize("nth", [1, 2])
def test_a_controller_killed_around_its_nth_command_is_never_taken_for_a_person(topo, nth, applied):
    """The controller dies just before (or just after) its n-th Runtime API command of a failover: the
    next controller completes the failover, and neither the command nor its absence is a person's."""
    world = World.seed(topo)
    first = controller(topo, world)
    run(world, first, 1)
    real_set_state, commands = world.set_state, []

    def dying_set_state(server: str, state: AdminState) -> None:
        commands.append((server, state))
        if len(commands) == nth and not applied:
            raise Crash
        real_set_state(server, state)
        if len(commands) == nth:
            raise Crash

    world.set_state = dying_set_state
    world.nodes["web1"].process = NodeState.STOPPED
    with pytest.raises(Crash):
        run(world, first, 10)
    world.set_state = real_set_state
    second = controller(topo, world)
    run(world, second, 5)
    assert serving(world, "web1bck", "web1")
    assert events(topo, "operator") == []


# --- the server-state file: settled states only (issue 17, item 2) -----------------------------------------
def test_server_states_are_dumped_only_when_settled_never_mid_failover(topo):
    """Through a failover and its failback, every server-state dump is a settled moment (the cluster as
    configured, or the standby serving with its primary in maint), and the last one is the present."""
    world = World.seed(topo)
    ctl = controller(topo, world)
    run(world, ctl, 1)
    world.nodes["web1"].process = NodeState.STOPPED
    run(world, ctl, 2)
    assert serving(world, "web1bck", "web1")
    world.nodes["web1"].process = NodeState.RUNNING
    run(world, ctl, 8)
    assert world.servers["web1"].admin is AdminState.READY
    configured = {n: AdminState.MAINT if n.endswith("bck") else AdminState.READY for n in world.servers}
    failed_over = {**configured, "web1": AdminState.MAINT, "web1bck": AdminState.READY}
    assert len(world.dumps) >= 3
    assert [d for d in world.dumps if d not in (configured, failed_over)] == [], "a dump mid-failover"
    assert world.dumps[-1] == {n: s.admin for n, s in world.servers.items()}


def test_haproxy_restarted_from_a_stale_dump_is_set_right_not_taken_for_a_person(topo):
    """The dump a killed controller left mid-failover (web1 in maint, web1bck in service) is read back by
    a restarted HAProxy while the cluster is healthy: the controller puts back the states it holds
    (web1 in service, web1bck in maint) and journals no person."""
    world = World.seed(topo)
    configured = {name: server.admin for name, server in world.servers.items()}
    world.dumps.append({**configured, "web1": AdminState.MAINT, "web1bck": AdminState.READY})
    world.haproxy_alive, world.balancer_process = False, NodeState.STOPPED
    ctl = controller(topo, world)
    run(world, ctl, 2)
    assert world.starts["ha1"] == 1
    assert {name: server.admin for name, server in world.servers.items()} == configured
    assert world.nodes["web1bck"].process is NodeState.STOPPED
    assert events(topo, "operator") == []
    assert world.dumps[-1] == configured

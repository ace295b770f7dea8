"""`decide()` under any sequence of faults, operator changes and ticks (a Hypothesis state machine over
the in-memory World): kills, hangs (paused or silent), resumes, slow probes, a person's MAINT, DRAIN
and READY, slow provider actions, a controller restarted with only its saved file, and ticks.

Invariants checked after every tick: a healthy primary is never taken out of service; a person's admin
state is never overruled; at most one provider action per node at a time. Liveness: a primary that fails
while its standby is startable is replaced within FAILOVER_TICKS ticks; once every fault is healed and
every person's hold released, any state (any memory, after any history) converges to the steady state
within CONVERGE_TICKS ticks.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from relevo.controller.events import EventLog
from relevo.controller.loop import Controller
from relevo.controller.state import ControlAction, Policy
from relevo.haproxy.runtime import AdminState
from relevo.providers.base import NodeState

from .fakes import TICK_S, StepRunner, World, topology

PRIMARIES = ("web1", "web2")
STANDBY = {"web1": "web1bck", "web2": "web2bck"}
WEB = (*PRIMARIES, *STANDBY.values())
# A certain fault (a dead or paused process) is seen at the next tick; the standby's start may take up
# to 0.3 s (3 ticks) and a stop already running (a failback) must end first.
FAILOVER_TICKS = 20
# hold (3 s) + drain + a standby's stop, from any state, with a failed standby's backoff (up to 30 s).
CONVERGE_TICKS = 400


class OneActionPerNode(StepRunner):
    """The fake runner, refusing to be asked for a second provider action on a node whose first still
    runs: decide() must never plan one (its `act` checks `busy`)."""

    def submit(self, action: ControlAction) -> bool:
        assert action.node not in self.running, (
            f"{action} submitted while {self.running[action.node][0]} runs"
        )
        return super().submit(action)


class ControllerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="relevo-decide-"))
        self.topo = topology(self.tmp)
        self.policy = Policy.from_topology(self.topo)
        self.world = World.seed(self.topo)
        self.held: dict[str, AdminState] = {}  # a person's hold: node -> the state they set
        self.answering = dict.fromkeys(WEB, 0)  # consecutive ticks each node answered its probe
        # Held states a restarted HAProxy came back without, until the controller sees it answer (and
        # puts them back in that tick): a second kill before then leaves them lost a while longer.
        self.lost: set[str] = set()
        # HAProxy restarted since the controller last saw it answer (at a tick's start).
        self.unseen_restart = False
        self.ctl = self.new_controller()

    def teardown(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def new_controller(self) -> Controller:
        runner = OneActionPerNode(self.world)
        ctl = Controller(
            self.topo,
            nodes=self.world,
            balancer=self.world,
            collect=self.world.collect,
            events=EventLog(self.topo.state_dir / "events.jsonl", wall_clock=self.world.clock),
            clock=self.world.clock,
            wall_clock=self.world.clock,
            owned_file=self.topo.state_dir / "controller-owned.json",
            runner=runner,
        )
        runner.perform = ctl.perform
        return ctl

    # --- the world between ticks -------------------------------------------------------------------
    @rule(name=st.sampled_from(WEB))
    def kill(self, name: str) -> None:
        self.world.nodes[name].process = NodeState.STOPPED

    @rule(name=st.sampled_from(WEB), paused=st.booleans())
    def hang(self, name: str, paused: bool) -> None:
        """SIGSTOP (the provider sees it paused) or a silent hang (probes time out, nothing else)."""
        fake = self.world.nodes[name]
        if paused and fake.process is NodeState.RUNNING:
            fake.process = NodeState.PAUSED
        else:
            fake.hung = True

    @rule(name=st.sampled_from(WEB))
    def resume(self, name: str) -> None:
        fake = self.world.nodes[name]
        fake.hung = False
        if fake.process is NodeState.PAUSED:
            fake.process = NodeState.RUNNING

    @rule(name=st.sampled_from(PRIMARIES))
    def restart_by_hand(self, name: str) -> None:
        self.world.nodes[name].process = NodeState.RUNNING

    @rule(name=st.sampled_from(WEB), slow=st.booleans())
    def slow_probe(self, name: str, slow: bool) -> None:
        self.world.nodes[name].slow = slow

    @rule(name=st.sampled_from(WEB), seconds=st.sampled_from([0.0, 0.25, 0.5]))
    def action_time(self, name: str, seconds: float) -> None:
        self.world.nodes[name].action_s = seconds

    @rule(process=st.sampled_from([NodeState.STOPPED, NodeState.PAUSED, NodeState.RUNNING]))
    def balancer_fails(self, process: NodeState) -> None:
        """HAProxy killed, paused, or running but silent (too busy to answer): its Runtime API stops
        answering. A dead or paused one is not made running here: only a restart brings it back (the
        controller's, with the states it saved). One restarted or resumed behind the controller's back
        is not modelled: its states and a person's look the same (see `heal_and_converge`)."""
        if process is NodeState.RUNNING and self.world.balancer_process is not NodeState.RUNNING:
            return
        self.world.balancer_process = process
        self.world.haproxy_alive = False

    @rule()
    def balancer_answers_again(self) -> None:
        """A silent HAProxy that still runs answers again."""
        if self.world.balancer_process is NodeState.RUNNING:
            self.world.haproxy_alive = True

    @rule(seconds=st.sampled_from([0.0, 0.5, 2.0]), lost=st.booleans())
    def balancer_restarts(self, seconds: float, lost: bool) -> None:
        """How long HAProxy's restart takes, and whether it comes back without its saved states."""
        self.world.balancer_action_s = seconds
        self.world.lost_states = lost

    @rule(
        name=st.sampled_from(WEB),
        state=st.sampled_from([AdminState.MAINT, AdminState.DRAIN]),
        then=st.sampled_from([None, None, NodeState.RUNNING, NodeState.STOPPED]),
    )
    def person_holds(self, name: str, state: AdminState, then: NodeState | None) -> None:
        """A person sets a server to maint or drain (a change HAProxy can tell apart: not its state now),
        perhaps just before HAProxy stops answering (busy, or killed) so the controller cannot see it."""
        server = self.world.servers[name]
        if self.world.haproxy_alive and server.admin is not state and name not in self.held:
            server.admin = state
            # A change back to what the controller expects there (its own state, else the configured
            # one) cannot be told from no change at all: nobody can keep it for the person.
            configured = AdminState.READY if name in PRIMARIES else AdminState.MAINT
            # Nor can a change made after HAProxy restarted, before the controller saw it answer: the
            # controller takes what a restarted HAProxy shows for the restart's doing, and puts its own
            # states back (the restart's states and a person's look the same).
            # Unless the controller still holds that state as a person's (it never saw their ready in
            # between): then the person's hold simply goes on.
            memory = self.ctl.memory
            expected = memory.owned.get(name, configured)
            if not self.unseen_restart and (state is not expected or name in memory.manual):
                self.held[name] = state
            if then is not None:
                self.balancer_fails(then)

    @rule(name=st.sampled_from(WEB))
    def person_puts_back(self, name: str) -> None:
        """A person sets a server to ready: the end of their maintenance. Not between an HAProxy restart
        and the controller's first sight of it answering: the controller then takes every difference for
        the restart's and puts back the states it holds, a person's maint included (a restart that lost
        that maint looks the same), so a change made then is not keepable (as in `person_holds`)."""
        server = self.world.servers[name]
        if self.world.haproxy_alive and not self.unseen_restart:
            server.admin = AdminState.READY
            self.held.pop(name, None)  # already ready: a restarted HAProxy forgot the hold

    @rule()
    def restart_controller(self) -> None:
        """A new controller: its memory gone but for what it saved to its file."""
        self.ctl.runner.close()
        self.ctl = self.new_controller()

    @rule(n=st.integers(min_value=1, max_value=8))
    def ticks(self, n: int) -> None:
        for _ in range(n):
            self.tick()

    # --- liveness ----------------------------------------------------------------------------------
    def startable(self, primary: str) -> bool:
        standby = STANDBY[primary]
        fake = self.world.nodes[standby]
        return (
            primary not in self.held
            and standby not in self.held
            and self.answering[primary] > self.policy.rise
            and self.world.haproxy_alive
            and not fake.hung
            and not fake.start_error
            and fake.process in (NodeState.RUNNING, NodeState.STOPPED)
            and (fake.process is NodeState.STOPPED or self.answering[standby] > 0)
            and standby not in self.ctl.memory.failed
        )

    @precondition(lambda self: any(self.startable(p) for p in PRIMARIES))
    @rule(data=st.data(), paused=st.booleans())
    def primary_fails_and_its_standby_takes_over(self, data: st.DataObject, paused: bool) -> None:
        primary = data.draw(st.sampled_from([p for p in PRIMARIES if self.startable(p)]))
        standby = STANDBY[primary]
        self.world.nodes[primary].process = NodeState.PAUSED if paused else NodeState.STOPPED
        for _ in range(FAILOVER_TICKS):
            self.tick()
            if self.serves(standby):
                return
        raise AssertionError(f"{standby} does not serve {FAILOVER_TICKS} ticks after {primary} failed")

    @rule()
    def heal_and_converge(self) -> None:
        """Every fault undone, every hold released: the steady state within CONVERGE_TICKS."""
        if self.world.balancer_process is NodeState.RUNNING:
            self.world.haproxy_alive = True
        else:
            # A dead or paused HAProxy is the controller's to restart (it does, past its backoff). One
            # restarted behind its back between two ticks is not modelled: the controller cannot tell
            # the states it comes back with from a person's (it would need HAProxy's own start time).
            self.world.lost_states = False
        for name, fake in self.world.nodes.items():
            fake.hung = fake.slow = False
            if fake.process is NodeState.PAUSED or name in PRIMARIES:
                fake.process = NodeState.RUNNING
        for _ in range(CONVERGE_TICKS):
            if self.world.haproxy_alive and not self.unseen_restart:
                break
            self.tick()  # until the controller has restarted HAProxy and seen it answer: a ready needs it
        for name in list(self.held):
            self.person_puts_back(name)
        for _ in range(CONVERGE_TICKS):
            self.tick()
            if self.steady():
                return
        raise AssertionError(f"not converged after {CONVERGE_TICKS} ticks: {self.describe()}")

    # --- the checks ------------------------------------------------------------------------------------
    def tick(self) -> None:
        # Answering now, and for longer than `rise` ticks: UP for the controller too.
        healthy = {p for p in PRIMARIES if self.answering[p] > self.policy.rise and self.world.answers(p)}
        before = len(self.world.calls)
        restarts = self.world.starts["ha1"]
        known = {n: self.ctl.memory.owned[n] for n in self.ctl.memory.manual if n in self.ctl.memory.owned}
        self.world.haproxy_checks()
        self.ctl.tick()
        restarted = self.world.starts["ha1"] > restarts
        observed = self.ctl.observation
        seen = observed is not None and observed.haproxy
        self.unseen_restart = restarted or (self.unseen_restart and not seen)
        # The first answer after a restart: the controller puts back the states it holds (a primary it had
        # in maint while its standby serves goes back to maint), whatever the restart brought back.
        reasserted = observed is not None and observed.haproxy_returned
        if restarted:
            # A restarted HAProxy reads the controller's settled states (or, lost, its configuration), and
            # the controller puts back the person's holds it knows: a hold, or a change of one, it had
            # not yet seen is lost with the restart, the one it knew stands.
            self.held = {n: known[n] for n in self.held if n in known}
        lost = {n for n, s in self.held.items() if self.world.servers[n].admin is not s}
        self.lost = lost if self.unseen_restart else set()
        for name in WEB:
            self.answering[name] = self.answering[name] + 1 if self.world.answers(name) else 0
        for verb, name, arg in self.world.calls[before:]:
            if name in healthy and name not in self.held:
                taken_out = verb in ("stop", "fault") or (
                    verb == "set-state" and arg in (AdminState.MAINT, AdminState.DRAIN) and not reasserted
                )
                assert not taken_out, f"healthy primary {name} taken out of service: {verb} {arg}"
            if verb == "set-state" and name in self.held:
                assert arg == self.held[name], f"{name} held {self.held[name]} by a person, set to {arg}"
        self.world.clock.now += TICK_S

    @invariant()
    def person_states_stand(self) -> None:
        """A person's state is in HAProxy, or HAProxy restarted without it and the controller has not
        seen it answer since (it puts the state back when it does)."""
        for name, state in self.held.items():
            if self.world.servers[name].admin is not state:
                assert name in self.lost, f"{name}: a person's {state} was changed"

    def serves(self, name: str) -> bool:
        server = self.world.servers[name]
        return self.world.answers(name) and server.admin is AdminState.READY and server.up

    def steady(self) -> bool:
        memory = self.ctl.memory
        return (
            all(self.serves(p) for p in PRIMARIES)
            and all(
                self.world.servers[s].admin is AdminState.MAINT
                and self.world.nodes[s].process is NodeState.STOPPED
                for s in STANDBY.values()
            )
            and not (memory.starting or memory.draining or memory.outage or memory.manual)
        )

    def describe(self) -> str:
        nodes = {
            n: (str(f.process), self.world.servers[n].admin, self.world.servers[n].up)
            for n, f in self.world.nodes.items()
        }
        return f"{nodes}, memory {self.ctl.memory}"


# Seconds on a quiet machine: 50 runs of up to 25 steps (each heal up to CONVERGE_TICKS ticks), and no
# "explain" phase (it traces every line of a failing run, minutes under load: a failure is reported
# with its shortest steps either way). Derandomized: the same runs every time, so that a landing is never
# failed by a sequence another seed found. To look further, run it with derandomize=False and
# --hypothesis-seed=N; each disagreement found so far is replayed below, with which side was wrong.
ControllerMachine.TestCase.settings = settings(
    derandomize=True,
    max_examples=50,
    stateful_step_count=25,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow],
)
TestDecideProperties = ControllerMachine.TestCase
TestDecideProperties.__doc__ = "Any sequence of faults, holds and ticks keeps decide()'s invariants."


# --- sequences random seeds found, replayed on every run ----------------------------------------------
def replay(*steps: tuple[str, dict[str, object]]) -> None:
    """Run `steps` (a rule's name and its arguments) on a fresh machine, its invariant checked after
    each, as Hypothesis runs them."""
    machine = ControllerMachine()
    try:
        machine.person_states_stand()
        for name, arguments in steps:
            getattr(machine, name)(**arguments)
            machine.person_states_stand()
    finally:
        machine.teardown()


class Drawn:
    """What `st.data()` gives a rule, in a replay: the value drawn there."""

    def __init__(self, value: object) -> None:
        self.value = value

    def draw(self, strategy: object) -> object:
        return self.value


def test_a_dead_haproxy_comes_back_only_through_the_controllers_restart():
    """Seed 47: a person's maint unseen by the controller, HAProxy killed and its restart slow; no rule
    revives the dead HAProxy with that maint intact (the model once did, and the controller rightly took
    the states of an HAProxy seen dead for a restart's and put its own back)."""
    replay(
        ("person_holds", {"name": "web1", "state": AdminState.MAINT, "then": None}),
        ("balancer_fails", {"process": NodeState.STOPPED}),
        ("balancer_restarts", {"lost": False, "seconds": 0.5}),
        ("ticks", {"n": 1}),
        ("balancer_fails", {"process": NodeState.RUNNING}),
        ("balancer_answers_again", {}),
        ("ticks", {"n": 8}),
    )


def test_a_persons_ready_waits_for_the_controller_to_see_a_restarted_haproxy():
    """Seed 10: web1 in maint by hand, HAProxy killed and restarted by the controller; the person's ready
    comes once the controller has seen the new HAProxy answer (made before, the controller takes web1's
    ready for the restart's and puts the held maint back: the model once did so and then waited for a
    steady state that could not come)."""
    replay(
        ("balancer_fails", {"process": NodeState.STOPPED}),
        ("heal_and_converge", {}),
        ("heal_and_converge", {}),
        ("person_holds", {"name": "web1", "state": AdminState.MAINT, "then": None}),
        ("primary_fails_and_its_standby_takes_over", {"data": Drawn("web2"), "paused": False}),
        ("balancer_fails", {"process": NodeState.STOPPED}),
        ("heal_and_converge", {}),
    )


def test_a_persons_maint_lost_by_two_restarts_in_a_row_stays_lost_until_haproxy_answers():
    """Seed 11: web1 in maint by hand, HAProxy killed, restarted without it, and killed again before the
    controller saw it answer: web1's maint stays lost (not overruled) until HAProxy answers again and
    the controller puts it back (the model once expected it back one tick after the first restart)."""
    replay(
        ("heal_and_converge", {}),
        ("person_holds", {"name": "web1", "state": AdminState.MAINT, "then": None}),
        ("ticks", {"n": 1}),
        ("balancer_fails", {"process": NodeState.STOPPED}),
        ("ticks", {"n": 1}),
        ("balancer_fails", {"process": NodeState.STOPPED}),
        ("ticks", {"n": 1}),
        ("heal_and_converge", {}),
    )


def test_an_haproxy_restarted_before_any_dump_forgets_an_unseen_maint_for_a_new_controller_too():
    """Seed 104: a person's maint unseen by the controller, HAProxy killed at once and restarted before
    any server-state dump, then the controller restarted: the new HAProxy has its configured states, so
    the maint is gone for everyone (the fake's HAProxy once kept the dead process's states, which the new
    controller, never having seen HAProxy down, rightly took for a person's maint)."""
    replay(
        ("person_holds", {"name": "web1", "state": AdminState.MAINT, "then": NodeState.STOPPED}),
        ("ticks", {"n": 1}),
        ("restart_controller", {}),
        ("heal_and_converge", {}),
    )


def test_a_controller_restarted_before_it_saw_its_restarted_haproxy_answer_still_sets_it_right():
    """Seed 104 again: HAProxy killed and restarted by the controller, a person's maint made before the
    controller saw it answer, then the controller restarted: the new controller knows (from its saved
    file) that HAProxy lapsed, so it takes what it finds for the restart's, as the old one would have
    (it once took it for a person's and held web1 in maint for good)."""
    replay(
        ("person_holds", {"name": "web1", "state": AdminState.MAINT, "then": NodeState.STOPPED}),
        ("ticks", {"n": 1}),
        ("person_holds", {"name": "web1", "state": AdminState.MAINT, "then": None}),
        ("restart_controller", {}),
        ("heal_and_converge", {}),
    )


def test_a_persons_hold_changed_unseen_is_what_the_controller_last_saw_after_a_restart():
    """Seed 200: web1 in maint by hand (seen), set ready and then to drain between two ticks, and HAProxy
    killed: the restart and the controller put back the maint it knew, which stands as the person's
    hold (the model once expected the unseen drain kept)."""
    replay(
        ("ticks", {"n": 3}),
        ("person_holds", {"name": "web1", "state": AdminState.MAINT, "then": None}),
        ("primary_fails_and_its_standby_takes_over", {"data": Drawn("web2"), "paused": False}),
        ("person_puts_back", {"name": "web1"}),
        ("person_holds", {"name": "web1", "state": AdminState.DRAIN, "then": NodeState.STOPPED}),
        ("heal_and_converge", {}),
    )


def test_a_persons_ready_then_maint_unseen_is_their_hold_going_on():
    """Seed 200 again: web1 in maint by hand (seen), then ready and maint again between two ticks: the
    controller, which never saw the ready, keeps it as the person's hold, and so does the model."""
    replay(
        ("ticks", {"n": 3}),
        ("person_holds", {"name": "web1", "state": AdminState.MAINT, "then": None}),
        ("primary_fails_and_its_standby_takes_over", {"data": Drawn("web2"), "paused": False}),
        ("person_puts_back", {"name": "web1"}),
        ("person_holds", {"name": "web1", "state": AdminState.MAINT, "then": None}),
        ("heal_and_converge", {}),
    )

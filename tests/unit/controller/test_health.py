"""The health state machine: rise/fall, certain failures, and the hold time before failback."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from relevo.controller.health import NodeHealth, ProbeResult, Status, observe

PASS = ProbeResult(ok=True, detail="status 200")
FAIL = ProbeResult(ok=False, detail="connection refused")
GONE = ProbeResult(ok=False, detail="process stopped", certain=True)


NEW = NodeHealth()


def feed(results, *, rise=2, fall=2, start=NEW, step=0.1):
    health, now = start, 0.0
    for result in results:
        now += step
        health = observe(health, result, now, rise=rise, fall=fall)
    return health


def test_rise_passes_make_a_node_up():
    """A new node is UNKNOWN until `rise` consecutive passes make it UP."""
    assert feed([PASS]).status is Status.UNKNOWN
    assert feed([PASS, PASS]).status is Status.UP


def test_fall_failures_make_a_node_down():
    """An UP node goes DOWN after `fall` consecutive failures, not before."""
    up = feed([PASS, PASS])
    assert feed([FAIL], start=up).status is Status.UP
    assert feed([FAIL, FAIL], start=up).status is Status.DOWN


def test_a_pass_between_failures_resets_the_count():
    """Failures must be consecutive: a pass in between starts the count again."""
    up = feed([PASS, PASS])
    assert feed([FAIL, PASS, FAIL, PASS, FAIL], start=up).status is Status.UP


def test_a_certain_failure_is_down_at_once():
    """When the provider says the process is gone, one result is enough."""
    assert feed([GONE], start=feed([PASS, PASS])).status is Status.DOWN


def test_last_probe_ok_before_rise():
    """A DOWN node whose latest probe passed reports it (a standby serves on its first pass)."""
    health = feed([PASS], start=feed([GONE]))
    assert health.status is Status.DOWN
    assert health.last_probe_ok


def test_stable_up_needs_the_hold_time():
    """UP is not enough for failback: it must have lasted `hold_s`."""
    health = feed([PASS] * 5, step=1.0)  # UP since t=2
    assert health.stable_up(4.0, hold_s=2.0)
    assert not health.stable_up(3.5, hold_s=2.0)
    assert not feed([FAIL] * 5).stable_up(100.0, hold_s=0.0)


def test_since_and_last_ok_feed_detection_time():
    """`since` marks the DOWN verdict and `last_ok_at` the last pass before it."""
    health = feed([PASS, PASS, FAIL, FAIL])
    assert health.status is Status.DOWN
    assert round(health.since - health.last_ok_at, 6) == 0.2


@given(st.lists(st.booleans(), max_size=60), st.integers(1, 4), st.integers(1, 4))
def test_status_follows_only_consecutive_runs(results, rise, fall):
    """For any probe sequence: the status changes to UP only after `rise` passes in a row and to DOWN
    only after `fall` failures in a row."""
    health, now = NodeHealth(), 0.0
    run_ok, run_fail = 0, 0
    for ok in results:
        now += 1
        before = health.status
        health = observe(health, PASS if ok else FAIL, now, rise=rise, fall=fall)
        run_ok, run_fail = (run_ok + 1, 0) if ok else (0, run_fail + 1)
        if health.status is not before:
            assert (health.status is Status.UP and run_ok >= rise) or (
                health.status is Status.DOWN and run_fail >= fall
            )
        if run_ok >= rise:
            assert health.status is Status.UP
        if run_fail >= fall:
            assert health.status is Status.DOWN


TIMEOUT = ProbeResult(ok=False, detail="no answer within 1 s", ambiguous=True, sent_at=None)


def test_fault_at_is_the_first_failed_probe_and_stays_while_down():
    """The fault's first evidence is the first failed probe of the run (its send time when known); a
    pass while still DOWN does not move it, so no timing counted from it can be negative."""
    up = feed([PASS, PASS])
    health = observe(up, ProbeResult(ok=False, detail="x", sent_at=0.25), 0.3, rise=2, fall=2)
    assert health.fault_at == 0.25
    health = observe(health, FAIL, 0.4, rise=2, fall=2)
    assert health.status is Status.DOWN and health.since == 0.4 and health.fault_at == 0.25
    health = observe(health, PASS, 0.5, rise=2, fall=2)
    health = observe(health, FAIL, 0.6, rise=2, fall=2)
    assert health.fault_at == 0.25 and health.since - health.fault_at >= 0
    health = feed([PASS, PASS], start=health)
    assert health.status is Status.UP and health.fault_at is None


def test_refused_is_down_at_once_but_a_timeout_needs_fall():
    """Certain evidence (refused, process gone) is DOWN at once; timeouts count one failure each."""
    up = feed([PASS, PASS])
    assert (
        feed([ProbeResult(ok=False, detail="connection refused", certain=True)], start=up).status
        is Status.DOWN
    )
    assert feed([TIMEOUT], start=up).status is Status.UP
    assert feed([TIMEOUT, TIMEOUT], start=up).status is Status.DOWN


def test_slow_answers_and_a_lone_timeout_are_overloaded_not_down():
    """An answer slower than `slow_s`, or an answer after one timeout, is overloaded; fast answers end
    it after `rise` of them."""
    up = feed([PASS, PASS])
    slow = ProbeResult(ok=True, detail="status 200", took_s=0.8)
    health = observe(up, slow, 1.0, rise=2, fall=2, slow_s=0.5)
    assert health.overloaded and health.status is Status.UP
    health = observe(up, TIMEOUT, 1.0, rise=2, fall=2, slow_s=0.5)
    health = observe(health, PASS, 1.1, rise=2, fall=2, slow_s=0.5)
    assert health.overloaded and health.status is Status.UP
    health = feed([PASS, PASS], start=health)
    assert not health.overloaded

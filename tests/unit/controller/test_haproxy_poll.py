"""HAProxy's view read off the tick: a slow HAProxy costs no tick time, a hung one is "not answering".

The fake HAProxy answers a read only when the test lets it (one permit per read), and the clock is the
test's: what is checked is which read `view` uses, never how long anything took.
"""

from __future__ import annotations

import threading

import pytest

from relevo.controller.haproxy_view import PolledBalancer
from relevo.controller.state import ServerView
from relevo.errors import RuntimeAPIError
from relevo.haproxy.runtime import AdminState


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class GatedHAProxy:
    """Each read waits for a permit: without one, HAProxy is hung (or very slow) for as long as the test
    likes."""

    def __init__(self) -> None:
        self.permits = threading.Semaphore(0)
        self.admin = AdminState.READY
        self.reads = 0

    def answer(self, reads: int = 1) -> None:
        for _ in range(reads):
            self.permits.release()

    def view(self):
        self.permits.acquire()
        self.reads += 1
        return {"web1": ServerView(admin=self.admin, up=True)}

    def set_state(self, server, state):
        self.admin = state

    def health_up(self, server):
        pass

    def save(self):
        pass


WAIT_LONG_S = 30.0  # where a read is let through: `view` returns as soon as it has it
WAIT_SHORT_S = 0.01  # where HAProxy is held: how long `view` waits before it uses what it has


def test_a_hung_haproxy_costs_the_tick_only_the_wait_and_its_last_view_is_used_until_stale():
    """`view` returns while HAProxy is held (nothing read yet: not answering); with a read, it uses it;
    HAProxy hung after that: the last read is used while younger than `stale_s`, then not answering."""
    clock, haproxy = Clock(), GatedHAProxy()
    polled = PolledBalancer(haproxy, wait_s=WAIT_SHORT_S, stale_s=0.5, clock=clock)
    try:
        with pytest.raises(RuntimeAPIError):
            polled.view()  # HAProxy holds its first read: `view` does not wait for it
        haproxy.answer()
        polled.wait_s = WAIT_LONG_S
        assert polled.view()["web1"].admin is AdminState.READY
        polled.wait_s = WAIT_SHORT_S  # from now on HAProxy is hung: no permit for any read
        clock.now += 0.3
        assert polled.view()["web1"].admin is AdminState.READY, "the last read is still young enough"
        clock.now += 0.3
        with pytest.raises(RuntimeAPIError):
            polled.view()
    finally:
        polled.close()
        haproxy.answer(5)  # let the reading thread see it is closed


def test_a_view_read_before_a_command_is_never_used_after_it():
    """After `set_state`, only a read begun after the command counts: with none, HAProxy is "not
    answering" (no decision on a stale state); the next read shows the command's state."""
    clock, haproxy = Clock(), GatedHAProxy()
    polled = PolledBalancer(haproxy, wait_s=WAIT_LONG_S, stale_s=5, clock=clock)
    try:
        haproxy.answer()
        assert polled.view()["web1"].admin is AdminState.READY
        clock.now += 0.1
        polled.set_state("web1", AdminState.MAINT)
        polled.wait_s = WAIT_SHORT_S
        with pytest.raises(RuntimeAPIError):
            polled.view()  # only the read from before the command exists
        haproxy.answer()
        polled.wait_s = WAIT_LONG_S
        assert polled.view()["web1"].admin is AdminState.MAINT
    finally:
        polled.close()
        haproxy.answer(5)

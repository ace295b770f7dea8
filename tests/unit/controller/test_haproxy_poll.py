"""HAProxy's view read off the tick: a slow HAProxy costs no tick time, a hung one is "not answering"."""

from __future__ import annotations

import threading
import time

import pytest

from relevo.controller.haproxy_view import PolledBalancer
from relevo.controller.state import ServerView
from relevo.errors import RuntimeAPIError
from relevo.haproxy.runtime import AdminState


class SlowHAProxy:
    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.hung = threading.Event()
        self.admin = AdminState.READY
        self.reads = 0

    def view(self):
        if self.hung.is_set():
            time.sleep(5)
        time.sleep(self.delay_s)
        self.reads += 1
        return {"web1": ServerView(admin=self.admin, up=True)}

    def set_state(self, server, state):
        self.admin = state

    def health_up(self, server):
        pass

    def save(self):
        pass


def test_a_slow_haproxy_costs_the_tick_only_the_wait_and_its_last_view_is_used():
    """HAProxy answering in 0.15 s: `view` returns within its wait, with the latest read once there is
    one; a hung HAProxy is reported as not answering once its last read is stale."""
    haproxy = SlowHAProxy(0.15)
    polled = PolledBalancer(haproxy, wait_s=0.05, stale_s=0.5)
    try:
        began = time.monotonic()
        with pytest.raises(RuntimeAPIError):
            polled.view()  # nothing read yet
        assert time.monotonic() - began < 0.12
        time.sleep(0.2)
        assert polled.view()["web1"].admin is AdminState.READY
        haproxy.hung.set()
        time.sleep(0.3)
        began = time.monotonic()
        polled.view()  # the last read is still young enough
        time.sleep(0.5)
        with pytest.raises(RuntimeAPIError):
            polled.view()
        assert time.monotonic() - began < 0.9, "view waited on the hung HAProxy"
    finally:
        polled.close()


def test_a_view_read_before_a_command_is_never_used_after_it():
    """After `set_state`, only a read begun after the command counts: no decision on a stale state."""
    haproxy = SlowHAProxy(0.1)
    polled = PolledBalancer(haproxy, wait_s=0.3, stale_s=5)
    try:
        assert polled.view()["web1"].admin is AdminState.READY
        polled.set_state("web1", AdminState.MAINT)
        assert polled.view()["web1"].admin is AdminState.MAINT
    finally:
        polled.close()

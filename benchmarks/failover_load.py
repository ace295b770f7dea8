"""What the failover benchmarks share: their open-loop load through the frontend and their poll helper
(benchmarks/lxd_failover.py and benchmarks/balancer_failover.py)."""

from __future__ import annotations

import time
from collections.abc import Callable

from relevo.loadgen import engine
from relevo.loadgen.engine import LoadRun
from relevo.loadgen.plan import simple_plan

LOAD_CONNECTIONS = 200
LOAD_TIMEOUT_S = 10.0


def open_load(url: str, rate: float, duration_s: float) -> LoadRun:
    """`rate` new requests a second to `url` whatever the answers (up to 200 connections), for at most
    `duration_s`: stop it with `.stop()` and read its failed requests from `.wait()`."""
    plan = simple_plan(
        url, threads=LOAD_CONNECTIONS, rate_rps=rate, duration_s=duration_s, timeout_s=LOAD_TIMEOUT_S
    )
    return engine.start(plan, workers=1)


def wait_until(predicate: Callable[[], object], timeout_s: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False

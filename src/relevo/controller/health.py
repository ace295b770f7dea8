"""Health of one node as a pure state machine: `rise`/`fall` consecutive probes, and a hold time.

Going DOWN is fast on certain evidence (a refused connection, or the provider saying the process is
gone or paused: no probe can contradict it) and takes `fall` failures otherwise. A timeout is ambiguous
(hung, or merely busy): it counts as one failure, never as certain. A node that answers, but slowly (or
after a timeout), is `overloaded`: reported, never acted upon. Coming back is slow on purpose: `rise` passes
make a node UP, and it must then stay UP for the hold time before traffic is moved back to it, so a
flapping primary cannot make its standby start and stop in a loop.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace


class Status(enum.StrEnum):
    UNKNOWN = "unknown"  # not enough probes yet (a controller that just started)
    UP = "up"
    DOWN = "down"


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeResult:
    """One probe's verdict, with why it failed (or the status it saw) for events and `relevo status`."""

    ok: bool
    detail: str = ""
    # The provider knows the process is gone or paused, or nothing listens: no need to wait for `fall`.
    certain: bool = False
    ambiguous: bool = False  # a timeout: the node may be hung, or only busy
    took_s: float | None = None  # how long the answer took (None: no answer)
    sent_at: float | None = None  # monotonic time the probe was sent: a fault existed by then


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeHealth:
    status: Status = Status.UNKNOWN
    successes: int = 0  # consecutive passing probes (0 after any failure)
    failures: int = 0  # consecutive failed probes (0 after any pass)
    since: float = 0.0  # when `status` last changed
    last_ok_at: float | None = None  # the last passing probe: the fault happened after it
    # The first evidence of the current run of failures (when its first failed probe was sent): what a
    # failover's timings count from. None while the latest probe passed.
    fault_at: float | None = None
    overloaded: bool = False  # answering, but slowly or after a timeout: reported, not acted upon
    detail: str = ""  # the last probe's detail

    @property
    def last_probe_ok(self) -> bool:
        return self.successes > 0

    def stable_up(self, now: float, hold_s: float) -> bool:
        """UP, and UP for at least `hold_s`: safe to give traffic back to."""
        return self.status is Status.UP and now - self.since >= hold_s


def observe(
    health: NodeHealth,
    result: ProbeResult,
    now: float,
    *,
    rise: int,
    fall: int,
    slow_s: float | None = None,
) -> NodeHealth:
    """The health after one more probe result. `slow_s`: an answer slower than this is `overloaded`."""
    fault_at = health.fault_at
    overloaded = health.overloaded
    if result.ok:
        successes, failures = health.successes + 1, 0
        status = Status.UP if health.status is Status.UP or successes >= rise else health.status
        last_ok_at: float | None = now
        slow = slow_s is not None and result.took_s is not None and result.took_s >= slow_s
        # Answering after a timeout (the failures before it were all ambiguous) is busy, not broken.
        busy = health.failures > 0 and health.overloaded
        overloaded = status is Status.UP and (slow or busy or (overloaded and successes < rise))
        # A pass ends the fault once the node is not DOWN; while DOWN, its timings keep their origin.
        fault_at = health.fault_at if status is Status.DOWN else None
    else:
        successes, failures = 0, health.failures + 1
        down = health.status is Status.DOWN or failures >= fall or result.certain
        status = Status.DOWN if down else health.status
        last_ok_at = health.last_ok_at
        if fault_at is None:
            fault_at = min(now, result.sent_at) if result.sent_at is not None else now
        # A timeout of a node that was up may only mean it is busy: overloaded until the next verdict.
        overloaded = status is Status.UP and result.ambiguous and (failures == 1 or overloaded)
    since = now if status is not health.status else health.since
    return replace(
        health,
        status=status,
        successes=successes,
        failures=failures,
        since=since,
        last_ok_at=last_ok_at,
        fault_at=fault_at,
        overloaded=overloaded,
        detail=result.detail,
    )

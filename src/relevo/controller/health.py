"""Health of one node as a pure state machine: `rise`/`fall` consecutive probes, and a hold time.

Going DOWN is fast on purpose (`fall` failures, or at once when the provider says the process is gone
or paused: that is certain, no probe can contradict it). Coming back is slow on purpose: `rise` passes
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
    # The provider knows the process is gone or paused: no need to wait for `fall` failures.
    certain: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeHealth:
    status: Status = Status.UNKNOWN
    successes: int = 0  # consecutive passing probes (0 after any failure)
    failures: int = 0  # consecutive failed probes (0 after any pass)
    since: float = 0.0  # when `status` last changed
    last_ok_at: float | None = None  # the last passing probe: the fault happened after it
    detail: str = ""  # the last probe's detail

    @property
    def last_probe_ok(self) -> bool:
        return self.successes > 0

    def stable_up(self, now: float, hold_s: float) -> bool:
        """UP, and UP for at least `hold_s`: safe to give traffic back to."""
        return self.status is Status.UP and now - self.since >= hold_s


def observe(health: NodeHealth, result: ProbeResult, now: float, *, rise: int, fall: int) -> NodeHealth:
    """The health after one more probe result."""
    if result.ok:
        successes, failures = health.successes + 1, 0
        status = Status.UP if health.status is Status.UP or successes >= rise else health.status
        last_ok_at: float | None = now
    else:
        successes, failures = 0, health.failures + 1
        down = health.status is Status.DOWN or failures >= fall or result.certain
        status = Status.DOWN if down else health.status
        last_ok_at = health.last_ok_at
    since = now if status is not health.status else health.since
    return replace(
        health,
        status=status,
        successes=successes,
        failures=failures,
        since=since,
        last_ok_at=last_ok_at,
        detail=result.detail,
    )

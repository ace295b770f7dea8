"""Waiting in tests: relevo's one poll helper (`relevo.polling.wait_until`), failing the test with what it
waited for. A bound on waiting, never a speed assertion: a loaded machine only makes the wait longer."""

from __future__ import annotations

from collections.abc import Callable

from relevo import polling

TIMEOUT_S = 20.0
INTERVAL_S = 0.02


def wait_until(
    predicate: Callable[[], object],
    what: str,
    timeout_s: float = TIMEOUT_S,
    explain: Callable[[], str] | None = None,
    *,
    interval_s: float = INTERVAL_S,
) -> None:
    """Poll until `predicate()` is truthy, or fail the test saying `what` it waited for (and, given
    `explain`, what the system was doing)."""
    if not polling.wait_until(predicate, timeout_s, interval_s):
        raise AssertionError(
            f"timed out after {timeout_s:g} s waiting until {what}" + (explain() if explain else "")
        )

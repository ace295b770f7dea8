"""Waiting for something to become true: one helper instead of a hand-written deadline loop in every
module, on the monotonic clock (a wall clock set back or forward during a wait must not stretch or cut it).
"""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(
    predicate: Callable[[], object],
    timeout_s: float,
    interval_s: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], object] = time.sleep,
) -> bool:
    """Call `predicate` until it returns something true (True) or `timeout_s` has passed (False). It is
    asked at least once, even with no time to wait, and once more at the deadline; between two asks the
    wait is `interval_s`, never past the deadline."""
    deadline = clock() + timeout_s
    while True:
        if predicate():
            return True
        left = deadline - clock()
        if left <= 0:
            return False
        sleep(min(interval_s, left))

"""asyncio's event loop on a virtual clock, for engine tests whose counts follow from a schedule in time.

Whenever nothing is ready (no callback to run, no socket event waiting), the loop does not wait: its
clock jumps to the next timer. A run's timers therefore fire exactly on their schedule, however slow or
loaded the machine, and a test asserts what the schedule implies without depending on speed. Sockets
stay real: what they bring is handled as soon as it is there, at the virtual time it arrives.
"""

from __future__ import annotations

import asyncio
import math
import selectors


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """The loop whose `time()` and `clock()` (ns, for the load worker) read the virtual clock, from 0."""

    def __init__(self) -> None:
        self.now_ns = 0
        super().__init__(_JumpingSelector(self))

    def time(self) -> float:
        return self.now_ns / 1e9

    def clock(self) -> int:
        return self.now_ns


class _JumpingSelector(selectors.DefaultSelector):
    """Polls without waiting; where the loop would wait `timeout` s for I/O, the clock moves on instead."""

    def __init__(self, loop: VirtualClockLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:  # no timer at all: only a socket can move anything on, so wait for one
            return super().select(None)
        # Rounded up, so that the timer the loop waited for is due when it looks (never a ns early).
        self._loop.now_ns += math.ceil(timeout * 1e9)
        return []

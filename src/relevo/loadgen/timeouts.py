"""Request timeouts that fire within a few milliseconds of their due time, for a few ns per request.

A timer per request would cost a heap operation and a handle each; a periodic sweep over every connection
costs O(connections) per sweep and fires up to a sweep late. Instead the connections with a request in
flight wait in one queue per timeout length, in the order their requests went out: sending moves a
connection to the back (an `OrderedDict.move_to_end`, O(1)), so each queue is sorted by deadline and only
its head is ever looked at. A queue holds each connection once, not each request: nothing is allocated
per request, so the garbage collector has nothing to trace (a tuple per request kept for the length of
the timeout made it a tenth of the generator's CPU), and memory is O(connections). One timer wakes at the
earliest head, but never sooner than `MIN_GAP_NS` after the last wake-up, so that a dense queue does not
make the loop spin: a timeout fires at most `MIN_GAP_NS` plus the loop's own lateness after its due time.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

MIN_GAP_NS = 2_000_000
# `armed_ns` while no timer is set: any deadline is sooner.
NOT_ARMED_NS = 1 << 62


class Expirable(Protocol):
    """What a queue needs of a connection: is a request in flight, when did it go out, with which timeout
    (`timeout_ns` is written by `Timeouts.add`), and how to give up on it."""

    busy: bool
    sent_ns: int
    timeout_ns: int

    def expire(self) -> None: ...


class Timeouts:
    """Connections by their request's timeout length; `due(now)` expires what is due, says when to look next.

    Driven by hand here (tests call `due`); `TimeoutTimer` drives it on an event loop.
    """

    __slots__ = ("armed_ns", "queues")

    def __init__(self) -> None:
        self.queues: dict[int, OrderedDict[Expirable, None]] = {}
        # A deadline sooner than this wakes the driver (`_arm`); nothing does when driven by hand.
        self.armed_ns = -1

    def add(self, conn: Expirable, timeout_ns: int) -> None:
        """Watch the request `conn` has just sent (at `conn.sent_ns`)."""
        queue = self.queues.get(timeout_ns)
        if queue is None:
            queue = self.queues[timeout_ns] = OrderedDict()
        conn.timeout_ns = timeout_ns
        try:
            queue.move_to_end(conn)
        except KeyError:  # its first request, or its first since `due` let it go
            queue[conn] = None
        deadline = conn.sent_ns + timeout_ns
        if deadline < self.armed_ns:
            self._arm(deadline)

    def _arm(self, deadline_ns: int) -> None:
        """Be woken at `deadline_ns` (the driver's business)."""

    def due(self, now_ns: int) -> int | None:
        """Expire every request past its deadline at `now_ns`; the next deadline (None: nothing left)."""
        soonest: int | None = None
        for timeout_ns, queue in self.queues.items():
            while queue:
                conn = next(iter(queue))
                # A connection idle now, or on a request of another timeout length (in that queue), has
                # nothing to expire here: let it go (sending again puts it back).
                if conn.busy and conn.timeout_ns == timeout_ns:
                    deadline = conn.sent_ns + timeout_ns
                    if deadline > now_ns:
                        if soonest is None or deadline < soonest:
                            soonest = deadline
                        break
                    del queue[conn]
                    conn.expire()
                else:
                    del queue[conn]
        return soonest


class TimeoutTimer(Timeouts):
    """`Timeouts` on an event loop: one timer handle, re-armed only when a sooner deadline comes."""

    __slots__ = ("clock", "handle", "last_ns", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, clock: Callable[[], int]) -> None:
        super().__init__()
        self.loop = loop
        self.clock = clock
        self.handle: asyncio.TimerHandle | None = None
        self.armed_ns = NOT_ARMED_NS
        self.last_ns = 0

    def _arm(self, deadline_ns: int) -> None:
        if self.handle is not None:
            self.handle.cancel()
        at = max(deadline_ns, self.last_ns + MIN_GAP_NS)
        self.armed_ns = at
        self.handle = self.loop.call_later(max(0.0, (at - self.clock()) / 1e9), self._fire)

    def _fire(self) -> None:
        self.handle = None
        self.armed_ns = NOT_ARMED_NS
        now = self.last_ns = self.clock()
        soonest = self.due(now)
        # An expiry may have sent the next request (and armed the timer for it): keep the sooner one.
        if soonest is not None and soonest < self.armed_ns:
            self._arm(soonest)

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
        self.armed_ns = NOT_ARMED_NS

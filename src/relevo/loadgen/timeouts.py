"""Request timeouts that fire within a few milliseconds of their due time, for a few ns per request.

A timer per request would cost a heap operation and a handle each; a periodic sweep over every connection
costs O(connections) per sweep and fires up to a sweep late. Instead each request appends (deadline,
connection, send time) to the queue of its timeout length: requests of one length are sent in time order,
so each queue is sorted by deadline and only its head is ever looked at. One timer wakes at the earliest
head, but never sooner than `MIN_GAP_NS` after the last wake-up, so that a dense queue does not make the
loop spin: a timeout fires at most `MIN_GAP_NS` plus the loop's own lateness after its due time.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Protocol

MIN_GAP_NS = 2_000_000


class Expirable(Protocol):
    """What a queue entry needs of a connection: is it still on the request sent at `sent_ns`?"""

    busy: bool
    sent_ns: int

    def expire(self) -> None: ...


class Timeouts:
    """Deadlines by timeout length; `due(now)` expires what is due and says when to look next."""

    __slots__ = ("queues",)

    def __init__(self) -> None:
        self.queues: dict[int, deque[tuple[int, Expirable, int]]] = {}

    def add(self, conn: Expirable, timeout_ns: int) -> int:
        """Watch the request `conn` has just sent; returns its deadline."""
        queue = self.queues.get(timeout_ns)
        if queue is None:
            queue = self.queues[timeout_ns] = deque()
        deadline = conn.sent_ns + timeout_ns
        queue.append((deadline, conn, conn.sent_ns))
        return deadline

    def due(self, now_ns: int) -> int | None:
        """Expire every request past its deadline at `now_ns`; the next deadline (None: nothing left)."""
        soonest: int | None = None
        for queue in self.queues.values():
            while queue and queue[0][0] <= now_ns:
                _, conn, sent_ns = queue.popleft()
                # The entry is stale when that request has already ended (the connection is idle or on a
                # later request): only the request it was made for may time out.
                if conn.busy and conn.sent_ns == sent_ns:
                    conn.expire()
            if queue and (soonest is None or queue[0][0] < soonest):
                soonest = queue[0][0]
        return soonest


class TimeoutTimer:
    """Drives `Timeouts` on an event loop: one timer handle, re-armed only when a sooner deadline comes."""

    __slots__ = ("armed_ns", "clock", "handle", "last_ns", "loop", "timeouts")

    def __init__(self, loop: asyncio.AbstractEventLoop, clock: Callable[[], int]) -> None:
        self.loop = loop
        self.clock = clock
        self.timeouts = Timeouts()
        self.handle: asyncio.TimerHandle | None = None
        self.armed_ns = 0
        self.last_ns = 0

    def add(self, conn: Expirable, timeout_ns: int) -> None:
        deadline = self.timeouts.add(conn, timeout_ns)
        if self.handle is None or deadline < self.armed_ns:
            self._arm(deadline)

    def _arm(self, deadline_ns: int) -> None:
        if self.handle is not None:
            self.handle.cancel()
        at = max(deadline_ns, self.last_ns + MIN_GAP_NS)
        self.armed_ns = at
        self.handle = self.loop.call_later(max(0.0, (at - self.clock()) / 1e9), self._fire)

    def _fire(self) -> None:
        self.handle = None
        now = self.last_ns = self.clock()
        soonest = self.timeouts.due(now)
        # An expiry may have sent the next request (and armed the timer for it): keep the sooner one.
        if soonest is not None and (self.handle is None or soonest < self.armed_ns):
            self._arm(soonest)

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None

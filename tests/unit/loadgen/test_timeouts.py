"""Request timeouts fire within 10 ms of their due time, checked on a fake clock."""

from __future__ import annotations

from dataclasses import dataclass, field

from relevo.loadgen.timeouts import MIN_GAP_NS, Timeouts

MS = 1_000_000


@dataclass(eq=False)  # hashed by identity, as a connection is
class FakeConn:
    sent_ns: int
    busy: bool = True
    timeout_ns: int = 0
    expired_at: list[int] = field(default_factory=list)
    clock: list[int] = field(default_factory=lambda: [0])

    def expire(self) -> None:
        self.busy = False
        self.expired_at.append(self.clock[0])


def drive(timeouts: Timeouts, clock: list[int], until_ns: int, lateness_ns: int) -> None:
    """A loop that wakes when told, `lateness_ns` late (as a busy event loop would), never sooner than
    MIN_GAP_NS after its last wake-up."""
    wake: int | None = 0
    last = -MIN_GAP_NS
    while wake is not None and wake <= until_ns:
        clock[0] = max(wake, last + MIN_GAP_NS) + lateness_ns
        last = clock[0]
        wake = timeouts.due(clock[0])


def test_timeouts_fire_within_10ms_of_due_time() -> None:
    """Requests sent every 0.3 ms with two timeout lengths each expire within 10 ms of their deadline,
    even with a loop 5 ms late at every wake-up, and in as few wake-ups as the gap allows."""
    clock = [0]
    timeouts = Timeouts()
    conns = []
    for i in range(2000):
        conn = FakeConn(sent_ns=i * 300_000, clock=clock)
        timeouts.add(conn, (200 if i % 2 else 50) * MS)
        conns.append(conn)
    drive(timeouts, clock, 2_000 * MS, lateness_ns=5 * MS)
    for conn in conns:
        timeout = (200 if conns.index(conn) % 2 else 50) * MS
        assert conn.expired_at, "a request never timed out"
        late = conn.expired_at[0] - (conn.sent_ns + timeout)
        assert 0 <= late <= 10 * MS, late


def test_a_request_that_ended_does_not_time_out() -> None:
    """An entry for a request that finished, or for an earlier request on the same connection, is
    skipped: only the request it was made for can expire."""
    clock = [0]
    timeouts = Timeouts()
    finished = FakeConn(sent_ns=0, clock=clock)
    reused = FakeConn(sent_ns=0, clock=clock)
    timeouts.add(finished, 100 * MS)
    timeouts.add(reused, 100 * MS)
    finished.busy = False
    reused.sent_ns = 50 * MS  # its first request ended; a second one left at 50 ms
    timeouts.add(reused, 100 * MS)
    assert timeouts.due(120 * MS) == 150 * MS
    assert finished.expired_at == [] and reused.expired_at == []
    clock[0] = 150 * MS
    assert timeouts.due(150 * MS) is None
    assert reused.expired_at == [150 * MS]


def test_a_connection_is_queued_once_however_many_requests_it_sends() -> None:
    """Memory is per connection, not per request: 1,000 requests on one connection leave one entry."""
    timeouts = Timeouts()
    conn = FakeConn(sent_ns=0)
    for i in range(1000):
        conn.sent_ns = i * MS
        timeouts.add(conn, 100 * MS)
    assert [len(queue) for queue in timeouts.queues.values()] == [1]
    assert timeouts.due(1000 * MS) == 1099 * MS
    assert conn.expired_at == []


def test_a_connection_that_changed_timeout_length_neither_expires_early_nor_holds_up_others() -> None:
    """A connection whose next request has a longer timeout still sits in the shorter timeout's queue: that
    entry is let go, the other connection behind it expires on time, and it expires at its own deadline."""
    clock = [0]
    timeouts = Timeouts()
    switched = FakeConn(sent_ns=0, clock=clock)
    other = FakeConn(sent_ns=0, clock=clock)
    timeouts.add(switched, 100 * MS)
    switched.sent_ns = 10 * MS  # its first request ended; the next one has a 1 s timeout
    timeouts.add(switched, 1000 * MS)
    other.sent_ns = 20 * MS
    timeouts.add(other, 100 * MS)
    clock[0] = 125 * MS
    assert timeouts.due(125 * MS) == 1010 * MS
    assert other.expired_at == [125 * MS] and switched.expired_at == []
    clock[0] = 1010 * MS
    assert timeouts.due(1010 * MS) is None
    assert switched.expired_at == [1010 * MS]

"""The two ways load is driven inside one worker: JMeter's closed model and wrk2's open model.

`ClosedUser` is one JMeter thread: it sends its next request when the previous one has finished. An
`OpenGroup` sends each request at its intended time on any idle connection (opening another when all are
busy, up to its limit, else queueing) and measures latency from that intended time, so a stalled server
is charged for every request it delayed (no coordinated omission). Both are plain callback objects
driven by `Connection`: nothing is awaited per request.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import MutableSequence
from typing import Protocol

from relevo.loadgen.client import Clock, Connection, Sampler
from relevo.loadgen.jtl import JtlWriter
from relevo.loadgen.plan import ThreadGroup
from relevo.loadgen.recorder import SampleRecorder
from relevo.loadgen.shares import GroupShare
from relevo.loadgen.stats import ErrorKind
from relevo.loadgen.timeouts import TimeoutTimer

NEVER_NS = 1 << 62
# The open model's shortest sleep between two sends (see OpenGroup.tick).
MIN_WAKE_NS = 1_000_000
# The open model's requests waiting for a connection, at most (per worker): past it, what falls due is
# dropped at once (counted, as k6's dropped_iterations), never queued, so memory stays bounded whatever
# the rate and however slow the target.
BACKLOG_MAX = 100_000


class DriverHost(Protocol):
    """What the drivers use of the worker that runs them (`worker.Worker`; a protocol, so the drivers
    never import the worker): its loop and clocks, where samples are recorded, the connections it owns,
    and where users report their lives."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def timer(self) -> TimeoutTimer: ...
    @property
    def t0_ns(self) -> int: ...
    @property
    def stopping(self) -> bool: ...
    @property
    def recorder(self) -> SampleRecorder: ...
    @property
    def sink(self) -> JtlWriter | None: ...
    @property
    def timing(self) -> bool: ...
    @property
    def served_key(self) -> bytes: ...
    @property
    def conns(self) -> set[Connection]: ...
    @property
    def unstarted(self) -> dict[ClosedUser, asyncio.TimerHandle]: ...
    @property
    def users(self) -> list[ClosedUser]: ...

    def user_started(self, group: int) -> None: ...

    def user_finished(self, group: int) -> None: ...

    def track_start(self, user: ClosedUser, handle: asyncio.TimerHandle) -> None: ...

    def fail(self, conn: Connection, kind: ErrorKind) -> None: ...

    def emit(self, conn: Connection, end_ns: int, kind: ErrorKind | None) -> None: ...


class ClosedUser:
    """A virtual user: `left` more samples (negative: until the deadline), cycling through the samplers."""

    __slots__ = (
        "clock",
        "conn",
        "deadline_ns",
        "group",
        "idx",
        "left",
        "runner",
        "samplers",
        "think_s",
        "thread",
    )

    def __init__(
        self,
        runner: DriverHost,
        group: int,
        samplers: tuple[Sampler, ...],
        *,
        thread: str,
        left: int,
        deadline_ns: int,
        think_s: float = 0.0,
    ) -> None:
        self.runner = runner
        self.clock = runner.clock
        self.think_s = think_s
        self.group = group
        self.samplers = samplers
        self.thread = thread
        self.left = left
        self.deadline_ns = deadline_ns
        self.idx = 0
        self.conn: Connection | None = None

    def start(self) -> None:
        self.runner.unstarted.pop(self, None)
        self.runner.user_started(self.group)
        self.next()

    def next(self) -> None:
        runner = self.runner
        if self.left == 0 or runner.stopping:
            self.finish()
            return
        now = self.clock()
        if now >= self.deadline_ns:
            self.finish()
            return
        samplers = self.samplers
        sampler = samplers[self.idx]
        self.idx += 1
        if self.idx == len(samplers):
            self.idx = 0
        self.left -= 1
        conn = self.conn
        if conn is not None and not conn.closed and conn.addr == sampler.addr:
            conn.send(sampler, now, now)
            return
        if conn is not None:
            conn.close()
        self.connect(sampler, now, now)

    def connect(self, sampler: Sampler, start_ns: int, now: int) -> None:
        runner = self.runner
        conn = self.conn = Connection(
            self, sampler, runner.served_key, thread=self.thread, timing=runner.timing, timer=runner.timer
        )
        runner.conns.add(conn)
        conn.connect(start_ns, now)

    def finish(self) -> None:
        if self.left > 0 and self.runner.stopping:
            self.abandon()
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        self.runner.user_finished(self.group)

    def abandon(self) -> None:
        """The run was stopped: the requests this user had left are counted as unfinished."""
        if self.left > 0:
            record_unfinished(self.runner, self.samplers, first=self.idx, stride=1, count=self.left)
            self.left = 0

    def on_response(self, conn: Connection) -> None:
        end_ns = self.clock()
        parser = conn.parser
        runner = self.runner
        runner.recorder.response(
            conn.sampler, conn.start_ns, end_ns, parser.status, parser.received, parser.served_by
        )
        if runner.sink is not None:
            runner.emit(conn, end_ns, None)
        if parser.close or not conn.sampler.keepalive:
            conn.close()
            self.after_sample()
            return
        # The common case, next() inline: one sampler, the same connection, more to send, still on time.
        # The response's end is the next request's start: a clock read costs as much as a dozen lines.
        left = self.left
        fast = len(self.samplers) == 1 and not self.think_s
        if left and fast and not runner.stopping and end_ns < self.deadline_ns:
            self.left = left - 1
            conn.send(conn.sampler, end_ns, end_ns)
            return
        self.after_sample()

    def after_sample(self) -> None:
        """The next request now, or after the think time (JMeter's Constant Timer) when there is one."""
        if self.think_s:
            self.runner.loop.call_later(self.think_s, self.next)
        else:
            self.next()

    def on_failure(self, conn: Connection, kind: ErrorKind) -> None:
        self.runner.fail(conn, kind)
        if self.conn is conn:
            self.conn = None
        self.after_sample()

    def on_lost(self, conn: Connection) -> None:
        self.runner.conns.discard(conn)
        if self.conn is conn:
            self.conn = None

    def on_stale(self, conn: Connection) -> None:
        """The same request again on a new connection, its latency still counted from the first try."""
        self.on_lost(conn)
        self.connect(conn.sampler, conn.start_ns, self.clock())


class OpenGroup:
    """This worker's part of a fixed-rate group: requests first, first + stride, ... of the schedule."""

    __slots__ = (
        "backlog",
        "base_ns",
        "clock",
        "count",
        "deadline_ns",
        "finished",
        "group",
        "idle",
        "in_flight",
        "live",
        "max_conns",
        "opened",
        "period_ns",
        "runner",
        "samplers",
        "sent",
        "share",
        "spec",
    )

    def __init__(
        self,
        runner: DriverHost,
        spec: ThreadGroup,
        share: GroupShare,
        samplers: tuple[Sampler, ...],
        t0_ns: int,
    ) -> None:
        assert spec.rate_rps is not None
        self.runner = runner
        self.clock = runner.clock
        self.spec = spec
        self.share = share
        self.group = share.group
        self.samplers = samplers
        self.count = share.count
        self.sent = 0
        # The global schedule is delay + k / rate; this worker's j-th request is k = first + j * stride.
        self.period_ns = share.stride * 1e9 / spec.rate_rps
        self.base_ns = t0_ns + spec.delay_s * 1e9 + share.first * 1e9 / spec.rate_rps
        self.max_conns = max(1, share.connections)
        self.live: set[Connection] = set()
        self.idle: list[Connection] = []
        self.backlog: deque[tuple[Sampler, int]] = deque()
        self.in_flight = 0
        self.opened = 0
        self.finished = False
        self.deadline_ns = t0_ns + int((spec.delay_s + (spec.duration_s or 0.0)) * 1e9)

    def start(self) -> None:
        self.runner.user_started(self.group)
        runner = self.runner
        runner.loop.call_later(max(0.0, (self.deadline_ns - self.clock()) / 1e9), self.end)
        self.tick()

    def end(self) -> None:
        """The duration is over: what is still waiting for a connection is dropped, not sent late (a run
        lasts its duration plus at most one timeout, however overloaded the target)."""
        if self.finished:
            return
        now = self.clock()
        if now < self.deadline_ns and not self.runner.stopping:
            # A loop's timer can fire early: libuv counts from the time it read at the start of the loop's
            # turn, so a busy turn moves every timer armed in it forward. Ending here would leave the last
            # requests due before the deadline neither sent nor dropped (1-2 of 16,000 under a fault).
            wait_ns = max(self.deadline_ns - now, MIN_WAKE_NS)
            self.runner.loop.call_later(wait_ns / 1e9, self.end)
            return
        if self.sent < self.count and not self.runner.stopping:
            self.tick()  # whatever fell due since the last wake-up: sent now or queued (then dropped)
        self.stop()

    def tick(self) -> None:
        """Send every request whose intended time has come, then sleep until the next one is due."""
        runner = self.runner
        if runner.stopping:
            self.stop()
            return
        now = self.clock()
        samplers = self.samplers
        n = len(samplers)
        share = self.share
        while self.sent < self.count:
            intended = int(self.base_ns + self.sent * self.period_ns)
            if intended > now:
                # Sleep until the next request is due, but at least MIN_WAKE_NS: a shorter timer rounds to
                # zero (uvloop counts in ms) and the loop would spin. Requests due meanwhile go out
                # together at the next wake-up, their latency still counted from their intended time.
                wait_ns = intended - now if intended - now > MIN_WAKE_NS else MIN_WAKE_NS
                runner.loop.call_later(wait_ns / 1e9, self.tick)
                return
            if len(self.backlog) >= BACKLOG_MAX:
                # Every connection is busy and the queue full: all that is due now is dropped in one go.
                due = int((now - self.base_ns) // self.period_ns) + 1 - self.sent
                self.drop_due(min(max(1, due), self.count - self.sent), now)
                continue
            sampler = samplers[(share.first + self.sent * share.stride) % n]
            self.sent += 1
            self.dispatch(sampler, intended, now)
        self.maybe_finish()

    def drop_due(self, due: int, now: int) -> None:
        """The next `due` requests of the schedule dropped (counted per sampler), in O(samplers)."""
        samplers, share, recorder = self.samplers, self.share, self.runner.recorder
        n = len(samplers)
        end = self.sent + due
        for j in range(self.sent, self.sent + min(due, n)):
            # The j-th request's sampler repeats every n requests: len(range(j, end, n)) requests share it.
            recorder.dropped(samplers[(share.first + j * share.stride) % n], now, len(range(j, end, n)))
        self.sent = end

    def dispatch(self, sampler: Sampler, intended: int, now: int) -> None:
        self.in_flight += 1
        idle = self.idle
        while idle:
            conn = idle.pop()
            if conn.closed:
                continue
            if conn.addr == sampler.addr:
                conn.send(sampler, intended, now)
                return
            self.drop(conn)
        if len(self.live) < self.max_conns:
            self.open(sampler, intended, now)
        else:
            self.backlog.append((sampler, intended))

    def open(self, sampler: Sampler, intended: int, now: int) -> None:
        self.opened += 1
        thread = f"{self.spec.name} {self.group + 1}-{self.share.first + 1}.{self.opened}"
        runner = self.runner
        conn = Connection(
            self, sampler, runner.served_key, thread=thread, timing=runner.timing, timer=runner.timer
        )
        self.live.add(conn)
        runner.conns.add(conn)
        conn.connect(intended, now)

    def drop(self, conn: Connection) -> None:
        conn.close()
        self.live.discard(conn)
        self.runner.conns.discard(conn)

    def next_for(self, conn: Connection | None) -> None:
        """A connection came free (None: one closed): the oldest waiting request goes out next."""
        backlog = self.backlog
        if conn is not None and backlog and backlog[0][0].addr != conn.addr:
            self.drop(conn)
            conn = None
        if backlog:
            if conn is not None:
                sampler, intended = backlog.popleft()
                conn.send(sampler, intended, self.clock())
                return
            while backlog and len(self.live) < self.max_conns:
                sampler, intended = backlog.popleft()
                self.open(sampler, intended, self.clock())
            return
        if conn is not None:
            self.idle.append(conn)
        self.maybe_finish()

    def on_response(self, conn: Connection) -> None:
        end_ns = self.clock()
        parser = conn.parser
        runner = self.runner
        self.in_flight -= 1
        runner.recorder.response(
            conn.sampler, conn.start_ns, end_ns, parser.status, parser.received, parser.served_by
        )
        if runner.sink is not None:
            runner.emit(conn, end_ns, None)
        if parser.close or not conn.sampler.keepalive:
            self.drop(conn)
            self.next_for(None)
        else:
            self.next_for(conn)

    def on_failure(self, conn: Connection, kind: ErrorKind) -> None:
        self.in_flight -= 1
        self.runner.fail(conn, kind)
        self.live.discard(conn)
        self.next_for(None)

    def on_lost(self, conn: Connection) -> None:
        self.live.discard(conn)
        self.runner.conns.discard(conn)

    def on_stale(self, conn: Connection) -> None:
        """The same request again on a new connection, its latency still counted from its intended time."""
        self.on_lost(conn)
        self.open(conn.sampler, conn.start_ns, self.clock())

    def stop(self) -> None:
        """Send nothing more: the queue is dropped (counted); what is in flight still finishes (or times
        out)."""
        self.backlog_dropped()
        self.abandon()
        self.maybe_finish()

    def backlog_dropped(self) -> None:
        """The requests waiting for a connection are dropped (counted): they were due, never sent."""
        backlog = self.backlog
        if backlog:
            recorder = self.runner.recorder
            now = self.clock()
            for sampler, _ in backlog:
                recorder.dropped(sampler, now)
            self.in_flight -= len(backlog)
            backlog.clear()

    def abandon(self) -> None:
        """Send nothing more: requests of the schedule not sent yet are counted as unfinished (only a stop
        leaves any: at the end of the duration every one was due and went out, or was dropped)."""
        if self.sent < self.count:
            share = self.share
            record_unfinished(
                self.runner,
                self.samplers,
                first=share.first + self.sent * share.stride,
                stride=share.stride,
                count=self.count - self.sent,
            )
        self.sent = self.count

    def maybe_finish(self) -> None:
        if self.finished or self.sent < self.count or self.in_flight:
            return
        self.finished = True
        for conn in tuple(self.live):
            self.drop(conn)
        self.idle.clear()
        self.runner.user_finished(self.group)


def record_unfinished(
    runner: DriverHost, samplers: tuple[Sampler, ...], *, first: int, stride: int, count: int
) -> None:
    """`count` requests that would have gone to samplers[(first + k * stride) % n], k = 0..count-1, counted
    as unfinished per sampler (the pattern repeats every n requests, so this costs n steps, not count)."""
    n = len(samplers)
    for k in range(min(count, n)):
        runner.recorder.unfinished(samplers[(first + k * stride) % n], len(range(k, count, n)))


def schedule_users(
    runner: DriverHost, spec: ThreadGroup, share: GroupShare, samplers: tuple[Sampler, ...]
) -> int:
    """Create this worker's users of a closed group, each starting at its place in the ramp-up."""
    loop: asyncio.AbstractEventLoop = runner.loop
    t0 = runner.t0_ns
    deadline = NEVER_NS if spec.duration_s is None else t0 + int((spec.delay_s + spec.duration_s) * 1e9)
    per_loop = len(samplers)
    left = -1 if spec.loops is None else spec.loops * per_loop
    for t in share.threads:
        user = ClosedUser(
            runner,
            share.group,
            samplers,
            thread=f"{spec.name} {share.group + 1}-{t + 1}",
            left=left,
            deadline_ns=deadline,
            think_s=spec.think_s,
        )
        # JMeter starts thread t at delay + t * ramp-up / threads.
        at = t0 + int((spec.delay_s + t * spec.ramp_up_s / spec.threads) * 1e9)
        runner.users.append(user)
        runner.track_start(user, loop.call_later(max(0.0, (at - runner.clock()) / 1e9), user.start))
    return len(share.threads)


def active_counts(counters: MutableSequence[int], workers: int, stride: int, group: int) -> tuple[int, int]:
    """(this group's, all groups') active users across every worker, from the shared counters."""
    grp = 0
    every = 0
    for w in range(workers):
        base = w * stride
        grp += counters[base + 2 + group]
        every += sum(counters[base + 2 : base + stride])
    return grp, every

"""One worker: an event loop (uvloop when installed) running its share of the plan to the end.

The same code runs in the parent (one worker) or in a child process (several). Progress goes out through
a small shared array of counters the parent reads; the results come back once, at the end, as the
worker's accumulators, which the parent merges exactly.
"""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Callable, MutableSequence
from dataclasses import dataclass
from multiprocessing.connection import Connection as MpConnection
from pathlib import Path

from relevo.loadgen.client import Address, Clock, Connection, Sampler, monotonic_ns, resolve
from relevo.loadgen.drivers import ClosedUser, OpenGroup, active_counts, schedule_users
from relevo.loadgen.histogram import Histogram
from relevo.loadgen.http import header_key
from relevo.loadgen.jtl import JtlWriter
from relevo.loadgen.plan import Plan, ThreadGroup
from relevo.loadgen.recorder import SampleRecorder
from relevo.loadgen.shares import WorkerShare
from relevo.loadgen.stats import ErrorKind, RunStats, TimeSeries
from relevo.loadgen.timeouts import TimeoutTimer

PROGRESS_INTERVAL_S = 0.1
# How often the per-second series goes to whoever observes the run (the engine's handle).
SERIES_INTERVAL_S = 0.25
# After a stop request, how long requests in flight may still finish before they are cut off.
STOP_GRACE_S = 2.0
# If every connection was refused during this first part of the run, nothing listens: stop.
FAIL_FAST_S = 1.0

# How often the latency histogram so far goes with the series (for "p99 so far" in progress lines, and
# the live p50/p99 of the last second that a run tells the dashboard: engine.RecentLatency).
HISTOGRAM_INTERVAL_S = 0.5

SparseHistogram = tuple[int, int, int, dict[int, int]]
SeriesCallback = Callable[[int, TimeSeries, SparseHistogram | None], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerJob:
    plan: Plan
    share: WorkerShare
    workers: int
    jtl_part: Path | None = None


@dataclass(slots=True, kw_only=True)
class WorkerResult:
    worker: int
    stats: RunStats
    interrupted: bool
    # Every connection was refused during the first FAIL_FAST_S: the run stopped there.
    nothing_listening: bool = False


def counters_stride(plan: Plan) -> int:
    """Shared counters per worker: samples done, samples failed, then active users per group."""
    return 2 + len(plan.groups)


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop's loop when it is installed (about half the CPU per request), else asyncio's own."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


class Worker:
    """Owns one worker's connections, users, recorder and the periodic timeout sweep."""

    def __init__(
        self,
        job: WorkerJob,
        *,
        t0_ns: int,
        epoch_delta_ns: int,
        counters: MutableSequence[int],
        on_series: SeriesCallback | None = None,
        orphan_check: bool = False,
        clock: Clock = monotonic_ns,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        # Every reading of the time goes through this clock, and it must agree with the loop's own time():
        # a test runs a worker on an event loop with a virtual clock, where nothing depends on speed.
        self.clock = clock
        self.timer = TimeoutTimer(self.loop, clock)
        self.on_series = on_series
        self.series_mark = 0  # the first second not yet final when the series was last sent
        self.series_sent_ns = 0
        self.hist_sent_ns = 0
        # Only a worker process checks for its parent: in the main process the parent is the user's
        # shell, whose exit says nothing about whether anyone waits for this run.
        self.orphan_check = orphan_check
        self.nothing_listening = False
        self.job = job
        self.plan = job.plan
        self.t0_ns = t0_ns
        self.sink = (
            JtlWriter.open(job.jtl_part, header=False, epoch_delta_ns=epoch_delta_ns)
            if job.jtl_part
            else None
        )
        self.timing = self.sink is not None
        self.recorder = SampleRecorder(t0_ns=t0_ns)
        self.served_key = header_key(self.plan.count_header)
        self.conns: set[Connection] = set()
        self.counters = counters
        self.stride = counters_stride(self.plan)
        self.base = job.share.worker * self.stride
        self.stopping = False
        self.interrupted = False
        self.pending = 0
        self.unstarted: dict[ClosedUser, asyncio.TimerHandle] = {}
        self.users: list[ClosedUser] = []
        self.open_groups: list[OpenGroup] = []
        self.finished = asyncio.Event()
        self._addresses: dict[tuple[str, int], Address] = {}
        self.parent_pid = os.getppid()

    def samplers(self, group: ThreadGroup) -> tuple[Sampler, ...]:
        out = []
        for request in group.requests:
            key = (request.host, request.port)
            addr = self._addresses.get(key)
            if addr is None:
                addr = self._addresses[key] = resolve(request.host, request.port)
            out.append(Sampler(request, self.recorder.label(request.label), addr))
        return tuple(out)

    async def run(self) -> WorkerResult:
        # Labels in plan order, so that merged reports list rows as the plan names them.
        for label in self.plan.labels:
            self.recorder.label(label)
        for part in self.job.share.groups:
            spec = self.plan.groups[part.group]
            samplers = self.samplers(spec)
            if spec.rate_rps is None:
                self.pending += schedule_users(self, spec, part, samplers)
            else:
                group = OpenGroup(self, spec, part, samplers, self.t0_ns)
                self.open_groups.append(group)
                self.pending += 1
                self.loop.call_later(max(0.0, (self.t0_ns - self.clock()) / 1e9), group.start)
        if self.pending == 0:
            self.finished.set()
        # Everything allocated so far lives for the whole run: keep the collector from rescanning it.
        gc.freeze()
        self._every_interval()
        self.loop.call_later(max(0.0, (self.t0_ns - self.clock()) / 1e9 + FAIL_FAST_S), self._fail_fast)
        try:
            await self.finished.wait()
        finally:
            gc.unfreeze()  # back to normal collection: a long-lived caller may run many benches
            self.timer.cancel()
            self.publish()
            self.send_series()
            for conn in tuple(self.conns):
                conn.close()
            if self.sink is not None:
                self.sink.close()
        # One more turn of the loop so that the closes reach the sockets before the loop ends.
        await asyncio.sleep(0)
        recorder = self.recorder
        if recorder.refused and recorder.refused == recorder.done:
            # A run over before the first second's check (a closed run of a few requests): every sample
            # refused means nothing listens, the same verdict as the check's, in both load models.
            self.nothing_listening = True
        return WorkerResult(
            worker=self.job.share.worker,
            stats=self.recorder.stats,
            interrupted=self.interrupted,
            nothing_listening=self.nothing_listening,
        )

    # Users and groups report their lives here.
    def user_started(self, group: int) -> None:
        self.counters[self.base + 2 + group] += 1

    def user_finished(self, group: int) -> None:
        self.counters[self.base + 2 + group] -= 1
        self.pending -= 1
        if self.pending <= 0:
            self.finished.set()

    def track_start(self, user: ClosedUser, handle: asyncio.TimerHandle) -> None:
        self.unstarted[user] = handle

    def fail(self, conn: Connection, kind: ErrorKind) -> None:
        """Record a failed sample (nothing sent counts 0 bytes sent, as JMeter does) and let its
        connection go: the one place both drivers end a failed request."""
        end_ns = self.clock()
        self.recorder.failure(
            conn.sampler,
            conn.start_ns,
            end_ns,
            kind,
            received=conn.parser.received,
            sent=conn.sampler.sent if conn.written else 0,
        )
        if self.sink is not None:
            self.emit(conn, end_ns, kind)
        self.conns.discard(conn)

    def emit(self, conn: Connection, end_ns: int, kind: ErrorKind | None) -> None:
        """Write one sample to the JTL file (only when one was asked for)."""
        assert self.sink is not None
        parser = conn.parser
        grp, every = active_counts(self.counters, self.job.workers, self.stride, self.group_of(conn))
        self.sink.sample(
            sampler=conn.sampler,
            thread=conn.thread,
            start_ns=conn.start_ns,
            end_ns=end_ns,
            status=parser.status,
            error_kind=kind,
            detail="",
            received=parser.received,
            latency_ns=conn.first_ns - conn.start_ns if conn.first_ns else 0,
            connect_ns=conn.connect_ns - conn.start_ns if conn.connect_ns else 0,
            grp_threads=grp,
            all_threads=every,
            sent=None if conn.written else 0,
        )

    def group_of(self, conn: Connection) -> int:
        owner = conn.owner
        return owner.group if isinstance(owner, ClosedUser | OpenGroup) else 0

    def publish(self) -> None:
        self.counters[self.base] = self.recorder.done
        self.counters[self.base + 1] = self.recorder.failed

    def send_series(self) -> None:
        """Give the observer the seconds that changed since the last time (earlier ones are final)."""
        if self.on_series is None:
            return
        series = self.recorder.series
        now = self.clock()
        hist = None
        if now - self.hist_sent_ns >= HISTOGRAM_INTERVAL_S * 1e9 or self.finished.is_set():
            self.hist_sent_ns = now
            total = Histogram()
            for label in self.recorder.stats.labels.values():
                total.merge(label.hist)
            hist = total.sparse()
        self.on_series(self.series_mark, series.tail(self.series_mark), hist)
        # A sample lands in the second it ends in, so seconds before the current one no longer change.
        self.series_mark = max(0, (self.clock() - self.t0_ns) // 1_000_000_000 - 1)
        self.series_mark = min(self.series_mark, len(series))

    def _every_interval(self) -> None:
        """Publish progress and the series; stop when orphaned or when nothing listens."""
        if self.finished.is_set():
            return
        if self.orphan_check and os.getppid() != self.parent_pid:
            self.abort()  # orphaned: nobody will read the results, and the load must not run on
            return
        self.publish()
        now = self.clock()
        if now - self.series_sent_ns >= SERIES_INTERVAL_S * 1e9:
            self.series_sent_ns = now
            self.send_series()
        self.loop.call_later(PROGRESS_INTERVAL_S, self._every_interval)

    def _fail_fast(self) -> None:
        """At the end of the first second: was every connection refused? Then nothing listens: stop."""
        recorder = self.recorder
        if self.finished.is_set() or self.stopping:
            return
        if recorder.refused and recorder.refused == recorder.done and not self.any_connected():
            self.nothing_listening = True
            self.abort()

    def any_connected(self) -> bool:
        """Whether some connection is open now (a request in flight on it counts as listened to)."""
        return any(c.transport is not None for c in self.conns)

    def stop(self) -> None:
        """Send nothing new; let requests in flight finish for a short grace, then cut them off."""
        if self.stopping:
            self.abort()
            return
        self.stopping = True
        self.interrupted = True
        for user, handle in tuple(self.unstarted.items()):
            handle.cancel()
            user.start()  # finishes at once: the runner is stopping
        self.unstarted.clear()
        for group in self.open_groups:
            group.stop()
        self.loop.call_later(STOP_GRACE_S, self.abort)

    def abort(self) -> None:
        """Cut off every request in flight and end the run: what the plan had left is counted as
        unfinished (cut off in flight, or never sent), so every planned request is still accounted for."""
        if self.finished.is_set():
            return
        for conn in tuple(self.conns):
            if conn.busy:
                self.recorder.unfinished(conn.sampler)
            conn.busy = False
            if conn.connect_task is not None:
                conn.connect_task.cancel()
            if conn.transport is not None:
                conn.transport.abort()
        self.stopping = True
        for group in self.open_groups:
            group.backlog_dropped()
            group.abandon()
        for user in self.users:
            user.abandon()
        self.finished.set()


async def run_job(
    job: WorkerJob,
    *,
    t0_ns: int,
    epoch_delta_ns: int,
    counters: MutableSequence[int],
    control: MpConnection | None = None,
    on_series: SeriesCallback | None = None,
    on_start: Callable[[Worker], None] | None = None,
    clock: Clock = monotonic_ns,
) -> WorkerResult:
    """Run a share to its end. A message on `control` (the parent's pipe; a worker process), or
    `Worker.stop` called on the loop (given by `on_start`; a worker in the parent), stops it early: the
    first stops sending, a second cuts off."""
    runner = Worker(
        job,
        t0_ns=t0_ns,
        epoch_delta_ns=epoch_delta_ns,
        counters=counters,
        on_series=on_series,
        orphan_check=control is not None,
        clock=clock,
    )
    if on_start is not None:
        on_start(runner)
    loop = asyncio.get_running_loop()
    if control is not None:

        def on_message() -> None:
            try:
                control.recv()
            except EOFError:  # the parent is gone: nobody will read the results, stop now
                loop.remove_reader(control.fileno())
                runner.abort()
                return
            runner.stop()

        loop.add_reader(control.fileno(), on_message)
    try:
        return await runner.run()
    finally:
        if control is not None:
            loop.remove_reader(control.fileno())

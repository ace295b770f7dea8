"""The load engine: a plan run on worker processes (default: one per core), behind a handle.

    run = engine.start(plan, workers=None, jtl=None, on_progress=None)   # returns once the load runs
    run.started_at          # epoch seconds of the common start instant (second 0 of the series)
    run.elapsed_s()         # seconds since that instant
    run.progress()          # LoadProgress: samples done and failed, active users, so far
    run.seconds()           # per-second series so far: tuple[Second] (requests, errors, dropped,
                            #   average/max latency ms, received KB, served_by {X-Served-By value: count})
    run.stop()              # send nothing new; requests in flight finish (at most STOP_GRACE_S); a
                            #   second stop() cuts them off. The result is then marked interrupted.
    run.wait(timeout_s)     # block until the end: RunResult (TimeoutError if still running then)
    run.done                # whether it has ended
    with engine.start(plan) as run: ...   # leaving the block stops the run and waits for it
    engine.run(plan, ...)   # start + wait; Ctrl-C stops (a second Ctrl-C cuts off) -> interrupted result

The series arrives from the workers every SERIES_INTERVAL_S; a second is final once the next one has
begun. Everything the handle says is safe to read from any thread while the load runs.

Python runs one thread of bytecode per process; a load generator that must keep up with wrk therefore
splits its users across processes (see `shares`). Every worker reports "ready", then all are given the
same start instant on the shared monotonic clock, so ramp-ups and rate schedules line up as if one
process ran them. The parent only watches: it reads progress counters and the series as they come, and
at the end merges the workers' accumulators (counters and the exact sums add, histograms add bucket by
bucket). One worker runs in a thread of the calling process, not a process of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import multiprocessing
import os
import shutil
import signal
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, MutableSequence, Sequence
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection as MpConnection
from multiprocessing.connection import wait
from pathlib import Path

from relevo.errors import RelevoError
from relevo.loadgen.client import resolve
from relevo.loadgen.histogram import Histogram
from relevo.loadgen.jtl import COLUMNS_5
from relevo.loadgen.live import LiveSeries, Second, SparseHistogram, seconds_of
from relevo.loadgen.plan import Plan
from relevo.loadgen.shares import split, useful_workers
from relevo.loadgen.stats import RunStats, TimeSeries
from relevo.loadgen.worker import (
    Worker,
    WorkerJob,
    WorkerResult,
    counters_stride,
    loop_factory,
    run_job,
)

# Workers get this long to start (spawned ones import Python afresh) before the clock starts.
READY_TIMEOUT_S = 60.0
# The live percentiles' window (RecentLatency): twice the workers' histogram interval, so that every
# window holds a report of each worker.
RECENT_S = 1.0
# Time between "start" and the start instant, so that every worker has its message before it passes.
START_MARGIN_S = 0.05


class LoadgenError(RelevoError):
    """The load generator itself failed (a worker died): not a verdict on the target."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadProgress:
    """A run's counters so far (not the text `relevo.progress.Progress` lines): what a progress line shows."""

    elapsed_s: float
    done: int
    failed: int
    active: int
    expected: int | None
    duration_s: float | None
    p99_ms: float | None = None  # over all samples so far, as of the workers' last report
    # The responses the workers reported since the previous progress report (callbacks only).
    recent: RecentLatency | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RecentLatency:
    """Percentiles of the responses the workers reported in the last RECENT_S (a sliding window, moved
    at each progress report): a live p50/p99. Workers send their histograms every
    worker.HISTOGRAM_INTERVAL_S, so a response is counted up to that late."""

    count: int
    p50_ms: float | None
    p99_ms: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RunResult:
    plan: Plan
    stats: RunStats
    started_at: float  # epoch seconds of the start instant
    elapsed_s: float  # from the start instant to the last worker's end
    workers: int
    event_loop: str
    interrupted: bool
    # Every connection was refused during the first second: the run stopped there.
    nothing_listening: bool = False


ProgressCallback = Callable[[LoadProgress], None]


def default_workers(plan: Plan | None = None) -> int:
    """One worker per core, but only half the cores when every target is on this machine.

    A local target needs CPU too: on the 2-core machines this was measured on, two workers against a
    local HAProxy + Apache gave 0.8x the requests per second of one worker, for 1.3-1.4x its CPU per
    request (benchmarks/loadgen.py). A remote target leaves every core to the generator.
    """
    cores = os.cpu_count() or 1
    if plan is not None and all(_is_local(r.host, r.port) for g in plan.groups for r in g.requests):
        return max(1, cores // 2)
    return cores


def _is_local(host: str, port: int) -> bool:
    return ipaddress.ip_address(resolve(host, port)[0]).is_loopback


def event_loop_name() -> str:
    return "uvloop" if loop_factory() is not asyncio.new_event_loop else "asyncio"


def start(
    plan: Plan,
    *,
    workers: int | None = None,
    jtl: Path | None = None,
    on_progress: ProgressCallback | None = None,
    progress_interval_s: float = 0.5,
) -> LoadRun:
    """Start running `plan` and return its handle (see the module doc)."""
    for group in plan.groups:
        for request in group.requests:
            resolve(request.host, request.port)  # a bad host fails here, before any process starts
    count = useful_workers(plan, workers or default_workers(plan))
    return LoadRun(plan, count, jtl, on_progress, progress_interval_s)


def run(
    plan: Plan,
    *,
    workers: int | None = None,
    jtl: Path | None = None,
    on_progress: ProgressCallback | None = None,
    progress_interval_s: float = 0.5,
) -> RunResult:
    """Run `plan` to its end and return the merged results. Ctrl-C stops it (in-flight requests finish,
    the result is marked interrupted); a second Ctrl-C cuts them off."""
    handle = start(
        plan, workers=workers, jtl=jtl, on_progress=on_progress, progress_interval_s=progress_interval_s
    )
    stops = 0
    while True:
        try:
            return handle.wait()
        except KeyboardInterrupt:
            stops += 1
            if stops > 2:
                raise
            handle.stop()


class LoadRun:
    """A running load (see the module doc). Made by `start`."""

    def __init__(
        self,
        plan: Plan,
        count: int,
        jtl: Path | None,
        on_progress: ProgressCallback | None,
        progress_interval_s: float,
    ) -> None:
        self.plan = plan
        self.workers = count
        self._jtl = jtl
        self._parts = [jtl.with_name(f"{jtl.name}.part{w}") for w in range(count)] if jtl else [None] * count
        shares = split(plan, count)
        jobs = [
            WorkerJob(plan=plan, share=s, workers=count, jtl_part=p)
            for s, p in zip(shares, self._parts, strict=True)
        ]
        stride = counters_stride(plan)
        self._watcher = _Watcher(plan, count, stride, on_progress, progress_interval_s)
        self._live = LiveSeries(count)
        self._watcher.live = self._live
        self._ended = threading.Event()  # the workers are finished
        self._done = threading.Event()  # ... and the last progress was reported: the result is ready
        self._lock = threading.Lock()
        self._result: RunResult | None = None
        self._error: BaseException | None = None
        self._stops = 0
        self._runner: Worker | None = None  # one worker: its runner, on the loop of our thread
        self._links: dict[MpConnection, multiprocessing.process.BaseProcess] = {}
        self._results: list[WorkerResult] = []
        if count == 1:
            self._counters: MutableSequence[int] = [0] * stride
            body: Callable[[], None] = lambda: self._run_here(jobs[0])  # noqa: E731
        else:
            self._counters = self._spawn(jobs)
            body = self._collect
        self._thread = threading.Thread(target=self._main, args=(body,), name="relevo-load", daemon=True)
        self._thread.start()
        self._progress = threading.Thread(target=self._report, name="relevo-progress", daemon=True)
        self._progress.start()

    # --- observing -------------------------------------------------------------------------------------
    @property
    def started_at(self) -> float:
        return self._watcher.t0_epoch

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def elapsed_s(self) -> float:
        return max(0.0, (time.monotonic_ns() - self._watcher.t0_ns) / 1e9)

    def progress(self) -> LoadProgress:
        return self._watcher.progress(self._counters)

    def percentile_ms(self, percentile: float) -> float | None:
        """Response time at `percentile` over all samples so far (up to a second old); None before any."""
        return self._live.percentile_ms(percentile)

    def seconds(self) -> tuple[Second, ...]:
        return seconds_of(self._live.merged())

    # --- controlling ------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Send nothing new and let requests in flight finish; called again, cut them off."""
        with self._lock:
            self._stops += 1
            self._watcher.interrupted = True
            runner = self._runner
            if runner is not None:
                # A stop that comes after the run ended finds its loop closed: nothing left to stop.
                with contextlib.suppress(RuntimeError):
                    runner.loop.call_soon_threadsafe(runner.stop)
            for link in self._links:
                with contextlib.suppress(OSError):
                    link.send("stop")

    def wait(self, timeout_s: float | None = None) -> RunResult:
        """The result, once the run has ended (TimeoutError if it has not within `timeout_s`)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not self._done.wait(0.2):
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError("the load is still running")
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def __enter__(self) -> LoadRun:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.done:
            self.stop()
        with contextlib.suppress(LoadgenError):
            self.wait()

    # --- the workers ------------------------------------------------------------------------------------
    def _main(self, body: Callable[[], None]) -> None:
        try:
            body()
            self._finish()
        except BaseException as exc:
            self._error = exc
        finally:
            if self._jtl is not None:
                _join_parts(self._jtl, [p for p in self._parts if p is not None])
            self._ended.set()

    def _finish(self) -> None:
        stats = RunStats()
        for result in sorted(self._results, key=lambda r: r.worker):
            stats.merge(result.stats)
            self._live.replace(result.worker, result.stats.series)
        with_samples = [r for r in self._results if r.stats.total().count]
        self._result = RunResult(
            plan=self.plan,
            stats=stats,
            started_at=self._watcher.t0_epoch,
            elapsed_s=self.elapsed_s(),
            workers=self.workers,
            event_loop=event_loop_name(),
            interrupted=any(r.interrupted for r in self._results) or self._watcher.interrupted,
            nothing_listening=bool(with_samples) and all(r.nothing_listening for r in with_samples),
        )

    def _report(self) -> None:
        """Progress every interval, and once more at the end, before the run counts as done."""
        try:
            while not self._ended.wait(self._watcher.interval_s):
                self._watcher.report(self._counters)
            self._watcher.report(self._counters)
        finally:
            self._done.set()

    def _attach(self, runner: Worker) -> None:
        """The in-process worker's runner exists: a stop asked for before now is passed on."""
        with self._lock:
            self._runner = runner
            for _ in range(self._stops):
                runner.loop.call_soon(runner.stop)

    def _run_here(self, job: WorkerJob) -> None:
        """One worker, on an event loop in this thread."""
        t0_ns, delta = self._watcher.start_instant()
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            result = runner.run(
                run_job(
                    job,
                    t0_ns=t0_ns,
                    epoch_delta_ns=delta,
                    counters=self._counters,
                    on_series=lambda start, part, hist: self._live.put(0, start, part, hist),
                    on_start=self._attach,
                )
            )
        self._results.append(result)

    def _spawn(self, jobs: list[WorkerJob]) -> MutableSequence[int]:
        """Start a process per job, wait until each is ready, and give them the start instant."""
        # fork starts a worker in milliseconds at no CPU cost, but is unsafe once threads exist (a lock
        # held by another thread stays held in the child): then, and off Linux, spawn.
        use_fork = sys.platform == "linux" and threading.active_count() == 1
        ctx = multiprocessing.get_context("fork") if use_fork else multiprocessing.get_context("spawn")
        counters: MutableSequence[int] = ctx.Array("q", len(jobs) * self._watcher.stride, lock=False)
        links: list[MpConnection] = []
        procs = []
        for job in jobs:
            parent_end, child_end = ctx.Pipe()
            proc = ctx.Process(
                target=_child,
                args=(job, child_end, counters, [*links, parent_end]),
                name=f"relevo-worker-{job.share.worker}",
            )
            proc.daemon = True
            proc.start()
            child_end.close()
            links.append(parent_end)
            procs.append(proc)
        try:
            for link, proc in zip(links, procs, strict=True):
                _expect(link, proc, "ready")
        except BaseException:
            _reap(procs)
            raise
        t0_ns, delta = self._watcher.start_instant()
        for link in links:
            link.send((t0_ns, delta))
        self._links = dict(zip(links, procs, strict=True))
        return counters

    def _collect(self) -> None:
        procs = list(self._links.values())
        try:
            while self._links:
                for link in wait(list(self._links), timeout=1.0):
                    assert isinstance(link, MpConnection)
                    message = _expect(link, self._links[link], "result")
                    if isinstance(message, WorkerResult):
                        self._results.append(message)
                        with self._lock:
                            del self._links[link]
                    else:
                        worker, begin, part, hist = message
                        self._live.put(worker, begin, part, hist)
        finally:
            _reap(procs)


def _reap(procs: Sequence[multiprocessing.process.BaseProcess]) -> None:
    for proc in procs:
        proc.join(timeout=5)
        if proc.is_alive():
            proc.kill()
            proc.join()


class _Watcher:
    """Turns the shared counters into `LoadProgress` for the caller, at most every `interval_s`."""

    def __init__(
        self, plan: Plan, workers: int, stride: int, callback: ProgressCallback | None, interval_s: float
    ) -> None:
        self.workers = workers
        self.stride = stride
        self.callback = callback
        self.live: LiveSeries | None = None
        self.interval_s = interval_s
        self.expected = plan.total_samples
        self.duration_s = plan.duration_s
        self.t0_ns = time.monotonic_ns()
        self.t0_epoch = time.time()
        self.interrupted = False
        # The cumulative histograms of the last reports, oldest first: the live window's start.
        self._reported: deque[tuple[float, dict[int, int]]] = deque()

    def start_instant(self) -> tuple[int, int]:
        """Pick the common start instant; returns it and the offset from monotonic to epoch ns."""
        delta = time.time_ns() - time.monotonic_ns()
        self.t0_ns = time.monotonic_ns() + int(START_MARGIN_S * 1e9)
        self.t0_epoch = (self.t0_ns + delta) / 1e9
        return self.t0_ns, delta

    def report(self, counters: MutableSequence[int]) -> None:
        if self.callback is None:
            return
        buckets = self.live.buckets() if self.live is not None else {}
        now = time.monotonic()
        while len(self._reported) > 1 and self._reported[1][0] <= now - RECENT_S:
            self._reported.popleft()
        window = Histogram.between(self._reported[0][1] if self._reported else {}, buckets)
        self._reported.append((now, buckets))
        recent = RecentLatency(
            count=window.count,
            p50_ms=window.value_at_percentile(50.0) / 1000 if window.count else None,
            p99_ms=window.value_at_percentile(99.0) / 1000 if window.count else None,
        )
        self.callback(replace(self.progress(counters), recent=recent))

    def progress(self, counters: MutableSequence[int]) -> LoadProgress:
        done = failed = active = 0
        for w in range(self.workers):
            base = w * self.stride
            done += counters[base]
            failed += counters[base + 1]
            active += sum(counters[base + 2 : base + self.stride])
        elapsed = max(0.0, (time.monotonic_ns() - self.t0_ns) / 1e9)
        return LoadProgress(
            elapsed_s=elapsed,
            done=done,
            failed=failed,
            active=active,
            expected=self.expected,
            duration_s=self.duration_s,
            p99_ms=self.live.percentile_ms(99.0) if self.live is not None else None,
        )


def _expect(
    link: MpConnection, proc: multiprocessing.process.BaseProcess, what: str
) -> WorkerResult | tuple[int, int, TimeSeries, SparseHistogram | None]:
    """The next message from a worker: its result, or a piece of its series (worker, first second,
    seconds); "ready" is only waited for."""
    if what == "ready" and not link.poll(READY_TIMEOUT_S):
        raise LoadgenError(f"{proc.name} did not start within {READY_TIMEOUT_S:.0f} s")
    try:
        message = link.recv()
    except EOFError:
        proc.join(timeout=5)
        raise LoadgenError(f"{proc.name} died (exit status {proc.exitcode})") from None
    if isinstance(message, tuple) and message and message[0] == "error":
        raise LoadgenError(f"{proc.name} failed:\n{message[1]}")
    if isinstance(message, tuple) and message and message[0] == "series":
        return message[1:]
    if what == "result":
        assert isinstance(message, WorkerResult)
        return message
    return WorkerResult(worker=-1, stats=RunStats(), interrupted=False)


def _child(
    job: WorkerJob, link: MpConnection, counters: MutableSequence[int], parent_ends: list[MpConnection]
) -> None:
    """A worker process: ready, wait for the start instant, run, send the results back."""
    # A forked worker inherits the parent's ends of every pipe made so far, its own included; closed, so
    # that when the parent dies each worker reads end-of-file on its pipe and stops instead of running on.
    for end in parent_ends:
        end.close()
    # Ctrl-C reaches the whole process group; the parent decides and tells us (stop), so ignore it here.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        link.send("ready")
        t0_ns, delta = link.recv()
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            result = runner.run(
                run_job(
                    job,
                    t0_ns=t0_ns,
                    epoch_delta_ns=delta,
                    counters=counters,
                    control=link,
                    on_series=lambda begin, part, hist: link.send(
                        ("series", job.share.worker, begin, part, hist)
                    ),
                )
            )
        link.send(result)
    except EOFError:
        return  # the parent went away: nobody is waiting for a result
    except BaseException:
        with contextlib.suppress(OSError):
            link.send(("error", traceback.format_exc(limit=8)))
    finally:
        link.close()


def _join_parts(jtl: Path, parts: list[Path]) -> None:
    """The workers' JTL parts, one after the other under one header (JTL rows are in completion order
    per writer in JMeter too; readers do not rely on order)."""
    with jtl.open("w", encoding="utf-8", newline="") as out:
        out.write(",".join(COLUMNS_5) + "\n")
        for part in parts:
            if part.exists():
                with part.open(encoding="utf-8", newline="") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
                part.unlink()

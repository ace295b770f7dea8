"""Runs a plan on several worker processes (default: one per core) and merges their results exactly.

Python runs one thread of bytecode per process; a load generator that must keep up with wrk therefore
splits its users across processes (see `shares`). Every worker reports "ready", then all are given the
same start instant on the shared monotonic clock, so ramp-ups and rate schedules line up as if one
process ran them. The parent only watches: it reads progress counters and, at the end, merges the
workers' accumulators (counters add, histograms add bucket by bucket, Welford states combine).
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
from collections.abc import Callable, MutableSequence, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection as MpConnection
from multiprocessing.connection import wait
from pathlib import Path

from relevo.errors import RelevoError
from relevo.loadgen.client import resolve
from relevo.loadgen.jtl import COLUMNS_5
from relevo.loadgen.plan import Plan
from relevo.loadgen.shares import split, useful_workers
from relevo.loadgen.stats import RunStats
from relevo.loadgen.worker import WorkerJob, WorkerResult, counters_stride, loop_factory, run_job

# Workers get this long to start (spawned ones import Python afresh) before the clock starts.
READY_TIMEOUT_S = 60.0
# Time between "start" and the start instant, so that every worker has its message before it passes.
START_MARGIN_S = 0.05


class LoadgenError(RelevoError):
    """The load generator itself failed (a worker died): not a verdict on the target."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Progress:
    elapsed_s: float
    done: int
    failed: int
    active: int
    expected: int | None
    duration_s: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RunResult:
    plan: Plan
    stats: RunStats
    started_at: float  # epoch seconds of the start instant
    elapsed_s: float  # from the start instant to the last worker's end
    workers: int
    event_loop: str
    interrupted: bool


ProgressCallback = Callable[[Progress], None]


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


def run(
    plan: Plan,
    *,
    workers: int | None = None,
    jtl: Path | None = None,
    on_progress: ProgressCallback | None = None,
    progress_interval_s: float = 0.5,
) -> RunResult:
    """Run `plan` to its end (or until Ctrl-C) and return the merged results."""
    for group in plan.groups:
        for request in group.requests:
            resolve(request.host, request.port)  # a bad host fails here, before any process starts
    count = useful_workers(plan, workers or default_workers(plan))
    shares = split(plan, count)
    parts = [jtl.with_name(f"{jtl.name}.part{w}") for w in range(count)] if jtl else [None] * count
    jobs = [
        WorkerJob(plan=plan, share=s, workers=count, jtl_part=p) for s, p in zip(shares, parts, strict=True)
    ]
    stride = counters_stride(plan)
    watcher = _Watcher(plan, count, stride, on_progress, progress_interval_s)
    try:
        results = _run_here(jobs[0], watcher) if count == 1 else _run_processes(jobs, watcher)
    finally:
        if jtl is not None:
            _join_parts(jtl, [p for p in parts if p is not None])
    stats = RunStats()
    for result in sorted(results, key=lambda r: r.worker):
        stats.merge(result.stats)
    return RunResult(
        plan=plan,
        stats=stats,
        started_at=watcher.t0_epoch,
        elapsed_s=max(0.0, (time.monotonic_ns() - watcher.t0_ns) / 1e9),
        workers=count,
        event_loop=event_loop_name(),
        interrupted=any(r.interrupted for r in results) or watcher.interrupted,
    )


class _Watcher:
    """Turns the shared counters into `Progress` for the caller, at most every `interval_s`."""

    def __init__(
        self, plan: Plan, workers: int, stride: int, callback: ProgressCallback | None, interval_s: float
    ) -> None:
        self.workers = workers
        self.stride = stride
        self.callback = callback
        self.interval_s = interval_s
        self.expected = plan.total_samples
        self.duration_s = plan.duration_s
        self.t0_ns = time.monotonic_ns()
        self.t0_epoch = time.time()
        self.interrupted = False

    def start_instant(self) -> tuple[int, int]:
        """Pick the common start instant; returns it and the offset from monotonic to epoch ns."""
        delta = time.time_ns() - time.monotonic_ns()
        self.t0_ns = time.monotonic_ns() + int(START_MARGIN_S * 1e9)
        self.t0_epoch = (self.t0_ns + delta) / 1e9
        return self.t0_ns, delta

    def report(self, counters: MutableSequence[int]) -> None:
        if self.callback is None:
            return
        done = failed = active = 0
        for w in range(self.workers):
            base = w * self.stride
            done += counters[base]
            failed += counters[base + 1]
            active += sum(counters[base + 2 : base + self.stride])
        elapsed = max(0.0, (time.monotonic_ns() - self.t0_ns) / 1e9)
        self.callback(
            Progress(
                elapsed_s=elapsed,
                done=done,
                failed=failed,
                active=active,
                expected=self.expected,
                duration_s=self.duration_s,
            )
        )


def _run_here(job: WorkerJob, watcher: _Watcher) -> list[WorkerResult]:
    """One worker, in this process: progress comes from a helper thread reading plain counters."""
    counters = [0] * watcher.stride
    t0_ns, delta = watcher.start_instant()
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(watcher.interval_s):
            watcher.report(counters)

    thread = threading.Thread(target=watch, name="relevo-progress", daemon=True)
    thread.start()
    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            result = runner.run(
                run_job(job, t0_ns=t0_ns, epoch_delta_ns=delta, counters=counters, sigint=True)
            )
    finally:
        stop.set()
        thread.join()
    watcher.report(counters)
    return [result]


def _run_processes(jobs: list[WorkerJob], watcher: _Watcher) -> list[WorkerResult]:
    # fork starts a worker in milliseconds at no CPU cost, but is unsafe once threads exist (a lock held
    # by another thread stays held in the child): then, and off Linux, spawn.
    use_fork = sys.platform == "linux" and threading.active_count() == 1
    ctx = multiprocessing.get_context("fork") if use_fork else multiprocessing.get_context("spawn")
    counters = ctx.Array("q", len(jobs) * watcher.stride, lock=False)
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
        t0_ns, delta = watcher.start_instant()
        for link in links:
            link.send((t0_ns, delta))
        results = _collect(links, procs, counters, watcher)
    finally:
        for proc in procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join()
    watcher.report(counters)
    return results


def _collect(
    links: list[MpConnection],
    procs: Sequence[multiprocessing.process.BaseProcess],
    counters: MutableSequence[int],
    watcher: _Watcher,
) -> list[WorkerResult]:
    pending = dict(zip(links, procs, strict=True))
    results: list[WorkerResult] = []
    while pending:
        try:
            ready = wait(list(pending), timeout=watcher.interval_s)
            for link in ready:
                assert isinstance(link, MpConnection)
                proc = pending.pop(link)
                results.append(_expect(link, proc, "result"))
            watcher.report(counters)
        except KeyboardInterrupt:
            # First Ctrl-C: ask the workers to stop and report what they have; a second one kills them.
            if watcher.interrupted:
                raise
            watcher.interrupted = True
            for link in pending:
                with contextlib.suppress(OSError):
                    link.send("stop")
    return results


def _expect(link: MpConnection, proc: multiprocessing.process.BaseProcess, what: str) -> WorkerResult:
    if what == "ready" and not link.poll(READY_TIMEOUT_S):
        raise LoadgenError(f"{proc.name} did not start within {READY_TIMEOUT_S:.0f} s")
    try:
        message = link.recv()
    except EOFError:
        proc.join(timeout=5)
        raise LoadgenError(f"{proc.name} died (exit status {proc.exitcode})") from None
    if isinstance(message, tuple) and message and message[0] == "error":
        raise LoadgenError(f"{proc.name} failed:\n{message[1]}")
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
                run_job(job, t0_ns=t0_ns, epoch_delta_ns=delta, counters=counters, control=link)
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

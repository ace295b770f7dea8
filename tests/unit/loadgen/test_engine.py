"""The engine against small local servers: exact counts, error kinds, both models, several processes."""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from relevo.loadgen import engine
from relevo.loadgen.jtl import read_samples
from relevo.loadgen.live import seconds_of
from relevo.loadgen.plan import HttpRequest, Plan, PlanError, ThreadGroup, simple_plan
from relevo.loadgen.shares import split
from relevo.loadgen.stats import LabelStats
from relevo.loadgen.worker import WorkerJob, WorkerResult, counters_stride, loop_factory, run_job
from relevo.polling import wait_until

from .conftest import (
    Behaviour,
    Server,
    answer,
    chunked,
    close_after_each,
    hang,
    keepalive_expires,
    partial,
    reset,
    round_robin,
)
from .virtual_clock import VirtualClockLoop

Serve = Callable[[Behaviour], Server]


def total(result: engine.RunResult) -> LabelStats:
    return result.stats.total()


@pytest.mark.parametrize("workers", [1, 2])
def test_closed_model_sends_exactly_threads_times_loops(serve: Serve, workers: int) -> None:
    """N users x M loops: exactly N*M samples, all successful, whatever the number of processes."""
    server = serve(round_robin("web1", "web2"))
    result = engine.run(simple_plan(server.url, threads=6, loops=7), workers=workers)
    stats = total(result)
    assert (stats.count, stats.errors) == (42, 0)
    assert len(server.requests) == 42
    assert stats.served_by == {"web1": 21, "web2": 21}
    assert result.workers == workers
    assert sum(result.stats.series.requests) == 42


def test_refused_connections_are_counted_as_refused(free_port: int) -> None:
    """Nobody listening: every sample fails with the kind 'refused', none is lost."""
    result = engine.run(simple_plan(f"http://127.0.0.1:{free_port}/", threads=3, loops=4), workers=1)
    stats = total(result)
    assert (stats.count, stats.errors, stats.error_kinds) == (12, 12, {"refused": 12})


@pytest.mark.parametrize(
    ("behaviour", "kind"),
    [(answer(503, served_by=None), "503"), (hang, "timeout"), (reset, "reset"), (partial, "incomplete")],
)
def test_failures_are_counted_by_kind(serve: Serve, behaviour: Behaviour, kind: str) -> None:
    """A 503, a server that never answers, one that resets, one that cuts the body: each its own kind."""
    server = serve(behaviour)
    # Only the hang needs a short timeout to end; the others end by the server's own action, so they get a
    # generous one: 0.3 s for all made a loaded machine's slow 'partial' server count as a timeout.
    timeout_s = 0.3 if behaviour is hang else 10.0
    plan = simple_plan(server.url, threads=2, loops=3, timeout_s=timeout_s)
    stats = total(engine.run(plan, workers=1))
    assert (stats.count, stats.errors, stats.error_kinds) == (6, 6, {kind: 6})


@pytest.mark.parametrize("rst", [False, True], ids=["fin", "rst"])
@pytest.mark.parametrize("model", ["closed", "open"])
def test_a_request_on_a_connection_the_server_just_closed_is_sent_again(
    serve: Serve, rst: bool, model: str
) -> None:
    """A kept-alive connection closed (or reset) by the server as a GET went out on it, before one byte of
    the answer: the GET goes again on a new connection, counted once, not as a failure."""
    server = serve(keepalive_expires(rst=rst))
    if model == "closed":
        plan = simple_plan(server.url, threads=2, loops=4)
    else:
        # 1.5 s, not 0.5 s: a loop stalled by a loaded machine drops what fell due meanwhile (as it must),
        # and over 0.5 s that once left 5 samples where 8 were asserted; any reuse at all suffices here.
        plan = simple_plan(server.url, threads=1, loops=None, rate_rps=40, duration_s=1.5)
    stats = total(engine.run(plan, workers=1))
    assert stats.errors == 0, stats.error_kinds
    assert stats.count + stats.dropped == plan.total_samples  # each counted once, none lost
    assert len(server.requests) > stats.count  # the requests the server closed on reached it too


def test_a_post_on_a_connection_the_server_just_closed_is_a_failure(serve: Serve) -> None:
    """Not idempotent: it is never sent twice (the server may have acted on it)."""
    server = serve(keepalive_expires(rst=False))
    stats = total(engine.run(simple_plan(server.url, threads=1, loops=4, method="POST"), workers=1))
    assert (stats.count, stats.errors, stats.error_kinds) == (4, 2, {"incomplete": 2})


def test_chunked_and_connection_close_responses(serve: Serve) -> None:
    """Chunked bodies complete, and a server closing after each answer costs a reconnect, not an error."""
    for behaviour in (chunked, close_after_each):
        server = serve(behaviour)
        stats = total(engine.run(simple_plan(server.url, threads=2, loops=5), workers=1))
        assert (stats.count, stats.errors) == (10, 0)


def test_no_keepalive_opens_a_connection_per_request(serve: Serve) -> None:
    """--no-keepalive sends Connection: close and still completes every sample."""
    server = serve(answer())
    stats = total(engine.run(simple_plan(server.url, threads=2, loops=5, keepalive=False), workers=1))
    assert (stats.count, stats.errors) == (10, 0)
    assert all(b"Connection: close" in head for head in server.requests)


@pytest.mark.parametrize("workers", [1, 2])
def test_open_model_sends_rate_times_duration(serve: Serve, workers: int) -> None:
    """--rate R --duration D schedules exactly R*D requests, each sent (and answered) or dropped, and sends
    at least one on each allowed connection."""
    server = serve(answer())
    plan = simple_plan(server.url, threads=4, rate_rps=40, duration_s=0.5)
    stats = total(engine.run(plan, workers=workers))
    # Not `count == 20`: when the machine stalls the loop for 100 ms just before the end, the requests due
    # meanwhile outnumber the 4 connections, and the one still waiting at the end is dropped (as it must).
    assert stats.count + stats.dropped == 20
    assert stats.count >= 4 and stats.errors == 0
    assert len(server.requests) == stats.count


def test_open_model_charges_waiting_to_latency_and_drops_what_never_left(serve: Serve) -> None:
    """One connection to a server that never answers: a request that waited for the connection is
    charged from its intended time; those still waiting when the duration ends are dropped, not sent."""
    server = serve(hang)
    plan = simple_plan(server.url, threads=1, rate_rps=20, duration_s=0.25, timeout_s=0.2)
    result, took_ns = run_on_a_virtual_clock(plan)
    stats = result.stats.total()
    # Due at 0, 50, ..., 200 ms. The first times out at 200 ms; the second (due at 50 ms) goes out then
    # and times out at 400 ms; the three still queued at 250 ms are dropped.
    assert stats.count == 2
    assert stats.error_kinds == {"timeout": 2}
    assert stats.dropped == 3
    assert sum(s.dropped for s in seconds_of(result.stats.series)) == 3
    assert stats.hist.max == 350_000  # µs: charged from its intended 50 ms to its timeout at 400 ms
    assert took_ns <= (0.25 + 0.2) * 1e9, "the run outlived its duration plus one timeout"


def test_two_groups_and_labels(serve: Serve) -> None:
    """Groups run side by side; each label is a row; samples = sum of threads x loops x requests."""
    server = serve(answer())
    port = server.port
    a = HttpRequest(label="a", host="127.0.0.1", port=port, path="/a")
    b = HttpRequest(label="b", host="127.0.0.1", port=port, path="/b")
    plan = Plan(
        groups=(
            ThreadGroup(name="one", threads=2, loops=3, requests=(a, b)),
            ThreadGroup(name="two", threads=3, loops=2, requests=(b,)),
        )
    )
    result = engine.run(plan, workers=2)
    assert {name: s.count for name, s in result.stats.labels.items()} == {"a": 6, "b": 12}
    assert total(result).count == plan.total_samples == 18


def test_duration_bounds_a_closed_run(serve: Serve) -> None:
    """With a duration and no loops, users stop sending once it is over (the run ends on its own)."""
    server = serve(answer())
    result = engine.run(simple_plan(server.url, threads=2, loops=None, duration_s=0.3), workers=1)
    assert total(result).count > 0 and total(result).errors == 0
    assert not result.interrupted


def test_jtl_streams_every_sample(serve: Serve, tmp_path: Path) -> None:
    """--jtl writes one row per sample, with JMeter's columns, from every worker."""
    server = serve(round_robin("web1", "web2"))
    path = tmp_path / "run.jtl"
    result = engine.run(simple_plan(server.url, threads=4, loops=5), workers=2, jtl=path)
    rows = list(read_samples(path))
    assert len(rows) == total(result).count == 20
    assert {r.label for r in rows} == {"GET /"} and all(r.success and r.response_code == "200" for r in rows)
    assert {r.thread_name for r in rows} == {f"relevo 1-{i}" for i in range(1, 5)}
    assert not list(tmp_path.glob("*.part*"))


def test_progress_is_reported(serve: Serve) -> None:
    """The progress callback ends with every sample counted."""
    server = serve(answer())
    seen: list[engine.LoadProgress] = []
    engine.run(
        simple_plan(server.url, threads=2, loops=10),
        workers=1,
        on_progress=seen.append,
        progress_interval_s=0.01,
    )
    assert seen and seen[-1].done == 20 and seen[-1].expected == 20


def test_an_unknown_host_fails_before_anything_starts() -> None:
    """A name that does not resolve is a plan error, not a run full of errors."""
    with pytest.raises(PlanError, match="resolve"):
        engine.run(simple_plan("http://no-such-host.invalid/", threads=1, loops=1))


def test_a_stop_message_ends_the_run_early(serve: Serve) -> None:
    """The parent's "stop" (Ctrl-C) ends a 30 s run: in-flight requests finish, the result is marked."""
    server = serve(answer())
    plan = simple_plan(server.url, threads=2, loops=None, duration_s=30)
    job = WorkerJob(plan=plan, share=split(plan, 1)[0], workers=1)
    parent, child = multiprocessing.Pipe()
    over = threading.Event()

    def stop_once_answered() -> None:
        # "stop" once a user has had an answer (three requests seen from two users), not after a fixed
        # time: on a busy machine a run may have sent nothing 0.3 s after its start.
        wait_until(lambda: len(server.requests) > 2 or over.is_set(), timeout_s=60, interval_s=0.01)
        if not over.is_set():
            parent.send("stop")

    stopper = threading.Thread(target=stop_once_answered)
    stopper.start()
    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            result = runner.run(
                run_job(job, t0_ns=time.monotonic_ns(), epoch_delta_ns=0, counters=[0, 0, 0], control=child)
            )
    finally:
        over.set()  # whatever happened, the stopper thread has nothing left to wait for
        stopper.join()
        parent.close()
        child.close()
    stats = result.stats.total()
    assert result.interrupted
    assert stats.count > 0 and stats.errors == 0


def test_one_wake_ups_queue_is_bounded_and_the_run_ends_on_time(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An open-model rate far above what one connection to a hung server carries: the requests waiting
    for the connection never exceed BACKLOG_MAX (the rest due is dropped at once, counted), every
    scheduled request is either sent or dropped, and the run ends at its duration plus one timeout."""
    from relevo.loadgen import drivers

    monkeypatch.setattr(drivers, "BACKLOG_MAX", 100)
    peak = [0]
    dispatch = drivers.OpenGroup.dispatch

    def watched(self: drivers.OpenGroup, sampler: object, intended: int, now: int) -> None:
        dispatch(self, sampler, intended, now)  # type: ignore[arg-type]
        peak[0] = max(peak[0], len(self.backlog))

    monkeypatch.setattr(drivers.OpenGroup, "dispatch", watched)
    server = serve(hang)
    plan = simple_plan(server.url, threads=1, rate_rps=50_000, duration_s=0.3, timeout_s=0.2)
    result, took_ns = run_on_a_virtual_clock(plan)
    stats = result.stats.total()
    assert peak[0] == 100
    # The first request times out at 200 ms, the oldest waiting one goes out then and times out at 400 ms;
    # all the other 14,998 were dropped (waiting when the duration ended, or due with the queue full).
    assert (stats.count, stats.error_kinds) == (2, {"timeout": 2})
    assert stats.dropped == 15_000 - 2
    assert took_ns <= (0.3 + 0.2) * 1e9, "the run outlived its duration plus one timeout"


def run_on_a_virtual_clock(plan: Plan) -> tuple[WorkerResult, int]:
    """`plan` run by one worker in this process on a loop with a virtual clock (virtual_clock.py): its
    result, and how long it took on that clock (ns), which depends on its schedule only."""
    job = WorkerJob(plan=plan, share=split(plan, 1)[0], workers=1)

    async def run() -> tuple[WorkerResult, int]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualClockLoop)
        t0_ns = loop.clock()
        counters = [0] * counters_stride(plan)
        result = await run_job(job, t0_ns=t0_ns, epoch_delta_ns=0, counters=counters, clock=loop.clock)
        return result, loop.clock() - t0_ns

    with asyncio.Runner(loop_factory=VirtualClockLoop) as runner:
        return runner.run(run())


def test_memory_does_not_grow_with_the_number_of_samples(serve: Serve) -> None:
    """Ten times more samples leave the accumulators the same size: no per-request list anywhere."""

    def sizes(loops: int) -> tuple[int, ...]:
        server = serve(answer())
        stats = engine.run(simple_plan(server.url, threads=2, loops=loops), workers=1).stats
        label = stats.labels["GET /"]
        return (len(label.hist.counts), len(label.codes), len(label.served_by), len(stats.labels))

    assert sizes(20) == sizes(200)

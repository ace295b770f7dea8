"""Cutting a plan between worker processes keeps it the same plan."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from relevo.loadgen.plan import HttpRequest, Plan, ThreadGroup
from relevo.loadgen.shares import split, useful_workers

REQUEST = HttpRequest(label="x", host="127.0.0.1", port=80)


@given(st.integers(min_value=1, max_value=300), st.integers(min_value=1, max_value=9))
def test_closed_threads_are_each_run_by_exactly_one_worker(threads: int, workers: int) -> None:
    """Every thread number appears once across the shares, so N users x M loops stays N*M samples."""
    plan = Plan(groups=(ThreadGroup(threads=threads, loops=3, requests=(REQUEST,)),))
    count = useful_workers(plan, workers)
    shares = split(plan, count)
    seen = sorted(t for share in shares for part in share.groups for t in part.threads)
    assert seen == list(range(threads))
    assert all(share.groups for share in shares)  # no idle worker process


@given(
    st.floats(min_value=0.5, max_value=5000),
    st.floats(min_value=0.1, max_value=20),
    st.integers(min_value=1, max_value=200),
    st.integers(min_value=1, max_value=9),
)
def test_open_schedule_is_partitioned(rate: float, duration: float, connections: int, workers: int) -> None:
    """Request k of the schedule goes to exactly one worker, and connections are not multiplied."""
    group = ThreadGroup(
        threads=connections, loops=None, duration_s=duration, rate_rps=rate, requests=(REQUEST,)
    )
    plan = Plan(groups=(group,))
    shares = split(plan, useful_workers(plan, workers))
    parts = [p for s in shares for p in s.groups]
    total = group.total_samples
    assert total is not None
    owned = sorted(k for p in parts for k in range(p.first, total, p.stride))
    assert owned == list(range(total))
    assert sum(p.count for p in parts) == total
    assert sum(p.connections for p in parts) <= max(connections, len(parts))


def test_one_user_means_one_process() -> None:
    """A one-thread plan is not spread over idle processes."""
    plan = Plan(groups=(ThreadGroup(threads=1, loops=5, requests=(REQUEST,)),))
    assert useful_workers(plan, 8) == 1

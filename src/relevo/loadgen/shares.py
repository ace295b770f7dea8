"""How a plan's load is cut between worker processes so that, put back together, it is the plan exactly.

Closed model: thread t of a group goes to worker t mod W and keeps its own place in the ramp-up, so the
users start at the same times as in one process and each runs its full loops (N users x M loops stays
N*M samples). Open model: the group's k-th request, intended at delay + k / rate, goes to worker k mod W,
so the merged arrivals are the single schedule; connections are split as evenly as they go.
"""

from __future__ import annotations

from dataclasses import dataclass

from relevo.loadgen.plan import Plan


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupShare:
    """One worker's part of one thread group."""

    group: int  # index into plan.groups
    threads: tuple[int, ...] = ()  # closed model: the 0-based thread numbers this worker runs
    first: int = 0  # open model: this worker sends requests first, first + stride, first + 2*stride, ...
    stride: int = 1
    count: int = 0  # open model: how many requests that is
    connections: int = 0  # open model: the most connections this worker opens for the group


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerShare:
    worker: int
    groups: tuple[GroupShare, ...]


def useful_workers(plan: Plan, wanted: int) -> int:
    """No more workers than there is work to split (a 1-thread closed plan runs in one process)."""
    most = 1
    for group in plan.groups:
        if group.rate_rps is None:
            most = max(most, group.threads)
        else:
            most = max(most, min(group.threads, group.total_samples or 1))
    return max(1, min(wanted, most))


def split(plan: Plan, workers: int) -> tuple[WorkerShare, ...]:
    """The plan cut into `workers` shares (use `useful_workers` first to avoid empty ones)."""
    shares: list[list[GroupShare]] = [[] for _ in range(workers)]
    for g, group in enumerate(plan.groups):
        if group.rate_rps is None:
            for w in range(workers):
                threads = tuple(range(w, group.threads, workers))
                if threads:
                    shares[w].append(GroupShare(group=g, threads=threads))
            continue
        total = group.total_samples or 0
        active = max(1, min(workers, group.threads, total))
        for w in range(active):
            count = len(range(w, total, active))
            connections = len(range(w, group.threads, active))
            if count:
                shares[w].append(
                    GroupShare(group=g, first=w, stride=active, count=count, connections=connections)
                )
    return tuple(WorkerShare(worker=w, groups=tuple(s)) for w, s in enumerate(shares))

"""Which accounts a daemon's processes run as, read with `ps` where the daemon runs (a container): its
parent (the master, which reads the 0600 files) apart from its children (the workers, which parse
requests). The lxd and vagrant tiers check the same thing with it."""

from __future__ import annotations


def ps_argv(command: str) -> list[str]:
    """`ps` listing every process named `command`: pid, parent pid and user, no header."""
    return ["ps", "-C", command, "-o", "pid=,ppid=,user="]


def parent_and_worker_accounts(listing: str) -> tuple[set[str], set[str]]:
    """From `ps_argv`'s output: the users of the processes whose parent is not one of them (the
    master), and the users of those whose parent is (the workers)."""
    rows = [line.split() for line in listing.splitlines() if line.strip()]
    pids = {pid for pid, _, _ in rows}
    parents = {user for _, ppid, user in rows if ppid not in pids}
    children = {user for _, ppid, user in rows if ppid in pids}
    return parents, children

"""Issue 22's goals for kill -> standby serving, and their "today" (measured 2026-12-06), printed beside
what a run measured by benchmarks/failover.py (local rows, kill-both) and lxd_failover.py (LXD rows)."""

from __future__ import annotations

# (provider, temperature) -> (today's figure as the issue gives it, the goal in seconds)
SERVING_GOALS: dict[tuple[str, str], tuple[str, float]] = {
    ("local", "cold"): ("0.204 s", 0.10),
    ("local", "frozen"): ("-", 0.03),
    ("local", "warm"): ("-", 0.03),
    ("lxd", "cold"): ("2.11 s", 1.0),
    ("lxd", "frozen"): ("-", 0.15),
}
# Requests lost by kill-both at 1,000 req/s: the goal for cold is "fewest possible" (printed), frozen 0.
KILL_BOTH_GOALS: dict[str, tuple[str, int | None]] = {
    "cold": ("93-148", None),
    "frozen": ("failed", 0),  # the issue: "— failed" (no frozen temperature yet)
    "warm": ("-", 0),
}


def serving_row(provider: str, temperature: str, median_s: float, worst_s: float, failed: int) -> str:
    """One row of the goals table: measured median / worst, the issue's today and goal, met or not (by
    the median, and 0 failed requests)."""
    today, goal = SERVING_GOALS.get((provider, temperature), ("-", float("nan")))
    met = "yes" if median_s <= goal and failed == 0 else "no"
    return (
        f"{provider + ', ' + temperature:<16}{median_s:>9.3f}{worst_s:>9.3f}{failed:>8}"
        f"{today:>10}{'<= ' + format(goal, 'g') + ' s':>11}{met:>6}"
    )


SERVING_HEADER = (
    f"{'kill -> serving':<16}{'median s':>9}{'worst s':>9}{'failed':>8}{'today':>10}{'goal':>11}{'met':>6}"
)


def kill_both_row(temperature: str, rate: float, failed: list[int]) -> str:
    today, goal = KILL_BOTH_GOALS.get(temperature, ("-", None))
    ordered = sorted(failed)
    median, worst = ordered[len(ordered) // 2], ordered[-1]
    met = "-" if goal is None else ("yes" if worst <= goal else "no")
    goal_text = "fewest" if goal is None else str(goal)
    return (
        f"{'kill-both ' + temperature:<16}{median:>9}{worst:>9}{len(failed):>8}"
        f"{today:>10}{goal_text:>11}{met:>6}   (failed requests at {rate:g} req/s)"
    )


KILL_BOTH_HEADER = f"{'kill-both':<16}{'median':>9}{'worst':>9}{'runs':>8}{'today':>10}{'goal':>11}{'met':>6}"

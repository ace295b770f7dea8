"""`relevo scenarios --repeat N`: each scenario run N times, and the distribution of what matters across
the runs (median, p95, worst) of failed requests, detection and time until a standby served. On a noisy
machine one run says little; the spread is the point (as chaos-testing practice has it)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from relevo.scenarios.result import ScenarioResult


def spread(values: Sequence[float]) -> dict[str, float] | None:
    """median, p95 (nearest rank) and worst (the largest) of `values`; None without any."""
    if not values:
        return None
    ordered = sorted(values)
    middle = len(ordered) // 2
    median = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    p95 = ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]
    return {"median": median, "p95": p95, "worst": ordered[-1], "runs": len(ordered)}


def distribution(runs: Sequence[ScenarioResult]) -> dict[str, Any]:
    """Across one scenario's runs: failed requests, detection and until-served (each failover of each
    run), and how many runs passed, failed or were skipped."""
    ran = [r for r in runs if r.skipped is None]
    detection = [f.detection_s for r in ran for f in r.failovers if f.detection_s is not None]
    served = [f.until_served_s for r in ran for f in r.failovers if f.until_served_s is not None]
    return {
        "failed_requests": spread([float(r.failed) for r in ran]),
        "detection_s": spread(detection),
        "until_served_s": spread(served),
        "passed": sum(1 for r in runs if r.status == "passed"),
        "failed": sum(1 for r in runs if r.status == "failed"),
        "skipped": sum(1 for r in runs if r.status == "skipped"),
    }


def distribution_lines(name: str, summary: dict[str, Any]) -> list[str]:
    """Two lines per scenario, within 80 columns."""
    parts = []
    for key, label, unit in (
        ("failed_requests", "failed", ""),
        ("detection_s", "detect", " s"),
        ("until_served_s", "serving", " s"),
    ):
        values = summary.get(key)
        if values:
            parts.append(f"{label} {values['median']:g}/{values['p95']:g}/{values['worst']:g}{unit}")
    runs = f"{summary['passed']} passed, {summary['failed']} failed, {summary['skipped']} skipped"
    return [f"{name}: {runs}", "  median/p95/worst: " + ("; ".join(parts) or "nothing measured")]

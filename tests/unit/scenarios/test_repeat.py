"""`--repeat N`: the distribution of failed requests, detection and time until served over the runs."""

from __future__ import annotations

import pytest

from relevo.scenarios.catalogue import catalogue
from relevo.scenarios.repeat import distribution, distribution_lines, spread
from relevo.scenarios.result import Failover
from relevo.topology import parse_topology

from .factory import make_result


def test_spread_gives_median_nearest_rank_p95_and_worst():
    """Median (mean of the middle two for an even count), p95 by nearest rank, worst the largest."""
    assert spread([]) is None
    assert spread([3.0]) == {"median": 3.0, "p95": 3.0, "worst": 3.0, "runs": 1}
    values = [float(v) for v in range(1, 21)]  # 1..20
    assert spread(values) == {"median": 10.5, "p95": 19.0, "worst": 20.0, "runs": 20}


def test_the_distribution_counts_every_run_and_every_failover(tmp_path):
    """Failed requests per run, each failover's detection and until-served, and the runs' verdicts; the
    text fits 80 columns."""
    available, _ = catalogue(parse_topology("", source=None, state_dir=tmp_path / ".relevo"))
    scenario = available["kill-web1"]
    runs = [
        make_result(
            scenario,
            failing_second=3 if i == 2 else None,
            failovers=(
                Failover(
                    standby="web1bck",
                    at_s=2.1,
                    detection_s=0.1 * (i + 1),
                    standby_start_s=0.05,
                    until_served_s=0.2 * (i + 1),
                ),
            ),
        )
        for i in range(3)
    ]
    summary = distribution(runs)
    assert summary["failed_requests"] == {"median": 0.0, "p95": 5.0, "worst": 5.0, "runs": 3}
    assert summary["detection_s"]["worst"] == pytest.approx(0.3)
    assert summary["until_served_s"]["median"] == pytest.approx(0.4)
    assert (summary["passed"], summary["failed"], summary["skipped"]) == (3, 0, 0)
    lines = distribution_lines("kill-web1", summary)
    assert lines[0].startswith("kill-web1: ")
    assert all(len(line) <= 80 for line in lines)

"""The seed's published results (JMeter Summary Report, one run each, 1000 threads x 50 loops), shown
beside relevo's own rows and always marked as theirs. Source: the seed report's results table."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class SeedRow:
    scenario: str  # relevo's scenario name that reproduces it
    title: str  # the seed's own name for the run
    samples: int
    mean_ms: int
    min_ms: int
    max_ms: int
    stddev_ms: float
    error_pct: float
    throughput_rps: float


SEED_ROWS: dict[str, SeedRow] = {
    row.scenario: row
    for row in (
        SeedRow(
            scenario="no-servers",
            title="no servers",
            samples=50000,
            mean_ms=556,
            min_ms=3,
            max_ms=1611,
            stddev_ms=143.93,
            error_pct=100.00,
            throughput_rps=1703.2,
        ),
        SeedRow(
            scenario="one-server",
            title="one server",
            samples=49031,
            mean_ms=675,
            min_ms=1,
            max_ms=26974,
            stddev_ms=1911.80,
            error_pct=11.38,
            throughput_rps=519.6,
        ),
        SeedRow(
            scenario="two-servers",
            title="two servers",
            samples=50000,
            mean_ms=323,
            min_ms=1,
            max_ms=1785,
            stddev_ms=189.73,
            error_pct=0.20,
            throughput_rps=602.5,
        ),
        SeedRow(
            scenario="two-plus-one-standby",
            title="two + one backup running",
            samples=50000,
            mean_ms=333,
            min_ms=1,
            max_ms=1989,
            stddev_ms=180.67,
            error_pct=0.07,
            throughput_rps=575.1,
        ),
        SeedRow(
            scenario="two-plus-two-standbys",
            title="two + two backups running",
            samples=50000,
            mean_ms=408,
            min_ms=5,
            max_ms=1396,
            stddev_ms=114.52,
            error_pct=0.04,
            throughput_rps=2298.0,
        ),
    )
}

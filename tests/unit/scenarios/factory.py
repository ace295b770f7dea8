"""Results built through the real accumulators (LabelStats, summarize) from made-up samples, so the
renderers can be tested without a cluster."""

from __future__ import annotations

from relevo.loadgen.stats import RunStats
from relevo.loadgen.summary import summarize
from relevo.scenarios.model import Scenario
from relevo.scenarios.result import Bucket, Failover, Marker, ScenarioResult, ScenarioSecond, Verdict

NS = 1_000_000_000


def make_result(
    scenario: Scenario,
    *,
    seconds: int = 6,
    per_second: int = 50,
    failing_second: int | None = 3,
    servers: tuple[str, ...] = ("web1", "web2"),
    markers: tuple[Marker, ...] = (),
    failovers: tuple[Failover, ...] = (),
    verdicts: tuple[Verdict, ...] = (),
) -> ScenarioResult:
    stats = RunStats()
    label = stats.label("GET /")
    rows = []
    for second in range(seconds):
        served: dict[str, int] = {}
        errors = 0
        for i in range(per_second):
            start = second * NS + i * (NS // per_second)
            elapsed = (1 + i % 7) * 1_000_000 + (40_000_000 if second == failing_second else 0)
            fail = second == failing_second and i % 10 == 0
            server = servers[i % len(servers)] if servers else None
            label.add(
                start_ns=start,
                end_ns=start + elapsed,
                code="503" if fail else "200",
                success=not fail,
                received=200,
                sent=60,
                served_by=None if fail else server,
            )
            errors += fail
            if not fail and server:
                served[server] = served.get(server, 0) + 1
        rows.append(
            ScenarioSecond(
                t_s=second,
                requests=per_second,
                errors=errors,
                p50_ms=4.0 + (40 if second == failing_second else 0),
                p99_ms=7.0 + (40 if second == failing_second else 0),
                served_by=served,
            )
        )
    # The same samples per 100 ms: a tenth of each second in each, the failing second's latency too.
    buckets = tuple(
        Bucket(
            t_s=round(second + tenth / 10, 3),
            requests=per_second // 10,
            errors=rows[second].errors // 10,
            p50_ms=rows[second].p50_ms,
            p99_ms=rows[second].p99_ms,
            served_by={name: n // 10 for name, n in rows[second].served_by.items()},
        )
        for second in range(seconds)
        for tenth in range(10)
    )
    return ScenarioResult(
        scenario=scenario,
        report=summarize(stats),
        buckets=buckets,
        charted_s=float(seconds),
        seconds=tuple(rows),
        markers=markers,
        failovers=failovers,
        verdicts=verdicts,
    )

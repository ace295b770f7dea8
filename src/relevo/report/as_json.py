"""The Summary Report as JSON: TOTAL's numbers at the top level (stable keys for scripts), then every
label's row, the per-second series and where the numbers came from; a scenario's result (`relevo scenarios
--json`) is the same keys plus its scenario, faults, events and verdicts."""

from __future__ import annotations

from typing import Any

from relevo.loadgen.summary import SummaryReport, SummaryRow
from relevo.scenarios.result import ScenarioResult
from relevo.scenarios.seed import SEED_ROWS


def _key(percentile: float) -> str:
    """50 -> p50_ms, 99.9 -> p999_ms."""
    return "p" + f"{percentile:g}".replace(".", "") + "_ms"


def row_dict(row: SummaryRow) -> dict[str, Any]:
    out: dict[str, Any] = {
        "label": row.label,
        "samples": row.samples,
        "errors": row.errors,
        "error_pct": round(row.error_pct, 4),
        "average_ms": round(row.average_ms, 3),
        "min_ms": round(row.min_ms, 3),
        "max_ms": round(row.max_ms, 3),
        "stddev_ms": round(row.stddev_ms, 3),
        "throughput_rps": round(row.throughput_rps, 3),
        "received_kb_s": round(row.received_kb_s, 3),
        "sent_kb_s": round(row.sent_kb_s, 3),
        "avg_bytes": round(row.avg_bytes, 3),
        "dropped": row.dropped,
        "unfinished": row.unfinished,
    }
    out.update({_key(p): round(v, 3) for p, v in row.percentiles_ms.items()})
    out["errors_by_kind"] = dict(row.errors_by_kind)
    out["codes"] = dict(row.codes)
    out["served_by"] = dict(row.served_by)
    return out


def to_dict(report: SummaryReport) -> dict[str, Any]:
    out = row_dict(report.total)
    out.pop("label")
    out["interrupted"] = report.interrupted
    out["planned"] = report.planned
    out["labels"] = [row_dict(row) for row in report.rows]
    out["timeseries"] = [
        {
            "second": s.second,
            "samples": s.samples,
            "errors": s.errors,
            "average_ms": round(s.average_ms, 3),
            "max_ms": round(s.max_ms, 3),
            "received_kb": round(s.received_kb, 3),
            "dropped": s.dropped,
        }
        for s in report.series
    ]
    out["meta"] = dict(report.meta)
    return out


def result_dict(result: ScenarioResult) -> dict[str, Any]:
    """`relevo bench --json`'s keys for the scenario's run, plus its scenario, faults, controller events,
    failover times and verdicts."""
    out = to_dict(result.report)
    scenario = result.scenario
    out["scenario"] = {
        "description": scenario.description,
        "load": scenario.load.describe(),
        "model": str(scenario.load.model),
        "faults": [
            {
                "at_s": f.at_s,
                "action": str(f.action),
                "node": f.node,
                "after": f.after,
                "for_s": f.for_s,
                "label": f.label,
            }
            for f in scenario.faults
        ],
        "expect": scenario.expect.describe(),
    }
    out["markers"] = [
        {
            "t_s": round(m.t_s, 3),
            "source": m.source,
            "kind": m.kind,
            "label": m.label,
            **({"end_t_s": round(m.end_t_s, 3), "means": m.means} if m.end_t_s is not None else {}),
        }
        for m in result.markers
    ]
    out["events"] = [dict(e) for e in result.events]
    out["failovers"] = [
        {
            "standby": f.standby,
            "at_s": round(f.at_s, 3),
            "detection_s": f.detection_s,
            "standby_start_s": f.standby_start_s,
            "until_served_s": f.until_served_s,
        }
        for f in result.failovers
    ]
    out["verdicts"] = [{"what": v.what, "ok": v.ok, "detail": v.detail} for v in result.verdicts]
    out["steady_state"] = {
        c.when: {
            "ok": c.ok,
            "took_s": round(c.took_s, 3),
            "within_s": c.within_s,
            "expected": c.expected,
            "differences": list(c.differences),
        }
        for c in result.steady
    }
    out["fault_spans"] = [
        {"start_s": round(s.start_s, 3), "end_s": _ms(s.end_s), "label": s.label} for s in result.spans
    ]
    out["timeseries_100ms"] = series_100ms(result)
    out["environment"] = dict(result.environment)
    out["passed"] = None if result.skipped is not None else result.passed
    out["status"] = result.status
    if result.skipped is not None:
        out["skipped"] = result.skipped
    seed = SEED_ROWS.get(scenario.seed_row or "")
    if seed is not None:
        out["seed"] = {
            "title": seed.title,
            "samples": seed.samples,
            "average_ms": seed.mean_ms,
            "min_ms": seed.min_ms,
            "max_ms": seed.max_ms,
            "stddev_ms": seed.stddev_ms,
            "error_pct": seed.error_pct,
            "throughput_rps": seed.throughput_rps,
        }
    return out


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def series_100ms(result: ScenarioResult) -> dict[str, Any]:
    """The series the charts draw, with what each number counts."""
    return {
        "bucket_s": result.bucket_s,
        "t_s": "the bucket's start, seconds since the load started",
        "requests": "responses completed in the bucket (errors and served_by likewise)",
        "latency": "p50_ms and p99_ms of the requests sent in the bucket (null: none sent)",
        "charted_s": round(result.charted_s, 3),
        "tail": result.tail,
        "buckets": [
            {
                "t_s": round(b.t_s, 3),
                "requests": b.requests,
                "errors": b.errors,
                "p50_ms": _ms(b.p50_ms),
                "p99_ms": _ms(b.p99_ms),
                "served_by": dict(b.served_by),
            }
            for b in result.buckets
        ],
    }

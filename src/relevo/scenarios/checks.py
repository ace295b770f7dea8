"""Verdicts: a scenario's stated expectations and the user's thresholds (k6's idea), checked against its
result with pure code. A broken one makes `relevo scenarios` exit 1."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from relevo.loadgen.summary import SummaryReport
from relevo.scenarios.model import Expectation
from relevo.scenarios.result import Failover, Verdict, VipAfter


@dataclass(frozen=True, slots=True, kw_only=True)
class Thresholds:
    max_error_pct: float | None = None
    max_p99_ms: float | None = None
    max_failover_s: float | None = None  # until the standby served, for each failover

    def __bool__(self) -> bool:
        return any(v is not None for v in (self.max_error_pct, self.max_p99_ms, self.max_failover_s))


def check_expectation(
    expect: Expectation, report: SummaryReport, events: Sequence[Mapping[str, Any]]
) -> list[Verdict]:
    total = report.total
    out: list[Verdict] = []
    if expect.max_failed is not None:
        out.append(
            Verdict(
                what=f"expect: at most {expect.max_failed} failed requests",
                ok=total.errors <= expect.max_failed,
                detail=f"{total.errors} failed" + _kinds(total.errors_by_kind),
            )
        )
    if expect.min_error_pct is not None:
        out.append(
            Verdict(
                what=f"expect: at least {expect.min_error_pct:g}% errors",
                ok=total.samples > 0 and total.error_pct >= expect.min_error_pct,
                detail=f"{total.error_pct:.2f}% of {total.samples}",
            )
        )
    if expect.error_codes:
        others = {k: n for k, n in total.errors_by_kind.items() if k not in expect.error_codes}
        out.append(
            Verdict(
                what="expect: failures only " + "/".join(expect.error_codes),
                ok=not others,
                detail="other failures: " + _plain(others) if others else "none other",
            )
        )
    for server in expect.served_by:
        n = total.served_by.get(server, 0)
        out.append(Verdict(what=f"expect: {server} answers", ok=n > 0, detail=f"{n} responses"))
    kinds = {str(e.get("kind")) for e in events}
    for kind in expect.events:
        out.append(
            Verdict(
                what=f"expect: a {kind} event",
                ok=kind in kinds,
                detail="journalled" if kind in kinds else "not in the journal during the run",
            )
        )
    for kind in expect.no_events:
        out.append(
            Verdict(
                what=f"expect: no {kind} event",
                ok=kind not in kinds,
                detail="journalled during the run" if kind in kinds else "none in the journal",
            )
        )
    return out


def check_vip(expect: Expectation, seen: VipAfter | None) -> list[Verdict]:
    """`vip_back`: after the faults, with both balancers answering again, the VIP is on the balancer the
    faults hit (a failback) at the last look, or on the other one at every look (it stayed)."""
    if expect.vip_back is None:
        return []
    if seen is None:
        return [Verdict(what="expect: the VIP's holder", ok=False, detail="no fault hit a balancer")]
    want = seen.hit if expect.vip_back else seen.other
    what = f"expect: the VIP {'back on' if expect.vip_back else 'stays on'} {want}"
    looks = ", ".join(h or "none" for h in dict.fromkeys(seen.holders)) or "no look"
    if not seen.whole:
        return [Verdict(what=what, ok=False, detail=f"the pair was not whole again; held by {looks}")]
    if expect.vip_back:
        ok = bool(seen.holders) and seen.holders[-1] == want
    else:
        ok = bool(seen.holders) and all(h == want for h in seen.holders)
    return [Verdict(what=what, ok=ok, detail=f"held by {looks} over {len(seen.holders)} looks")]


def check_thresholds(
    thresholds: Thresholds, report: SummaryReport, failovers: Sequence[Failover]
) -> list[Verdict]:
    total = report.total
    out: list[Verdict] = []
    if thresholds.max_error_pct is not None:
        out.append(
            Verdict(
                what=f"threshold: error % <= {thresholds.max_error_pct:g}",
                ok=total.error_pct <= thresholds.max_error_pct,
                detail=f"{total.error_pct:.2f}%",
            )
        )
    if thresholds.max_p99_ms is not None:
        p99 = total.percentiles_ms.get(99.0, 0.0)
        out.append(
            Verdict(
                what=f"threshold: p99 <= {thresholds.max_p99_ms:g} ms",
                ok=p99 <= thresholds.max_p99_ms,
                detail=f"{p99:.1f} ms",
            )
        )
    if thresholds.max_failover_s is not None:
        times = [f.until_served_s for f in failovers if f.until_served_s is not None]
        worst = max(times, default=0.0)
        out.append(
            Verdict(
                what=f"threshold: failover <= {thresholds.max_failover_s:g} s",
                ok=worst <= thresholds.max_failover_s,
                detail=f"slowest {worst:.3f} s" if times else "no failover",
            )
        )
    return out


def _plain(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{k} x{n}" for k, n in counts.items())


def _kinds(counts: Mapping[str, int]) -> str:
    return f" ({_plain(counts)})" if counts else ""

"""Expectations and thresholds turned into verdicts."""

from __future__ import annotations

from relevo.scenarios.checks import Thresholds, check_expectation, check_thresholds
from relevo.scenarios.model import Expectation, LoadSettings, Scenario
from relevo.scenarios.result import Failover

from .factory import make_result

SCENARIO = Scenario(name="s", description="d", load=LoadSettings.seed())


def test_zero_failed_is_broken_by_one_failure_and_met_without():
    """`max_failed: 0` fails when any request failed, and passes when none did."""
    failing = make_result(SCENARIO, failing_second=3)
    clean = make_result(SCENARIO, failing_second=None)
    expect = Expectation(max_failed=0, served_by=("web1",), events=("failover",))
    verdicts = check_expectation(expect, failing.report, [{"kind": "failover"}])
    assert [v.ok for v in verdicts] == [False, True, True]
    assert "5 failed" in verdicts[0].detail
    assert all(v.ok for v in check_expectation(expect, clean.report, [{"kind": "failover"}]))
    missing = check_expectation(expect, clean.report, [{"kind": "health"}])
    assert [v.ok for v in missing] == [True, True, False]


def test_error_codes_and_error_percentage():
    """`no-servers`' expectation: every request failed, and only with 503."""
    result = make_result(SCENARIO, failing_second=3)
    verdicts = check_expectation(Expectation(min_error_pct=100.0, error_codes=("503",)), result.report, [])
    assert [v.ok for v in verdicts] == [False, True]


def test_thresholds_are_met_or_broken_by_the_numbers():
    """Error %, p99 and the slowest failover against their limits."""
    result = make_result(SCENARIO, failing_second=3)
    slow = (Failover(standby="b", at_s=3, detection_s=0.5, standby_start_s=0.1, until_served_s=0.9),)
    loose = Thresholds(max_error_pct=5, max_p99_ms=500, max_failover_s=1.0)
    tight = Thresholds(max_error_pct=1, max_p99_ms=5, max_failover_s=0.5)
    assert all(v.ok for v in check_thresholds(loose, result.report, slow))
    assert not any(v.ok for v in check_thresholds(tight, result.report, slow))
    assert not Thresholds()

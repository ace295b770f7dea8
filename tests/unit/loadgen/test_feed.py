"""The live feed a run writes for the dashboard: its lines, the rates between progress reports, and that
a feed which cannot be written never fails the run."""

from __future__ import annotations

import json
from typing import Any

from relevo.loadgen.engine import LoadProgress, RecentLatency
from relevo.loadgen.feed import LiveFeed


class Clock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


def progress(done: int, failed: int, recent: RecentLatency | None = None) -> LoadProgress:
    return LoadProgress(
        elapsed_s=1.0, done=done, failed=failed, active=10, expected=None, duration_s=10.0, recent=recent
    )


def lines(path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_run_is_told_as_rates_percentiles_and_markers(tmp_path):
    """The first progress report only sets the baseline; each next one is a point with the responses
    and failures per second since the previous and the window's p50/p99; a fault is a marker."""
    path, clock = tmp_path / "load.jsonl", Clock()
    feed = LiveFeed(path, clock=clock)
    feed.begin("relevo bench")
    feed.progress(progress(100, 0))
    clock.now += 0.5
    feed.progress(progress(600, 5, RecentLatency(count=500, p50_ms=1.25, p99_ms=9.5)))
    feed.marker("kill web1", "crash", at=5000.7)
    feed.end()
    told = lines(path)
    assert [r["kind"] for r in told] == ["run", "point", "marker", "end"]
    assert told[0]["what"] == "relevo bench"
    assert told[1] == {
        "kind": "point",
        "rps": 1000.0,
        "errors": 10.0,
        "p50_ms": 1.25,
        "p99_ms": 9.5,
        "n": 500,
        "t": 5000.5,
    }
    assert told[2]["t"] == 5000.7 and told[2]["label"] == "kill web1" and told[2]["end"] is None


def test_each_run_begins_a_new_file(tmp_path):
    """A second run replaces the first one's file (a new inode, so a follower starts over) and its
    first report is a baseline again, not a rate against the last run's counters."""
    path, clock = tmp_path / "load.jsonl", Clock()
    feed = LiveFeed(path, clock=clock)
    feed.begin("first")
    feed.progress(progress(1000, 0))
    feed.end()
    inode = path.stat().st_ino
    feed.begin("second")
    clock.now += 0.5
    feed.progress(progress(10, 0))
    assert [r["kind"] for r in lines(path)] == ["run"]
    assert path.stat().st_ino != inode


def test_a_feed_that_cannot_be_written_is_silent(tmp_path):
    """With nowhere to write (the state directory gone), every call does nothing instead of failing the
    run it describes."""
    feed = LiveFeed(tmp_path / "gone" / "load.jsonl")
    feed.begin("relevo bench")
    feed.progress(progress(1, 0))
    feed.marker("kill web1", "crash", at=1.0)
    feed.end()
    assert not (tmp_path / "gone").exists()

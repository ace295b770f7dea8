"""Hearing a process end through its pidfd: at once, once, and never for a PID someone else now has."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace

import pytest

from relevo.pidwatch import PidWatch, pidfd_supported
from relevo.procs import ProcessRecord

pytestmark = pytest.mark.skipif(not pidfd_supported(), reason="this kernel has no pidfd_open")


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


@pytest.fixture
def watch() -> Iterator[PidWatch]:
    pids = PidWatch()
    yield pids
    pids.close()


def record_of(proc: subprocess.Popen[bytes]) -> ProcessRecord:
    record = ProcessRecord.of(proc.pid)
    assert record is not None
    return record


def test_a_pidfd_becomes_readable_when_its_process_exits(child, watch):
    """A watched process killed is reported by the next wait, without any polling of /proc."""
    watch.follow({"web1": record_of(child)})
    assert watch.wait(0.01) == []
    child.kill()
    child.wait()
    assert watch.wait(5.0) == ["web1"]
    assert watch.watched() == {}


def test_each_death_is_reported_once_even_if_followed_again(child, watch):
    """Refreshing with the same (dead) record does not report the death again."""
    record = record_of(child)
    watch.follow({"web1": record})
    child.kill()
    child.wait()
    assert watch.wait(5.0) == ["web1"]
    watch.follow({"web1": record})
    assert watch.wait(0.01) == []


def test_a_record_whose_process_is_already_gone_is_reported_when_followed(child, watch):
    """A node that died before the watch looked is reported by the next wait (the pidfd cannot open)."""
    record = record_of(child)
    child.kill()
    child.wait()
    watch.follow({"web1": record})
    assert watch.wait(0.01) == ["web1"]


def test_a_pid_now_naming_another_process_is_not_ours(child, watch):
    """A record whose start time differs (the PID reused) is gone, whatever now runs under that PID."""
    stale = replace(record_of(child), start_time=record_of(child).start_time - 1)
    watch.follow({"web1": stale})
    assert watch.wait(0.01) == ["web1"]
    assert watch.watched() == {}


def test_following_none_stops_watching(child, watch):
    """A node stopped on purpose is no longer watched: its exit is not a death to report."""
    watch.follow({"web1": record_of(child)})
    watch.follow({"web1": None})
    child.kill()
    child.wait()
    assert watch.wait(0.05) == []

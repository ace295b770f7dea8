"""The engine's handle: observe a run while it goes (per-second series, served-by), stop it, read it."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from relevo.loadgen import engine
from relevo.loadgen.jtl import read_samples
from relevo.loadgen.plan import simple_plan
from relevo.polling import wait_until

from .conftest import Behaviour, Server, round_robin

Serve = Callable[[Behaviour], Server]


@pytest.mark.parametrize("workers", [1, 2])
def test_handle_shows_seconds_while_running_and_stops_on_request(serve: Serve, workers: int) -> None:
    """While the load runs, `seconds()` counts requests per server per second; `stop()` ends the run early,
    marked interrupted, and the final series holds every sample."""
    server = serve(round_robin("web1", "web2"))
    plan = simple_plan(server.url, threads=4, loops=None, duration_s=30, think_s=0.01)
    with engine.start(plan, workers=workers) as run:
        assert wait_until(lambda: sum(s.served_by.get("web1", 0) for s in run.seconds()) > 20, 60, 0.05), (
            "web1's requests never showed in the series"
        )
        assert not run.done
        run.stop()
        result = run.wait(timeout_s=10)
    assert result.interrupted
    assert result.elapsed_s < 30, "stopped, not run for its 30 s"
    seconds = run.seconds()
    total = result.stats.total()
    assert sum(s.requests for s in seconds) == total.count > 20
    web1 = sum(s.served_by.get("web1", 0) for s in seconds)
    web2 = sum(s.served_by.get("web2", 0) for s in seconds)
    assert web1 + web2 == total.count
    assert abs(web1 - web2) <= 4 * workers  # round robin, per connection


def test_wait_with_a_timeout_says_the_run_goes_on(serve: Serve) -> None:
    """`wait(timeout_s)` raises TimeoutError while the load still runs; the block's end stops it."""
    server = serve(round_robin("web1"))
    plan = simple_plan(server.url, threads=1, loops=None, duration_s=30, think_s=0.01)
    with engine.start(plan) as run, pytest.raises(TimeoutError):
        run.wait(timeout_s=0.3)
    assert run.done and run.wait().interrupted


def test_nothing_listening_stops_after_the_first_second(free_port: int) -> None:
    """Every connection refused during the first second: the run stops there and says so."""
    plan = simple_plan(f"http://127.0.0.1:{free_port}/", threads=2, loops=None, duration_s=20)
    result = engine.run(plan, workers=1)
    # Stopped after the first second, not run for its 20 (a bound on behaviour with room for a busy
    # machine, not a speed measurement).
    assert result.elapsed_s < 10
    assert result.nothing_listening
    assert result.stats.total().error_kinds.keys() == {"refused"}


def test_refused_requests_record_zero_sent_bytes(free_port: int, tmp_path) -> None:
    """A request whose connection was refused sent nothing: sentBytes 0, in the stats and the JTL file."""
    jtl = tmp_path / "run.jtl"
    result = engine.run(simple_plan(f"http://127.0.0.1:{free_port}/", threads=2, loops=3), workers=1, jtl=jtl)
    assert result.stats.total().sent_bytes == 0
    samples = list(read_samples(jtl))
    assert len(samples) == 6 and {s.sent_bytes for s in samples} == {0}


def test_a_single_worker_ignores_its_parent_shell(serve: Serve, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run in the main process does not stop when its parent process changes (the shell went away):
    only worker processes check for their parent."""
    import os

    server = serve(round_robin("web1"))
    real = os.getppid()
    monkeypatch.setattr(os, "getppid", lambda: real + 1)
    result = engine.run(simple_plan(server.url, threads=1, loops=None, duration_s=0.6), workers=1)
    assert not result.interrupted
    assert result.elapsed_s >= 0.6

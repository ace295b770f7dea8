"""The controller's own HTTP probe of each web node, run concurrently and never allowed to stall a tick.

A hung server (SIGSTOPped, or stuck in a request) accepts the TCP connection and then says nothing, so
each probe has a deadline; a probe still running past it counts as one failed probe and is abandoned
(its socket timeout ends its thread soon after), so one hung node never delays decisions about others.

A standby just started is *hurried*: probed again every HURRY_INTERVAL_S until it first answers, and the
loop woken then, instead of once per tick. Its first pass is what puts it in service, and Apache answers
10-40 ms after its start here: a tick's cadence (20 ms while a failover is under way, plus the tick's own
work) would add up to a whole interval to every cold failover.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor

from relevo.controller.health import ProbeResult
from relevo.model import Endpoint

ProbeFn = Callable[[str], ProbeResult]
# Sent as the Host header: the same one HAProxy's own check sends (see the haproxy.cfg template).
CHECK_HOST = "relevo-check"
# While probes are out, how often `collect` looks whether it was interrupted (a death was heard).
INTERRUPT_SLICE_S = 0.005
# A hurried node (a standby just started) is probed again this soon after a failed probe. Before its
# server listens, a probe is a refused connect (tens of microseconds); once it listens, the probe waits
# for the answer itself.
HURRY_INTERVAL_S = 0.005


def http_probe(endpoint: Endpoint, *, path: str, expect_status: int, timeout_s: float) -> ProbeResult:
    """One GET of the health path. Fails on a refused or reset connection, a timeout, or another status.
    A refused connection is certain (nothing listens); a timeout is ambiguous (hung, or only busy)."""
    began = time.monotonic()
    connection = http.client.HTTPConnection(endpoint.address, endpoint.port, timeout=timeout_s)
    try:
        connection.request(
            "GET", path, headers={"Host": CHECK_HOST, "Connection": "close", "User-Agent": "relevo-probe"}
        )
        response = connection.getresponse()
        response.read(65536)
    except TimeoutError:
        return ProbeResult(
            ok=False, detail=f"no answer within {timeout_s:g} s", ambiguous=True, sent_at=began
        )
    except ConnectionRefusedError:
        return ProbeResult(ok=False, detail="connection refused", certain=True, sent_at=began)
    except (OSError, http.client.HTTPException) as exc:
        return ProbeResult(ok=False, detail=f"{type(exc).__name__}: {exc}".rstrip(": "), sent_at=began)
    finally:
        connection.close()
    took = time.monotonic() - began
    if response.status != expect_status:
        return ProbeResult(
            ok=False, detail=f"status {response.status}, expected {expect_status}", sent_at=began
        )
    return ProbeResult(ok=True, detail=f"status {response.status}", took_s=took, sent_at=began)


class Prober:
    """Runs a probe per node in threads; `collect` returns the verdicts that are in, never waiting long."""

    def __init__(
        self,
        probe: ProbeFn,
        *,
        timeout_s: float,
        workers: int = 16,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._probe = probe
        self._timeout_s = timeout_s
        self._clock = clock
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="relevo-probe")
        self._inflight: dict[str, tuple[Future[ProbeResult], float]] = {}
        # node -> its hurried probing (`hurry`): the first passing probe, or the last failed one at its end
        self._hurried: dict[str, Future[ProbeResult]] = {}
        self._closed = threading.Event()

    def hurry(self, name: str, *, for_s: float, answered: Callable[[], None]) -> None:
        """Probe `name` every HURRY_INTERVAL_S until it answers (then call `answered`, from the probing
        thread) or `for_s` has passed on the prober's clock; `collect` gives that probe's verdict. A probe
        of it already in flight was sent before its start: its verdict is dropped."""
        if name in self._hurried and not self._hurried[name].done():
            return
        self._inflight.pop(name, None)
        deadline = self._clock() + for_s

        def until_answered() -> ProbeResult:
            while True:
                result = self._probe(name)
                if result.ok or self._clock() >= deadline or self._closed.wait(HURRY_INTERVAL_S):
                    return result

        def done(future: Future[ProbeResult]) -> None:
            # Called once the future is done, so the loop `answered` wakes finds the verdict in.
            if not future.cancelled() and future.exception() is None and future.result().ok:
                answered()

        future = self._pool.submit(until_answered)
        future.add_done_callback(done)
        self._hurried[name] = future

    def collect(
        self, names: Iterable[str], wait_s: float, *, interrupt: threading.Event | None = None
    ) -> Mapping[str, ProbeResult]:
        """Probe `names` (unless a probe of one is still in flight) and wait up to `wait_s` for them,
        or until `interrupt` is set (a death heard: the tick must not wait on slow probes to act on it).
        Nodes whose probe is neither done nor overdue are left out: no verdict yet."""
        results: dict[str, ProbeResult] = {}
        wanted = []
        for name in names:
            hurried = self._hurried.get(name)
            if hurried is None:
                wanted.append(name)
            elif hurried.done():
                del self._hurried[name]
                results[name] = _verdict(hurried, self._clock())
            # else: still hurrying, no verdict yet (its passing probe wakes the loop)
        for name in wanted:
            if name not in self._inflight:
                self._inflight[name] = (self._pool.submit(self._probe, name), self._clock())
        futures = [self._inflight[name][0] for name in wanted]
        if interrupt is None:
            concurrent.futures.wait(futures, timeout=wait_s)
        else:
            deadline = time.monotonic() + wait_s
            pending = set(futures)
            while pending and not interrupt.is_set() and (left := deadline - time.monotonic()) > 0:
                pending = concurrent.futures.wait(pending, timeout=min(INTERRUPT_SLICE_S, left)).not_done
        now = self._clock()
        for name in wanted:
            future, began = self._inflight[name]
            if future.done():
                del self._inflight[name]
                results[name] = _verdict(future, began)
            elif now - began >= self._timeout_s:
                # Abandoned (its own socket timeout ends the thread), and the next probe sent at once,
                # so that `fall` timeouts take `fall` x the timeout, not a tick more each.
                self._inflight[name] = (self._pool.submit(self._probe, name), now)
                results[name] = ProbeResult(
                    ok=False, detail=f"no answer within {self._timeout_s:g} s", ambiguous=True, sent_at=began
                )
        return results

    def close(self) -> None:
        self._closed.set()
        self._pool.shutdown(wait=False, cancel_futures=True)


def _verdict(future: Future[ProbeResult], began: float) -> ProbeResult:
    """A finished probe's result; a probe that raised (a bug) is a failed probe that says so."""
    error = future.exception()
    if error:
        return ProbeResult(ok=False, detail=f"probe error: {error!r}", sent_at=began)
    return future.result()

"""HAProxy's request log as the charts' latency percentiles and errors/s, with or without a relevo run in
progress (HAProxy's counters give rates and an average, never percentiles).

HAProxy sends one datagram per request (`ACCESS_LOG_FORMAT`: `relevo-request <Ta ms> <status>`) to a UDP
port on this host's loopback (render/haproxy.py's `access_log_receiver`; from a container, through a
proxy device). A thread here receives them into a rolling window of the last second, in 100 ms buckets
of counts per latency, exact up to 2,047 ms and within 0.1 % above (the load engine's log-linear
histogram layout): at most a few thousand counters per bucket whatever is sent, and nothing is written
to disk. A datagram the kernel dropped (a receiver starved of CPU) is a request missing from the
window, never a wrong one: `n` says how many requests the figures come from.

Anyone on this host may send to the port (UDP has no owner): what such a sender can do is draw on the
charts. The page's actions and data stay behind the cluster's credentials.
"""

from __future__ import annotations

import contextlib
import math
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from relevo.loadgen.histogram import bounds_of, index_of
from relevo.model import Endpoint
from relevo.render.haproxy import ACCESS_LOG_FORMAT

WINDOW_S = 1.0  # the figures of a point: the requests of the last second, as a run's feed gives them
BUCKET_S = 0.1
MAX_MS = 600_000  # longer answers are counted at this value (HAProxy's own timeouts end them sooner)
DATAGRAM_MAX = 2048  # HAProxy's `len 1024` bounds a line
RECEIVE_BUFFER = 4 << 20  # asked for; the kernel grants up to net.core.rmem_max (root: forced)
POLL_S = 0.25  # how often the receiving thread looks whether it should stop
TAG = ACCESS_LOG_FORMAT.split()[0].encode()


@dataclass(frozen=True, slots=True)
class Request:
    """One request as HAProxy logged it: its active time (-1: none) and its status (-1: no answer)."""

    ta_ms: int
    status: int

    @property
    def failed(self) -> bool:
        """What a client saw as a failure: a 5xx answer, or none at all (the connection was cut)."""
        return self.status < 0 or self.status >= 500


def parse(datagram: bytes) -> Request | None:
    """One datagram of ACCESS_LOG_FORMAT, else None (another format, a stray sender, a cut line)."""
    parts = datagram.split()
    if len(parts) != 3 or parts[0] != TAG:
        return None
    try:
        return Request(ta_ms=int(parts[1]), status=int(parts[2]))
    except ValueError:
        return None


def nearest_rank(counts: Counter[int], total: int, percentile: float) -> int:
    """The smallest value that at least `percentile` % of the `total` values do not exceed, from counts by
    histogram index: the highest value of its counter, as the load engine reports its percentiles."""
    rank = max(1, math.ceil(percentile / 100.0 * total))
    seen = 0
    for index in sorted(counts):
        seen += counts[index]
        if seen >= rank:
            return bounds_of(index)[1]
    return bounds_of(max(counts))[1]


@dataclass(slots=True)
class _Bucket:
    index: int
    latencies: Counter[int]  # by histogram index (loadgen.histogram): a bounded number of keys
    requests: int = 0
    failed: int = 0


class Window:
    """The requests of the last `window_s`, in buckets of `bucket_s`; thread-safe (one thread adds, the
    sampler asks). Only whole buckets are summed: a second's figures lag by at most one bucket, and
    their rate is exact."""

    def __init__(self, window_s: float = WINDOW_S, bucket_s: float = BUCKET_S) -> None:
        self.bucket_s = bucket_s
        self.size = max(1, round(window_s / bucket_s))
        self._buckets: deque[_Bucket] = deque()
        self._lock = threading.Lock()

    def add(self, now: float, request: Request) -> None:
        index = math.floor(now / self.bucket_s)
        with self._lock:
            if not self._buckets or self._buckets[-1].index < index:
                self._buckets.append(_Bucket(index=index, latencies=Counter()))
                self._drop_before(index - self.size)
            bucket = self._buckets[-1]  # a clock that went back: counted in the newest bucket
            bucket.requests += 1
            if request.failed:
                bucket.failed += 1
            if request.ta_ms >= 0:
                bucket.latencies[index_of(min(request.ta_ms, MAX_MS))] += 1

    def _drop_before(self, index: int) -> None:
        while self._buckets and self._buckets[0].index < index:
            self._buckets.popleft()

    def summary(self, now: float) -> dict[str, Any]:
        """The last whole `size` buckets before `now`'s: requests and failed per second, p50 and p99 of
        the active time in ms (None without a timed request), and `n`, the requests they come from."""
        current = math.floor(now / self.bucket_s)
        first = current - self.size
        requests = failed = 0
        latencies: Counter[int] = Counter()
        with self._lock:
            self._drop_before(first)
            for bucket in self._buckets:
                if first <= bucket.index < current:
                    requests += bucket.requests
                    failed += bucket.failed
                    latencies.update(bucket.latencies)
        span = self.size * self.bucket_s
        timed = sum(latencies.values())
        return {
            "rps": round(requests / span, 1),
            "errors": round(failed / span, 1),
            "p50_ms": nearest_rank(latencies, timed, 50) if timed else None,
            "p99_ms": nearest_rank(latencies, timed, 99) if timed else None,
            "n": requests,
        }


class AccessLogReceiver:
    """Receives HAProxy's request log at `endpoint` (UDP) into `window`, in a thread of its own, from
    `start()` until `stop()`. When it cannot listen, `error` says why (shown on the page) and the
    dashboard runs on without it."""

    def __init__(
        self, endpoint: Endpoint, window: Window | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.endpoint = endpoint
        self.window = window or Window()
        self.clock = clock
        self.error: str | None = None
        self.received = 0
        self.ignored = 0  # datagrams that were not a request line of ours
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.endpoint.address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        try:
            sock.bind((self.endpoint.address, self.endpoint.port))
        except OSError as exc:
            sock.close()
            self.error = (
                f"cannot receive HAProxy's request log on udp {self.endpoint.address}:"
                f"{self.endpoint.port}: {exc.strerror or exc}"
            )
            return
        sock.settimeout(POLL_S)
        self._socket = sock
        self._thread = threading.Thread(target=self._run, name="relevo-access-log", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        sock = self._socket
        assert sock is not None
        while not self._stop.is_set():
            try:
                datagram = sock.recv(DATAGRAM_MAX)
            except TimeoutError:
                continue
            except OSError:
                # ECONNREFUSED and the like are about datagrams we never send; only a closed socket ends.
                if sock.fileno() < 0:
                    return
                continue
            self.feed(datagram)

    def feed(self, datagram: bytes) -> None:
        request = parse(datagram)
        if request is None:
            self.ignored += 1
            return
        self.received += 1
        self.window.add(self.clock(), request)

    def summary(self, now: float) -> dict[str, Any]:
        return self.window.summary(now)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._socket is not None:
            self._socket.close()
        self._thread = self._socket = None

"""Where each finished sample goes: the label's accumulator, the per-second series, the JTL file if any.

`SampleRecorder.response` runs once per request at full speed, so it inlines what `LabelStats.add` and
`Histogram.record` do (a Python call costs about as much as the arithmetic itself); the unit tests check
that both paths give identical accumulators.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import TYPE_CHECKING, Protocol

from relevo.loadgen.histogram import HALF_BITS, MAX_VALUE, SUB_BUCKET_BITS
from relevo.loadgen.stats import FINE_NS, NS_PER_S, ErrorKind, LabelStats, RunStats, bump

if TYPE_CHECKING:
    from relevo.loadgen.client import Sampler


class SampleSink(Protocol):
    """Receives every sample as it finishes (the JTL writer); optional, costs nothing when absent."""

    def sample(
        self,
        *,
        sampler: Sampler,
        thread: str,
        start_ns: int,
        end_ns: int,
        status: int,
        error_kind: ErrorKind | None,
        detail: str,
        received: int,
        latency_ns: int,
        connect_ns: int,
    ) -> None: ...

    def close(self) -> None: ...


# The text JMeter puts in responseCode / failureMessage for a sample that got no HTTP answer, so that
# tools reading our JTL (and `relevo report` reading JMeter's) classify failures the same way.
NON_HTTP_CODE = "Non HTTP response code: "
NON_HTTP_MESSAGE = "Non HTTP response message: "
JAVA_EXCEPTION = {
    ErrorKind.REFUSED: "java.net.ConnectException",
    ErrorKind.RESET: "java.net.SocketException",
    ErrorKind.TIMEOUT: "java.net.SocketTimeoutException",
    ErrorKind.INCOMPLETE: "org.apache.http.NoHttpResponseException",
    ErrorKind.CONNECT: "java.net.NoRouteToHostException",
    ErrorKind.PROTOCOL: "org.apache.http.client.ClientProtocolException",
}


# Status codes as text, made once: str() on every response would be a measurable share of the hot path.
CODE_TEXT = tuple(str(code) for code in range(1000))


def reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


class SampleRecorder:
    """One worker's accumulators; the engine merges the recorders of all workers at the end."""

    __slots__ = ("done", "failed", "fine", "refused", "series", "sink", "stats", "t0_ns")

    def __init__(self, *, t0_ns: int, sink: SampleSink | None = None) -> None:
        self.stats = RunStats()
        self.series = self.stats.series
        self.fine = self.stats.fine
        self.t0_ns = t0_ns
        self.sink = sink
        # Read by the progress reporter: samples finished, and how many of them failed.
        self.done = 0
        self.failed = 0
        self.refused = 0  # of them, refused connections (the fail-fast check: is anything listening?)

    def label(self, name: str) -> LabelStats:
        return self.stats.label(name)

    def response(
        self,
        sampler: Sampler,
        start_ns: int,
        end_ns: int,
        status: int,
        received: int,
        served_by: str | None,
    ) -> None:
        """A complete HTTP response: the hot path."""
        us = (end_ns - start_ns) // 1000
        if us < 0:
            us = 0
        st = sampler.stats
        n = st.count + 1
        st.count = n
        st.total_us += us
        st.squares_us2 += us * us
        hist = st.hist
        value = us if us <= MAX_VALUE else MAX_VALUE
        shift = value.bit_length() - SUB_BUCKET_BITS
        if shift < 0:
            shift = 0
        hist.counts[(shift << HALF_BITS) + (value >> shift)] += 1
        hist.count += 1
        if value < hist.min:
            hist.min = value
        if value > hist.max:
            hist.max = value
        st.bytes += received
        st.sent_bytes += sampler.sent
        if n == 1 or start_ns < st.first_start_ns:
            st.first_start_ns = start_ns
        if end_ns > st.last_end_ns:
            st.last_end_ns = end_ns
        code = CODE_TEXT[status]
        codes = st.codes
        codes[code] = codes.get(code, 0) + 1
        ok = 200 <= status < 400
        if not ok:
            st.errors += 1
            bump(st.error_kinds, code)
            self.failed += 1
        # What _second() does, inline.
        series = self.series
        second = (end_ns - self.t0_ns) // NS_PER_S
        if second < 0:
            second = 0
        requests = series.requests
        if second >= len(requests):
            series.grow(second + 1)
        if served_by is not None:
            served = st.served_by
            count = served.get(served_by)
            if count is None:
                st.first_served_ns[served_by] = end_ns
                count = 0
            served[served_by] = count + 1
            served = series.served[second]
            served[served_by] = served.get(served_by, 0) + 1
        requests[second] += 1
        series.total_us[second] += us
        series.bytes[second] += received
        if not ok:
            series.errors[second] += 1
        if us > series.max_us[second]:
            series.max_us[second] = us
        # The charts' 100 ms buckets: requests, errors, answers per server.
        fine = self.fine
        bucket = (end_ns - self.t0_ns) // FINE_NS
        if bucket < 0:
            bucket = 0
        if bucket >= len(fine.requests):
            fine.grow(bucket + 1)
        fine.requests[bucket] += 1
        fine.total_us[bucket] += us
        if not ok:
            fine.errors[bucket] += 1
        if served_by is not None:
            served = fine.served[bucket]
            served[served_by] = served.get(served_by, 0) + 1
        self.done += 1

    def failure(
        self,
        sampler: Sampler,
        start_ns: int,
        end_ns: int,
        kind: ErrorKind,
        *,
        received: int = 0,
        sent: int,
    ) -> None:
        """A sample without a complete HTTP response (refused, reset, timeout, ...); `sent` is what was
        written (0 when the connection never opened: JMeter records 0 too)."""
        code = f"{NON_HTTP_CODE}{JAVA_EXCEPTION[kind]}"
        sampler.stats.add(
            start_ns=start_ns,
            end_ns=end_ns,
            code=code,
            success=False,
            received=received,
            sent=sent,
            error_kind=kind.value,
        )
        if kind is ErrorKind.REFUSED:
            self.refused += 1
        self.failed += 1
        self.done += 1
        self._second(end_ns, max(0, (end_ns - start_ns) // 1000), True, received)

    def dropped(self, sampler: Sampler, at_ns: int, n: int = 1) -> None:
        """`n` open-model requests that were due but never sent: every connection was busy."""
        sampler.stats.dropped += n
        series = self.series
        second = max(0, (at_ns - self.t0_ns) // NS_PER_S)
        if second >= len(series.requests):
            series.grow(second + 1)
        series.dropped[second] += n
        bucket = max(0, (at_ns - self.t0_ns) // FINE_NS)
        if bucket >= len(self.fine.requests):
            self.fine.grow(bucket + 1)
        self.fine.dropped[bucket] += n

    def unfinished(self, sampler: Sampler, n: int = 1) -> None:
        """`n` requests of the plan that a stop left without a sample (never sent, or cut off)."""
        sampler.stats.unfinished += n

    def _second(self, end_ns: int, us: int, error: bool, received: int) -> None:
        for series, width_ns in ((self.series, NS_PER_S), (self.fine, FINE_NS)):
            index = max(0, (end_ns - self.t0_ns) // width_ns)
            if index >= len(series.requests):
                series.grow(index + 1)
            series.requests[index] += 1
            series.total_us[index] += us
            series.bytes[index] += received
            if error:
                series.errors[index] += 1
            if us > series.max_us[index]:
                series.max_us[index] = us

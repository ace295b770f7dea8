"""HAProxy's request log as the dashboard reads it: the line's parser, the rolling window's percentiles and
rates on an injected clock, the receiver on a real UDP socket, and the charts' point that carries it."""

from __future__ import annotations

import socket

import pytest

from relevo.dashboard.access_log import (
    MAX_MS,
    AccessLogReceiver,
    Request,
    Window,
    parse,
)
from relevo.model import Endpoint
from relevo.polling import wait_until
from relevo.render.haproxy import ACCESS_LOG_FORMAT

from .test_collect import collector


def test_parse_reads_the_rendered_format():
    """A line of the format haproxy.cfg asks for (with HAProxy's trailing newline) is one request."""
    line = ACCESS_LOG_FORMAT.replace("%Ta", "17").replace("%ST", "503") + "\n"
    assert parse(line.encode()) == Request(ta_ms=17, status=503)
    assert parse(b"relevo-request -1 -1") == Request(ta_ms=-1, status=-1)


@pytest.mark.parametrize(
    "datagram",
    [
        b"",
        b"relevo-request 12",
        b"relevo-request 12 200 extra",
        b"other 12 200",
        b"relevo-request x 200",
        b"<134>Dec  7 haproxy[1]: relevo-request 12 200",
    ],
)
def test_parse_ignores_what_is_not_our_line(datagram):
    """Another format, a stray sender or a cut line is not a request (never a wrong figure)."""
    assert parse(datagram) is None


def test_failed_is_a_5xx_or_no_answer():
    """A client's failure: a 5xx status or none (-1); a 4xx is an answer."""
    assert [Request(1, s).failed for s in (200, 404, 499, 500, 503, -1)] == [
        False,
        False,
        False,
        True,
        True,
        True,
    ]


def test_window_percentiles_and_rates_of_the_last_whole_second():
    """Over the ten whole 100 ms buckets before now's: p50 and p99 by nearest rank, requests and failures
    per second, and n; the bucket now fills is not counted yet."""
    window = Window()
    for i in range(100):  # 100 requests in [10.0, 11.0): 1..100 ms, the last 3 failed
        window.add(10.0 + i / 100, Request(ta_ms=i + 1, status=503 if i >= 97 else 200))
    window.add(11.05, Request(ta_ms=9999, status=500))  # the current bucket at 11.05
    assert window.summary(11.05) == {"rps": 100.0, "errors": 3.0, "p50_ms": 50, "p99_ms": 99, "n": 100}


def test_window_memory_is_bounded_whatever_is_sent():
    """Every distinct latency up to the clamp in one bucket keeps a few thousand counters, not one per
    value; a latency above 2,047 ms is reported within 0.1 % (never below it)."""
    window = Window()
    for ms in range(0, MAX_MS + 1, 7):
        window.add(10.0, Request(ta_ms=ms, status=200))
    assert len(window._buckets[-1].latencies) < 12_000
    window = Window()
    window.add(10.0, Request(ta_ms=123_456, status=200))
    p50 = window.summary(10.5)["p50_ms"]
    assert 123_456 <= p50 <= 123_456 * 1.001


def test_window_forgets_what_is_older_than_its_span():
    """A second later the old requests are gone (and so are their buckets: memory stays bounded)."""
    window = Window()
    window.add(10.0, Request(ta_ms=5, status=200))
    assert window.summary(10.5)["n"] == 1
    assert window.summary(11.2) == {"rps": 0.0, "errors": 0.0, "p50_ms": None, "p99_ms": None, "n": 0}
    assert not window._buckets


def test_window_keeps_untimed_requests_out_of_the_percentiles():
    """A request with no active time (-1) counts as a request (a failure too, with no status), not as a
    0 ms latency; an absurd latency is clamped."""
    window = Window()
    window.add(10.0, Request(ta_ms=-1, status=-1))
    window.add(10.0, Request(ta_ms=MAX_MS * 10, status=200))
    summary = window.summary(10.5)
    assert (summary["n"], summary["errors"]) == (2, 1.0)
    assert MAX_MS <= summary["p50_ms"] <= MAX_MS * 1.001


def test_receiver_counts_datagrams_sent_to_its_udp_port():
    """On a real loopback UDP socket: our lines reach the window, anything else is counted as ignored."""
    receiver = AccessLogReceiver(Endpoint(address="127.0.0.1", port=0), clock=lambda: 20.0)
    receiver.start()
    try:
        assert receiver.error is None and receiver._socket is not None
        port = receiver._socket.getsockname()[1]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for ms in (3, 4, 5):
                sender.sendto(f"relevo-request {ms} 200\n".encode(), ("127.0.0.1", port))
            sender.sendto(b"hello", ("127.0.0.1", port))
        assert wait_until(lambda: receiver.received + receiver.ignored == 4, 5.0, 0.01)
    finally:
        receiver.stop()
    assert receiver.ignored == 1
    assert receiver.summary(21.0) == {"rps": 3.0, "errors": 0.0, "p50_ms": 4, "p99_ms": 5, "n": 3}


def test_receiver_says_why_it_cannot_listen():
    """A port another socket holds: `error` says where and why, nothing raises, stop is harmless."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        receiver = AccessLogReceiver(Endpoint(address="127.0.0.1", port=port))
        receiver.start()
        receiver.stop()
    assert receiver.error is not None
    assert f"udp 127.0.0.1:{port}" in receiver.error
    assert "in use" in receiver.error


class FakeLog:
    def __init__(self, summary, error=None):
        self._summary, self.error = summary, error

    def summary(self, now):
        return self._summary


def test_a_point_carries_the_log_without_a_run_or_counters(tmp_path):
    """With HAProxy unreachable and no run in progress, the log's second alone makes a chart point; the
    page is told when the receiver could not listen."""
    made, _runtime, _clock, _topology = collector(tmp_path)
    logged = {"rps": 40.0, "errors": 1.0, "p50_ms": 3, "p99_ms": 12, "n": 40}
    made.requests = FakeLog(logged, error="cannot receive HAProxy's request log on udp …")
    update = made.sample()
    assert update["point"] is not None
    assert update["point"]["log"] == logged
    assert update["point"]["load"] is None
    assert update["unreachable"]["haproxy's request log"].startswith("cannot receive")


def test_no_point_from_an_empty_log(tmp_path):
    """A second without a logged request adds nothing of its own: no point while nothing else has one."""
    made, _runtime, _clock, _topology = collector(tmp_path)
    made.requests = FakeLog({"rps": 0.0, "errors": 0.0, "p50_ms": None, "p99_ms": None, "n": 0})
    assert made.sample()["point"] is None

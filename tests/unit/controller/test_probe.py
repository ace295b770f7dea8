"""The controller's HTTP probe on real loopback sockets, and the prober that never waits on a hang."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from relevo.controller.health import ProbeResult
from relevo.controller.probe import Prober, http_probe
from relevo.model import Endpoint
from relevo.polling import wait_until


@contextmanager
def http_server(status: int) -> Iterator[Endpoint]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Endpoint(address="127.0.0.1", port=server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextmanager
def silent_server() -> Iterator[Endpoint]:
    """Accepts connections (the kernel does, as for a SIGSTOPped server) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield Endpoint(address="127.0.0.1", port=listener.getsockname()[1])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def probe(endpoint: Endpoint, timeout_s: float = 0.3) -> ProbeResult:
    return http_probe(endpoint, path="/health", expect_status=200, timeout_s=timeout_s)


def test_expected_status_passes():
    """A 200 from the health path passes."""
    with http_server(200) as endpoint:
        assert probe(endpoint).ok


def test_unexpected_status_fails():
    """Any other status fails, and says which."""
    with http_server(503) as endpoint:
        result = probe(endpoint)
    assert not result.ok and "503" in result.detail


def test_refused_connection_fails():
    """Nothing listening: connection refused."""
    result = probe(Endpoint(address="127.0.0.1", port=free_port()))
    assert not result.ok and result.detail == "connection refused"
    assert result.certain and not result.ambiguous, "nothing listens: certain, no need to wait for fall"


def test_silent_server_times_out():
    """A server that accepts but never answers (a hang) fails after the timeout."""
    with silent_server() as endpoint:
        result = probe(endpoint, timeout_s=0.2)
    assert not result.ok and "no answer" in result.detail
    assert result.ambiguous and not result.certain, "a timeout may only mean busy"


def test_prober_does_not_wait_for_a_hung_node():
    """A hung node's probe leaves the others' verdicts on time (`collect` returns them while it still
    hangs, no verdict for it yet), and counts as one failure once overdue (on the prober's clock)."""
    release = threading.Event()
    clock = FakeClock()

    def probe_fn(name: str) -> ProbeResult:
        if name == "hung":
            release.wait(30)
        return ProbeResult(ok=True, detail="status 200")

    prober = Prober(probe_fn, timeout_s=0.5, clock=clock)
    try:
        seen: dict[str, ProbeResult] = {}

        def ok_seen() -> bool:
            seen.update(prober.collect(["hung", "ok"], wait_s=0.01))
            return "ok" in seen

        assert wait_until(ok_seen, 30, 0.01)
        assert seen["ok"].ok and "hung" not in seen
        clock.now += 0.5
        second = prober.collect(["hung", "ok"], wait_s=0.01)
        assert not second["hung"].ok and second["hung"].ambiguous
    finally:
        release.set()
        prober.close()


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_overdue_probe_is_replaced_at_once_so_fall_timeouts_take_fall_times_the_timeout():
    """A probe past its timeout is abandoned and the next one sent in the same call: with a 1 s timeout
    and a tick of 0.1 s, the second timeout verdict comes at 2.0 s, not a tick later per probe."""
    release = threading.Event()
    sent: list[float] = []
    clock = FakeClock()

    def hanging(_name: str) -> ProbeResult:
        sent.append(clock.now)
        release.wait(5)
        return ProbeResult(ok=True)

    prober = Prober(hanging, timeout_s=1.0, clock=clock)
    verdicts: list[tuple[float, ProbeResult]] = []
    try:
        while clock.now < 2.05:
            for result in prober.collect(["web2"], wait_s=0.0).values():
                verdicts.append((clock.now, result))
            clock.now = round(clock.now + 0.1, 3)
    finally:
        release.set()
        prober.close()
    assert [when for when, _ in verdicts] == [1.0, 2.0]
    assert all(r.ambiguous and not r.ok for _, r in verdicts)
    assert [r.sent_at for _, r in verdicts] == [0.0, 1.0], "each verdict says when its probe was sent"
    assert wait_until(lambda: len(sent) == 3, 30, 0.005), "each overdue probe replaced by a new one"


def test_a_hurried_node_is_probed_until_it_answers_and_the_loop_woken_then():
    """A standby just started is probed again at once after each failed probe (not once per tick): its
    first passing probe wakes the loop, and the next `collect` has that verdict without probing again."""
    attempts: list[str] = []
    woken = threading.Event()

    def starting(name: str) -> ProbeResult:
        attempts.append(name)
        if len(attempts) < 3:
            return ProbeResult(ok=False, detail="connection refused", certain=True)
        return ProbeResult(ok=True, detail="status 200")

    prober = Prober(starting, timeout_s=1.0, clock=FakeClock())
    try:
        prober.hurry("web1bck", for_s=10.0, answered=woken.set)
        assert woken.wait(30), "the first passing probe wakes the loop"
        verdict = prober.collect(["web1bck"], wait_s=0.0)
        assert verdict["web1bck"].ok, "the woken tick finds the pass that woke it"
        assert len(attempts) == 3, "probed until it answered, no further probe for the tick"
    finally:
        prober.close()


def test_a_hurried_node_gives_no_verdict_while_it_comes_up_nor_one_sent_before_its_start():
    """While the hurried probes still fail, `collect` says nothing of the node (no failure counted
    against a standby that is starting); once its start timeout is over the last failure is the verdict;
    a probe sent before the start is never reported."""
    release = threading.Event()
    clock = FakeClock()
    before_start: list[float] = []

    def probe_fn(_name: str) -> ProbeResult:
        if not before_start:
            before_start.append(clock.now)
            release.wait(30)
            return ProbeResult(ok=False, detail="sent before the start")
        return ProbeResult(ok=False, detail="connection refused", certain=True)

    prober = Prober(probe_fn, timeout_s=1.0, clock=clock)
    try:
        assert prober.collect(["web1bck"], wait_s=0.0) == {}, "a probe in flight when the start comes"
        prober.hurry("web1bck", for_s=10.0, answered=release.set)
        release.set()
        for _ in range(3):
            assert prober.collect(["web1bck"], wait_s=0.01) == {}, "still coming up: no verdict"
        clock.now += 10.0  # its start timeout is over
        verdicts: dict[str, ProbeResult] = {}

        def verdict_in() -> bool:
            verdicts.update(prober.collect(["web1bck"], wait_s=0.01))
            return bool(verdicts)

        assert wait_until(verdict_in, 30, 0.01)
        assert verdicts["web1bck"].detail == "connection refused"
        later = prober.collect(["web1bck"], wait_s=0.05)
        assert all(r.detail != "sent before the start" for r in later.values())
    finally:
        release.set()
        prober.close()

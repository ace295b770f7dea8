"""LXD's lifecycle event stream, read from recorded websocket bytes: the upgrade, frames, a ping, a
dropped connection and its reconnect, and events of containers that are not this cluster's."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest

from relevo.lxd.errors import LXDUnreachableError
from relevo.lxd.events import EventStream, lifecycle
from relevo.lxd.transport import APIEndpoint
from relevo.providers.base import NodeState
from relevo.providers.lxd_events import LifecycleWatch

UPGRADED = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
ENDPOINT = APIEndpoint(socket_path=Path("/nonexistent/unix.socket"))


def frame(payload: bytes, opcode: int = 0x1, *, fin: bool = True) -> bytes:
    head = bytes([(0x80 if fin else 0) | opcode])
    if len(payload) < 126:
        return head + bytes([len(payload)]) + payload
    return head + bytes([126]) + struct.pack("!H", len(payload)) + payload


def event(action: str, name: str, project: str = "default") -> bytes:
    body = {
        "type": "lifecycle",
        "project": project,
        "metadata": {"action": action, "source": f"/1.0/instances/{name}", "context": {}},
    }
    return frame(json.dumps(body).encode())


class Recorded:
    """A socket that replays `chunks` (b"" is the peer closing; TimeoutError a quiet moment)."""

    def __init__(self, chunks: list[bytes | type[BaseException]]) -> None:
        self.chunks = list(chunks)
        self.sent: list[bytes] = []
        self.closed = False

    def sendall(self, data: bytes, /) -> None:
        self.sent.append(data)

    def recv(self, size: int, /) -> bytes:
        if not self.chunks:
            raise TimeoutError
        chunk = self.chunks.pop(0)
        if isinstance(chunk, type):
            raise chunk()
        return chunk

    def settimeout(self, value: float | None, /) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def stream(sock: Recorded) -> EventStream:
    return EventStream(ENDPOINT, connect=lambda _endpoint, _timeout: sock)


def test_upgrade_then_events_split_across_reads():
    """The upgrade request asks for lifecycle events; a frame split over two reads is one message."""
    data = event("instance-stopped", "e7-web1")
    sock = Recorded([UPGRADED + data[:7], data[7:]])
    s = stream(sock)
    assert b"GET /1.0/events?type=lifecycle" in sock.sent[0]
    assert b"Upgrade: websocket" in sock.sent[0]
    messages = s.receive(1.0)
    assert [m["metadata"]["action"] for m in messages] == ["instance-stopped"]


def test_a_refused_upgrade_is_an_error():
    """A daemon that does not switch protocols (an old one, a proxy) is an error, not a silent stream."""
    sock = Recorded([b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"])
    with pytest.raises(LXDUnreachableError, match="refused"):
        stream(sock)
    assert sock.closed


def test_a_ping_is_answered_with_a_masked_pong_and_fragments_join():
    """Control frames in between do not break a fragmented message; the pong is masked (RFC 6455)."""
    body = json.dumps({"type": "lifecycle", "metadata": {"action": "instance-paused"}}).encode()
    sock = Recorded([UPGRADED, frame(body[:10], fin=False) + frame(b"hi", 0x9) + frame(body[10:], 0x0)])
    s = stream(sock)
    assert [m["metadata"]["action"] for m in s.receive(1.0)] == ["instance-paused"]
    pong = sock.sent[-1]
    assert pong[0] == 0x8A and pong[1] == 0x80 | 2
    mask = pong[2:6]
    assert bytes(b ^ mask[i % 4] for i, b in enumerate(pong[6:])) == b"hi"


def test_the_peer_closing_is_a_broken_stream():
    """LXD going away (EOF) raises, so the watch reconnects."""
    s = stream(Recorded([UPGRADED, b""]))
    with pytest.raises(LXDUnreachableError, match="closed"):
        s.receive(1.0)


def test_lifecycle_names_the_instance_and_its_project():
    """The instance comes from metadata.source; a snapshot's event is not the instance's."""
    found = lifecycle(
        {
            "type": "lifecycle",
            "metadata": {"action": "instance-stopped", "source": "/1.0/instances/a%2Db?project=p1"},
        }
    )
    assert found is not None and (found.name, found.project) == ("a-b", "p1")
    snapshot = {"metadata": {"action": "x", "source": "/1.0/instances/a/snapshots/s"}, "type": "lifecycle"}
    assert lifecycle(snapshot) is None
    assert lifecycle({"type": "logging", "metadata": {}}) is None


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_watch_reconnects_after_a_drop_and_ignores_other_clusters():
    """A recorded stream: a death of ours, another cluster's and another project's (ignored), the
    connection dropped, a reconnect after RECONNECT_S, and the next death heard on the new stream."""
    first = Recorded(
        [
            UPGRADED
            + event("instance-stopped", "e7-web1")
            + event("instance-stopped", "e3-web1")
            + event("instance-stopped", "e7-web2", project="other"),
            b"",
        ]
    )
    second = Recorded([UPGRADED + event("instance-paused", "e7-web2")])
    socks = [first, second]
    clock = Clock()
    opened: list[Any] = []

    def opener(endpoint: APIEndpoint) -> EventStream:
        opened.append(endpoint)
        return EventStream(endpoint, connect=lambda _e, _t: socks.pop(0))

    watch = LifecycleWatch(
        ENDPOINT, {"e7-web1": "web1", "e7-web2": "web2"}, opener=opener, clock=clock, sleep=clock.sleep
    )
    heard = watch.wait(0.25)
    assert [(e.node, e.state, e.source) for e in heard] == [("web1", NodeState.STOPPED, "lxd-events")]
    assert watch.wait(0.25) == []  # the drop
    assert first.closed and "closed" in watch.last_error
    assert watch.wait(0.25) == []  # too soon to reconnect: waits instead of spinning
    assert len(opened) == 1
    clock.now += 1.0
    heard = watch.wait(0.25)
    assert [(e.node, e.state) for e in heard] == [("web2", NodeState.PAUSED)]
    assert watch.connects == 2


def test_watch_survives_a_daemon_that_is_not_there():
    """An unreachable daemon is retried later, never raised to the reading thread."""
    clock = Clock()

    def opener(endpoint: APIEndpoint) -> EventStream:
        raise LXDUnreachableError("connect", "no daemon answers")

    watch = LifecycleWatch(ENDPOINT, {"e7-web1": "web1"}, opener=opener, clock=clock, sleep=clock.sleep)
    assert watch.wait(0.25) == []
    assert "no daemon" in watch.last_error

"""Tiny HTTP servers on 127.0.0.1, each misbehaving in one chosen way, for the engine's unit tests."""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

Behaviour = Callable[[socket.socket, bytes, int], bool]


def ok_response(
    status: int = 200, body: bytes = b"hello", served_by: str | None = "web1", close: bool = False
) -> bytes:
    reason = {200: "OK", 302: "Found", 404: "Not Found", 503: "Service Unavailable"}.get(status, "X")
    head = [f"HTTP/1.1 {status} {reason}", f"Content-Length: {len(body)}"]
    if served_by:
        head.append(f"X-Served-By: {served_by}")
    if close:
        head.append("Connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def answer(status: int = 200, served_by: str | None = "web1") -> Behaviour:
    """Answer every request with `status`, keeping the connection open."""

    def behave(sock: socket.socket, request: bytes, number: int) -> bool:
        sock.sendall(ok_response(status, served_by=served_by))
        return True

    return behave


def round_robin(*names: str) -> Behaviour:
    """Answer 200 with X-Served-By cycling through `names`, like HAProxy over several servers."""
    lock = threading.Lock()
    counter = [0]

    def behave(sock: socket.socket, request: bytes, number: int) -> bool:
        with lock:
            name = names[counter[0] % len(names)]
            counter[0] += 1
        sock.sendall(ok_response(served_by=name))
        return True

    return behave


def hang(sock: socket.socket, request: bytes, number: int) -> bool:
    """Read the request and never answer (until the client gives up)."""
    sock.recv(1)
    return False


def reset(sock: socket.socket, request: bytes, number: int) -> bool:
    """Read the request, then close with an RST instead of answering."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    # Close here: socketserver would shut the socket down (a FIN) before closing it.
    sock.close()
    return False


def partial(sock: socket.socket, request: bytes, number: int) -> bool:
    """Promise 100 bytes, send 10, close: a truncated response."""
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
    return False


def chunked(sock: socket.socket, request: bytes, number: int) -> bool:
    sock.sendall(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Served-By: web2\r\n\r\n"
        b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\n"
    )
    return True


def keepalive_expires(*, rst: bool) -> Behaviour:
    """Answer the first request of each connection, keeping it open; then close it (a FIN, or an RST) as
    the next request arrives: a server whose keep-alive timeout fired just as the client reused it."""

    def behave(sock: socket.socket, request: bytes, number: int) -> bool:
        if number == 1:
            sock.sendall(ok_response())
            return True
        if rst:
            return reset(sock, request, number)
        return False

    return behave


def close_after_each(sock: socket.socket, request: bytes, number: int) -> bool:
    """Say Connection: close and close, as Apache does at MaxKeepAliveRequests."""
    sock.sendall(ok_response(close=True))
    return False


@dataclass
class Server:
    url: str
    port: int
    requests: list[bytes]


class _Handler(socketserver.BaseRequestHandler):
    server: _TCPServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        buf = b""
        number = 0
        while True:
            while b"\r\n\r\n" not in buf:
                try:
                    data = sock.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buf += data
            head, _, buf = buf.partition(b"\r\n\r\n")
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
                    while len(buf) < length:
                        buf += sock.recv(65536)
                    buf = buf[length:]
            self.server.seen.append(head)
            number += 1
            try:
                if not self.server.behaviour(sock, head, number):
                    return
            except OSError:
                return


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.seen: list[bytes] = []
        super().__init__(("127.0.0.1", 0), _Handler)


@pytest.fixture
def serve() -> Iterator[Callable[[Behaviour], Server]]:
    """Start a server on 127.0.0.1 with a chosen behaviour; all are stopped after the test."""
    servers: list[_TCPServer] = []

    def start(behaviour: Behaviour) -> Server:
        server = _TCPServer(behaviour)
        servers.append(server)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        port = server.server_address[1]
        return Server(url=f"http://127.0.0.1:{port}/", port=port, requests=server.seen)

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def free_port() -> int:
    """A port on 127.0.0.1 that nobody listens on (bound, then released without listening)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])

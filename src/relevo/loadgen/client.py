"""One HTTP/1.1 connection as an `asyncio.Protocol`, driven by callbacks: no coroutine, task or future
per request, which is where asyncio's stream API and the usual client libraries spend their time.

A `Connection` carries one request at a time for its owner (a closed-model user, or an open-model
group's pool) and tells the owner how it ended: `on_response`, `on_failure(kind)`, `on_lost` for a
connection that closed while idle, or `on_stale` for a kept-alive connection the server had closed as
the request went out (closed or reset before one byte of the answer): the owner sends that request
again on a new connection, once, counted once, as browsers and HTTP libraries do for idempotent
methods (RFC 9112 9.3.1). Each connection reports its end at most once.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from typing import Protocol, cast

from relevo.loadgen.http import ProtocolError, ResponseParser, encode_request
from relevo.loadgen.plan import HttpRequest, PlanError
from relevo.loadgen.stats import ErrorKind, LabelStats
from relevo.loadgen.timeouts import TimeoutTimer

monotonic_ns = time.monotonic_ns
# A monotonic clock in ns: `monotonic_ns` in a run, a virtual one in tests that must not depend on speed.
Clock = Callable[[], int]
Address = tuple[str, int]
# Methods a request may be sent again for when its kept-alive connection turns out closed (RFC 9110 9.2.2).
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


class Owner(Protocol):
    def on_response(self, conn: Connection) -> None: ...

    def on_failure(self, conn: Connection, kind: ErrorKind) -> None: ...

    def on_lost(self, conn: Connection) -> None: ...

    def on_stale(self, conn: Connection) -> None: ...


class Sampler:
    """An `HttpRequest` made ready for one worker: its bytes encoded, its host resolved, its stats bound."""

    __slots__ = (
        "addr",
        "data",
        "head",
        "idempotent",
        "keepalive",
        "label",
        "request",
        "sent",
        "stats",
        "timeout_ns",
        "url",
    )

    def __init__(self, request: HttpRequest, stats: LabelStats, addr: Address) -> None:
        self.request = request
        self.label = request.label
        self.url = request.url
        self.data = encode_request(request)
        self.sent = len(self.data)
        self.head = request.method.upper() == "HEAD"
        self.idempotent = request.method.upper() in IDEMPOTENT
        self.keepalive = request.keepalive
        self.timeout_ns = int(request.timeout_s * 1e9)
        self.stats = stats
        self.addr = addr


def resolve(host: str, port: int) -> Address:
    """The address to connect to, looked up once per run rather than once per connection."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise PlanError(f"cannot resolve {host!r}: {exc.strerror}") from None
    # Prefer IPv4 when a name has both: the cluster listens on 127.0.0.1.
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    return str(infos[0][4][0]), port


class Connection(asyncio.Protocol):
    __slots__ = (
        "addr",
        "busy",
        "closed",
        "connect_ns",
        "connect_task",
        "first_ns",
        "owner",
        "parser",
        "reused",
        "sampler",
        "sent_ns",
        "start_ns",
        "thread",
        "timed_out",
        "timeout_ns",
        "timer",
        "timing",
        "transport",
        "written",
    )

    def __init__(
        self,
        owner: Owner,
        sampler: Sampler,
        served_key: bytes,
        *,
        thread: str,
        timing: bool,
        timer: TimeoutTimer,
    ) -> None:
        self.owner = owner
        self.timer = timer
        self.sampler = sampler
        self.addr = sampler.addr
        self.parser = ResponseParser(served_key)
        self.transport: asyncio.Transport | None = None
        self.connect_task: asyncio.Task[None] | None = None
        self.thread = thread
        # Time to first byte and connect time cost a clock read each; only the JTL file wants them.
        self.timing = timing
        self.busy = False
        self.closed = False
        self.timed_out = False
        # Whether the current request reached the socket: a failed connect sent nothing (sentBytes 0).
        self.written = False
        # Whether the current request went out on a connection an earlier request used (kept alive).
        self.reused = False
        self.start_ns = 0
        self.sent_ns = 0
        self.first_ns = 0
        self.connect_ns = 0
        self.timeout_ns = 0  # the current request's timeout length, for the timer's queues

    # Called by the owner.
    def connect(self, start_ns: int, sent_ns: int) -> None:
        """Open the connection and send the current sampler's request; latency counts from `start_ns`,
        the timeout from `sent_ns` (later than `start_ns` for an open-model request that had to wait)."""
        self.busy = True
        self.start_ns = start_ns
        self.sent_ns = sent_ns
        self.first_ns = 0
        self.written = False
        self.reused = False
        self.parser.reset(no_body=self.sampler.head)
        self.connect_task = asyncio.get_running_loop().create_task(self._connect())
        self.timer.add(self, self.sampler.timeout_ns)

    def send(self, sampler: Sampler, start_ns: int, sent_ns: int) -> None:
        """Send `sampler`'s request on this open connection; latency counts from `start_ns`."""
        self.sampler = sampler
        self.busy = True
        self.reused = True
        self.start_ns = start_ns
        self.sent_ns = sent_ns
        self.connect_ns = 0
        self.first_ns = 0
        parser = self.parser
        if parser.buf or parser.chunked or parser.until_eof:
            parser.reset(no_body=sampler.head)
        else:  # what reset() does, inline: this runs for every request
            parser.no_body = sampler.head
            parser.status = 0
            parser.received = 0
            parser.remaining = 0
        self.written = True
        self.transport.write(sampler.data)  # type: ignore[union-attr]  # send() is only called when open
        self.timer.add(self, sampler.timeout_ns)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def expire(self) -> None:
        """The request outlived its timeout: give up on it and on the connection."""
        if not self.busy:
            return
        if self.connect_task is not None:
            self.timed_out = True
            self.connect_task.cancel()
            return
        self.busy = False
        self.closed = True
        if self.transport is not None:
            self.transport.abort()
        self.owner.on_failure(self, ErrorKind.TIMEOUT)

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.create_connection(lambda: self, self.addr[0], self.addr[1])
        except asyncio.CancelledError:
            if not self.timed_out:
                raise
            kind = ErrorKind.TIMEOUT
        except ConnectionRefusedError:
            kind = ErrorKind.REFUSED
        except TimeoutError:
            kind = ErrorKind.TIMEOUT
        except OSError:
            kind = ErrorKind.CONNECT
        else:
            self.connect_task = None
            if self.timing:
                self.connect_ns = self.timer.clock()
            assert self.transport is not None
            self.written = True
            self.transport.write(self.sampler.data)
            return
        self.connect_task = None
        self.busy = False
        self.closed = True
        self.owner.on_failure(self, kind)

    # asyncio's callbacks.
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport, only alike: no isinstance here.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if not self.busy:
            return  # bytes nobody asked for (a server's late noise): the response was already counted
        parser = self.parser
        if self.timing and not parser.received:
            self.first_ns = self.timer.clock()
        try:
            done = parser.feed(data)
        except ProtocolError:
            self.busy = False
            self.closed = True
            assert self.transport is not None
            self.transport.abort()
            self.owner.on_failure(self, ErrorKind.PROTOCOL)
            return
        if done:
            self.busy = False
            self.owner.on_response(self)

    def eof_received(self) -> bool:
        return False  # let the transport close; connection_lost decides what the close meant

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.busy:
            self.owner.on_lost(self)
            return
        self.busy = False
        if exc is None and self.parser.eof():
            self.owner.on_response(self)
            self.owner.on_lost(self)
        elif self.reused and not self.parser.received and self.sampler.idempotent:
            self.owner.on_stale(self)
        elif isinstance(exc, OSError):
            self.owner.on_failure(self, ErrorKind.RESET)
        else:
            self.owner.on_failure(self, ErrorKind.INCOMPLETE)

"""A background load for failure experiments: every failed request counted, and when each server
answered first and last.

Failover is judged at the client, because HAProxy does not log a request cut off by a dying server. A
closed loop (paced keep-alive connections) sends nothing while its request stalls and so hides failures;
the open loop (a fixed arrival rate, whatever the answers do) does not. Unlike `relevo bench`, this load
runs in a thread beside the code that breaks the cluster, stops when told, and keeps per-server times
(when traffic reached a standby, when it came back to its primary). Loopback only; bounded in requests
and time.
"""

from __future__ import annotations

import asyncio
import ipaddress
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

CLIENT_TIMEOUT_S = 10.0  # far above HAProxy's `timeout server` + retries: a stall, not a slow answer
MAX_REQUESTS = 100_000
MAX_LOAD_S = 60.0
MAX_CONNECTIONS = 1000
MAX_IDLE_S = 5.0  # below HAProxy's `timeout http-keep-alive` (10 s)


# --- a small load client: closed loop (paced keep-alive connections) or open loop (arrival rate) ---------
@dataclass
class Outcome:
    ok: int = 0
    failed: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    served_by: Counter[str] = field(default_factory=Counter)
    first_seen: dict[str, float] = field(default_factory=dict)  # node -> monotonic time of 1st answer
    last_seen: dict[str, float] = field(default_factory=dict)

    def record(self, status: int | None, served_by: str | None, error: str = "") -> None:
        now = time.monotonic()
        if status == 200:
            self.ok += 1
            node = served_by or "?"
            self.served_by[node] += 1
            self.first_seen.setdefault(node, now)
            self.last_seen[node] = now
        else:
            self.failed += 1
            self.errors[error or f"status {status}"] += 1


class Load:
    """HTTP GETs to one address from a thread of its own, bounded in count and time."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        rate: float = 1000.0,
        connections: int = 100,
        open_loop: bool = False,
        max_requests: int = MAX_REQUESTS,
        max_s: float = MAX_LOAD_S,
    ) -> None:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"load goes to loopback addresses only, not {host}")
        self.host, self.port = host, port
        self.rate, self.connections, self.open_loop = rate, connections, open_loop
        self.max_requests, self.max_s = max_requests, max_s
        self.outcome = Outcome()
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="load", daemon=True)
        self._request = f"GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: relevo-test\r\n\r\n".encode()

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> Outcome:
        self._stop.set()
        self._thread.join(CLIENT_TIMEOUT_S + 5)
        return self.outcome

    def _done(self, began: float) -> bool:
        return self._stop.is_set() or self.sent >= self.max_requests or time.monotonic() - began > self.max_s

    async def _main(self) -> None:
        began = time.monotonic()
        if self.open_loop:
            await self._open_loop(began)
        else:
            interval = self.connections / self.rate
            await asyncio.gather(
                *(
                    self._connection(began, i * interval / self.connections, interval)
                    for i in range(self.connections)
                )
            )

    async def _connection(self, began: float, offset: float, interval: float) -> None:
        """Closed loop: one keep-alive connection, one request at a time, paced to `interval`."""
        streams = None
        due = began + offset
        while not self._done(began):
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            due = max(due + interval, time.monotonic() - interval)
            try:
                if streams is None:
                    streams = await asyncio.open_connection(self.host, self.port)
                self.sent += 1
                keep = await self._exchange(*streams)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
                self.outcome.record(None, None, type(exc).__name__)
                keep = False
            if not keep and streams is not None:
                streams[1].close()
                streams = None
        if streams is not None:
            streams[1].close()

    async def _open_loop(self, began: float) -> None:
        """Open loop: request i leaves at began + i/rate on an idle connection or a new one."""
        # (reader, writer, when it became idle): a connection idle longer than MAX_IDLE_S is dropped, as
        # real clients do, because HAProxy closes it after `timeout http-keep-alive` and a request sent
        # on it as it closes would be lost without the server ever seeing it.
        idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
        tasks: set[asyncio.Task[None]] = set()
        opened = 0

        def take() -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
            nonlocal opened
            while idle:
                reader, writer, since = idle.pop()
                if time.monotonic() - since < MAX_IDLE_S and not reader.at_eof():
                    return reader, writer
                writer.close()
                opened -= 1
            return None

        async def one() -> None:
            nonlocal opened
            streams = take()
            try:
                if streams is None:
                    opened += 1
                    streams = await asyncio.open_connection(self.host, self.port)
                keep = await self._exchange(*streams)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
                self.outcome.record(None, None, type(exc).__name__)
                keep = False
            if streams is not None:
                if keep:
                    idle.append((*streams, time.monotonic()))
                else:
                    streams[1].close()
                    opened -= 1

        i = 0
        while not self._done(began):
            await asyncio.sleep(max(0.0, began + i / self.rate - time.monotonic()))
            if opened - len(idle) >= MAX_CONNECTIONS:
                self.outcome.record(None, None, "client out of connections")
            else:
                self.sent += 1
                task = asyncio.create_task(one())
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            i += 1
        if tasks:
            await asyncio.wait(tasks, timeout=CLIENT_TIMEOUT_S + 1)
        for _, writer, _ in idle:
            writer.close()

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """One request and its whole response; True if the connection may be reused."""
        async with asyncio.timeout(CLIENT_TIMEOUT_S):
            writer.write(self._request)
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            headers = {
                k.strip().lower(): v.strip()
                for k, _, v in (line.partition(":") for line in lines[1:] if line)
            }
            if "content-length" in headers:
                await reader.readexactly(int(headers["content-length"]))
                keep = headers.get("connection", "").lower() != "close"
            else:
                await reader.read()  # delimited by the end of the connection (HAProxy's 503 page)
                keep = False
        self.outcome.record(status, headers.get("x-served-by"))
        return keep

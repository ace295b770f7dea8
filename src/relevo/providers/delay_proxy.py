"""A delaying TCP proxy, put on the path to one node (as Toxiproxy does): what the local provider uses for
the delay, slow and bandwidth faults, since this kernel has no netem. Run as its own process:

    python -m relevo.providers.delay_proxy --listen ADDR --upstream ADDR:PORT --mark N
        [--delay-ms MS] [--jitter-ms MS] [--slow-ms MS] [--kbit N] [--max-s S]

It listens on ADDR (a free port), prints that port on its first line, and for each connection opens one
to the upstream with the socket mark N (the DNAT rule that sends traffic here skips marked packets, so
the proxy's own connection reaches the node). Delay: each chunk of the answers waits the delay (one round
trip takes `delay` longer; jitter spread evenly, order kept). Slow: the first chunk of each
answer waits `slow`. Bandwidth: answers flow at `kbit` at most. It dies with its parent (PDEATHSIG) and
after `max-s` whatever happens: every fault is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import random
import signal
import socket
import sys
import time
from collections import deque

CHUNK = 65536
PR_SET_PDEATHSIG = 1


class Shape:
    def __init__(self, delay_ms: float, jitter_ms: float, slow_ms: float, kbit: int) -> None:
        self.delay_s = delay_ms / 1000
        self.jitter_s = jitter_ms / 1000
        self.slow_s = slow_ms / 1000
        self.bytes_per_s = kbit * 1000 / 8 if kbit > 0 else 0.0

    def answer_delay(self) -> float:
        """The whole round trip's delay, put on the answers' way (one wait per chunk, not two: each wake-up
        of a busy machine's scheduler adds its own latency)."""
        delay = self.delay_s
        if self.jitter_s:
            delay += random.uniform(-self.jitter_s / 2, self.jitter_s / 2)  # noqa: S311 (jitter, not a secret)
        return max(0.0, delay)


async def pump(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    shape: Shape,
    *,
    answers: bool,
    asked: asyncio.Event,
) -> None:
    """Copy one direction, each chunk released at its due time (order kept)."""
    queue: deque[tuple[float, bytes]] = deque()
    ready = asyncio.Event()
    last_due = 0.0
    ended = False

    async def release() -> None:
        while True:
            while not queue:
                if ended:
                    return
                ready.clear()
                await ready.wait()
            due, data = queue.popleft()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
            if answers and shape.bytes_per_s:
                await asyncio.sleep(len(data) / shape.bytes_per_s)

    sender = asyncio.ensure_future(release())
    try:
        while data := await reader.read(CHUNK):
            due = time.monotonic() + (shape.answer_delay() if answers else 0.0)
            if answers and shape.slow_s and asked.is_set():
                asked.clear()  # the first chunk of this answer: the server "took" slow_s to start it
                due += shape.slow_s
            if not answers:
                asked.set()
            last_due = max(last_due, due)
            queue.append((last_due, data))
            ready.set()
    except (ConnectionError, OSError):
        pass
    finally:
        ended = True
        ready.set()
        with contextlib.suppress(Exception):
            await sender
        with contextlib.suppress(Exception):
            if writer.can_write_eof():
                writer.write_eof()


async def handle(
    client_r: asyncio.StreamReader,
    client_w: asyncio.StreamWriter,
    upstream: tuple[str, int],
    mark: int,
    shape: Shape,
) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, mark)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, upstream)
        server_r, server_w = await asyncio.open_connection(sock=sock)
    except OSError:
        sock.close()
        client_w.close()
        return
    asked = asyncio.Event()
    try:
        await asyncio.gather(
            pump(client_r, server_w, shape, answers=False, asked=asked),
            pump(server_r, client_w, shape, answers=True, asked=asked),
        )
    finally:
        for w in (client_w, server_w):
            with contextlib.suppress(Exception):
                w.close()


async def serve(args: argparse.Namespace) -> None:
    host, _, port = args.upstream.rpartition(":")
    shape = Shape(args.delay_ms, args.jitter_ms, args.slow_ms, args.kbit)
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, (host, int(port)), args.mark, shape), args.listen, 0, backlog=1024
    )
    listening = server.sockets[0].getsockname()[1]
    sys.stdout.write(f"{listening}\n")
    sys.stdout.flush()
    async with server:
        await asyncio.sleep(args.max_s)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="relevo-delay-proxy")
    parser.add_argument("--listen", required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--mark", type=int, required=True)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--jitter-ms", type=float, default=0.0)
    parser.add_argument("--slow-ms", type=float, default=0.0)
    parser.add_argument("--kbit", type=int, default=0)
    parser.add_argument("--max-s", type=float, default=3600.0)
    args = parser.parse_args(argv)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a heal ends it at once, mid-transfer or not
    with contextlib.suppress(KeyboardInterrupt):
        try:
            import uvloop  # about half the CPU per forwarded chunk (MEASURED: the load generator's)
        except ImportError:
            asyncio.run(serve(args))
        else:
            uvloop.run(serve(args))


if __name__ == "__main__":
    main()

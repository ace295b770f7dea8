"""A tiny HTTP server on a unix socket that answers like LXD did: it replays recorded exchanges in order
and keeps what it was sent. The edge of the unit tests, where a fake is fine; the `lxd` tier talks to
the real daemon."""

from __future__ import annotations

import contextlib
import json
import socketserver
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

MISMATCH = b'{"type": "error", "error": "not the recorded request", "error_code": 599}'
MISMATCH = b'{"type": "error", "error": "not the recorded request", "error_code": 599}'
FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> list[dict[str, Any]]:
    """The exchanges recorded in fixtures/NAME.json (by tests/unit/lxd/record.py, from LXD 5.0.2)."""
    exchanges: list[dict[str, Any]] = json.loads((FIXTURES / f"{name}.json").read_text())
    return exchanges


@dataclass
class Received:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeLXD:
    """Answers each request with the next recorded exchange, after checking that the method and path
    are the recorded ones (a mismatch answers 599, which the test then sees as an error)."""

    socket_path: Path
    exchanges: list[dict[str, Any]]
    received: list[Received] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def handle_one(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                query = dict(urllib.parse.parse_qsl(url.query))
                fake.received.append(Received(self.command, url.path, query, dict(self.headers), body))
                exchange = fake.exchanges.pop(0) if fake.exchanges else {"request": {}}
                want = exchange["request"]
                if (want.get("method"), want.get("path")) != (self.command, url.path):
                    fake.mismatches.append(f"{self.command} {url.path}, recorded {want or 'nothing'}")
                    self._answer(599, MISMATCH)
                    return
                answer = exchange["response"]
                time.sleep(answer.get("delay_s", 0))
                payload = answer["body"]
                data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
                self._answer(answer["status"], data, answer.get("headers", {}))

            def _answer(self, status: int, data: bytes, headers: dict[str, str] | None = None) -> None:
                # A client that timed out has gone: that is the case under test, not an error here.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.send_response(status)
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_one

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

        self._server = Server(str(self.socket_path), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

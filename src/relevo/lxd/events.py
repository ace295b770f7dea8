"""LXD's event stream (`GET /1.0/events`): a websocket of JSON messages, read here with the standard
library over the same transport as every other call (the unix socket, or pinned HTTPS).

Only what the stream needs of RFC 6455 is here: the upgrade, unmasked frames from the server
(fragmented or not), a pong for each ping, a masked close. A lifecycle event names its instance in
`metadata.source` (`/1.0/instances/NAME`, perhaps with `?project=P`) and its project at the top level.
"""

from __future__ import annotations

import base64
import json
import os
import struct
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from relevo.lxd.errors import LXDUnreachableError
from relevo.lxd.transport import APIEndpoint

HANDSHAKE_TIMEOUT_S = 5.0
MAX_HEADER_BYTES = 64 * 1024
MAX_MESSAGE_BYTES = 4 * 1024 * 1024

OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class Socket(Protocol):
    """What the stream needs of a connected socket (a real one, or a recorded stream in tests)."""

    def sendall(self, data: bytes, /) -> None: ...

    def recv(self, size: int, /) -> bytes: ...

    def settimeout(self, value: float | None, /) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Lifecycle:
    """One lifecycle event: `action` (instance-stopped, instance-paused, ...) of instance `name`."""

    action: str
    name: str
    project: str


def lifecycle(message: dict[str, Any]) -> Lifecycle | None:
    """The instance lifecycle event a message is, or None (another type, another kind of object)."""
    if message.get("type") != "lifecycle":
        return None
    metadata = message.get("metadata") or {}
    source = str(metadata.get("source") or "")
    parsed = urllib.parse.urlsplit(source)
    prefix = "/1.0/instances/"
    if not parsed.path.startswith(prefix):
        return None
    name = urllib.parse.unquote(parsed.path.removeprefix(prefix))
    if not name or "/" in name:
        return None  # a sub-object (a snapshot, a backup, a file): not the instance itself
    query_project = urllib.parse.parse_qs(parsed.query).get("project", [""])[0]
    project = str(message.get("project") or query_project or "default")
    return Lifecycle(action=str(metadata.get("action") or ""), name=name, project=project)


def connect_socket(endpoint: APIEndpoint, timeout_s: float) -> Socket:
    """A socket connected to the daemon (TLS pinned for a remote), as the REST client connects."""
    conn = endpoint.connect(timeout_s)
    sock = conn.sock
    if sock is None:
        raise LXDUnreachableError(f"connect to LXD at {endpoint.name}", "no socket")
    conn.sock = None  # the socket is ours now: closing the HTTPConnection must not close it
    result: Socket = sock
    return result


class EventStream:
    """One websocket on `/1.0/events?type=...`; `receive` returns the messages that arrived."""

    def __init__(
        self,
        endpoint: APIEndpoint,
        *,
        types: tuple[str, ...] = ("lifecycle",),
        connect: Callable[[APIEndpoint, float], Socket] = connect_socket,
    ) -> None:
        self.endpoint = endpoint
        self._sock = connect(endpoint, HANDSHAKE_TIMEOUT_S)
        self._buffer = bytearray()
        self._fragments = bytearray()
        try:
            self._handshake(types)
        except BaseException:
            self._sock.close()
            raise

    def _handshake(self, types: tuple[str, ...]) -> None:
        params = {"type": ",".join(types)}
        if self.endpoint.project:
            params["project"] = self.endpoint.project
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET /1.0/events?{urllib.parse.urlencode(params)} HTTP/1.1\r\n"
            "Host: lxd\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        self._sock.settimeout(HANDSHAKE_TIMEOUT_S)
        self._sock.sendall(request.encode())
        while b"\r\n\r\n" not in self._buffer:
            if len(self._buffer) > MAX_HEADER_BYTES:
                raise self._broken("an endless answer to the websocket upgrade")
            self._fill()
        head, _, rest = bytes(self._buffer).partition(b"\r\n\r\n")
        self._buffer = bytearray(rest)
        status = head.split(b"\r\n", 1)[0].decode(errors="replace")
        if " 101 " not in f"{status} ":
            raise self._broken(f"the event stream was refused: {status}")

    def receive(self, timeout_s: float) -> list[dict[str, Any]]:
        """The messages that are complete within `timeout_s` ([] when none). Raises
        LXDUnreachableError once the connection is closed or broken."""
        messages: list[dict[str, Any]] = []
        self._sock.settimeout(timeout_s)
        while True:
            while (message := self._frame()) is not None:
                if message:
                    messages.append(message)
            if messages:
                return messages
            try:
                self._fill()
            except TimeoutError:
                return messages
            self._sock.settimeout(0.0001)  # after the first bytes: only what is already there

    def close(self) -> None:
        try:
            self._send(OP_CLOSE, struct.pack("!H", 1000))
        except OSError:
            pass
        finally:
            self._sock.close()

    # --- frames --------------------------------------------------------------------------------------
    def _fill(self) -> None:
        try:
            data = self._sock.recv(65536)
        except TimeoutError:
            raise
        except OSError as exc:
            raise self._broken(f"the event stream broke: {exc}") from exc
        if not data:
            raise self._broken("LXD closed the event stream")
        self._buffer += data

    def _frame(self) -> dict[str, Any] | None:
        """One frame out of the buffer: a message ({} for a control frame or a fragment), or None when
        the buffer does not hold a whole frame yet."""
        buf = self._buffer
        if len(buf) < 2:
            return None
        fin, opcode = buf[0] & 0x80, buf[0] & 0x0F
        masked, length, at = buf[1] & 0x80, buf[1] & 0x7F, 2
        if length == 126:
            if len(buf) < 4:
                return None
            length, at = struct.unpack_from("!H", buf, 2)[0], 4
        elif length == 127:
            if len(buf) < 10:
                return None
            length, at = struct.unpack_from("!Q", buf, 2)[0], 10
        if length > MAX_MESSAGE_BYTES:
            raise self._broken(f"a {length}-byte frame")
        mask = b""
        if masked:
            if len(buf) < at + 4:
                return None
            mask, at = bytes(buf[at : at + 4]), at + 4
        if len(buf) < at + length:
            return None
        payload = bytes(buf[at : at + length])
        del buf[: at + length]
        if mask:
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        if opcode == OP_PING:
            self._send(OP_PONG, payload)
            return {}
        if opcode == OP_CLOSE:
            raise self._broken("LXD closed the event stream")
        if opcode in (OP_TEXT, OP_BINARY, OP_CONTINUATION):
            self._fragments += payload
            if len(self._fragments) > MAX_MESSAGE_BYTES:
                raise self._broken("a message too large")
            if not fin:
                return {}
            text, self._fragments = bytes(self._fragments), bytearray()
            try:
                message = json.loads(text)
            except ValueError:
                return {}
            return message if isinstance(message, dict) else {}
        return {}  # a pong, or an opcode this stream has no use for

    def _send(self, opcode: int, payload: bytes) -> None:
        """A client frame: always masked (RFC 6455 5.3)."""
        mask = os.urandom(4)
        header = bytes([0x80 | opcode, 0x80 | len(payload)])  # control payloads are < 126 bytes
        body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self._sock.sendall(header + mask + body)

    def _broken(self, why: str) -> LXDUnreachableError:
        return LXDUnreachableError(f"read LXD's events at {self.endpoint.name}", why)

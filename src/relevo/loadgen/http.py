"""HTTP/1.1 on the wire, the minimum a load generator needs: encode a request once, parse responses fast.

The parser is incremental (bytes arrive in any split) and does the least work per response: one search
for the end of the head and one dict lookup of the head's bytes, since a server sends the same few heads
over and over; only a head not seen before costs a lower-casing and a few substring searches. Bodies
are counted, never kept. It knows Content-Length, chunked transfer coding, bodies that end with the
connection, and responses that have no body (HEAD, 204, 304, 1xx interim answers, which it skips).
"""

from __future__ import annotations

from relevo import __version__
from relevo.loadgen.plan import HttpRequest

USER_AGENT = f"relevo/{__version__}"
HEAD_END = b"\r\n\r\n"
CRLF = b"\r\n"
_CONTENT_LENGTH = b"\r\ncontent-length:"
_TRANSFER_ENCODING = b"\r\ntransfer-encoding:"
_CONNECTION = b"\r\nconnection:"
# Every valid status code as it appears on the wire, for a lookup in place of int() and a range check.
_STATUS = {str(code).encode(): code for code in range(100, 1000)}
# A response head's meaning, cached by its bytes: (status, close, served_by, body length or one of these).
Head = tuple[int, bool, str | None, int]
CHUNKED = -1
UNTIL_EOF = -2
# Heads remembered per count header. A server repeats a few heads (its Date changes once a second), so
# nearly every response is one dict lookup instead of a lower-casing and six searches of its head.
HEADS_MAX = 1024
_HEADS: dict[bytes, dict[bytes, Head]] = {}
# Methods whose requests carry a Content-Length even when empty (RFC 9110 asks for it on POST/PUT).
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class ProtocolError(Exception):
    """The peer sent something that is not an HTTP/1.x response."""


def encode_request(request: HttpRequest) -> bytes:
    """The request's bytes, built once per sampler and written as they are for every sample."""
    host = f"[{request.host}]" if ":" in request.host else request.host
    if request.port != 80:
        host = f"{host}:{request.port}"
    headers: dict[str, tuple[str, str]] = {}
    defaults = [("Host", host), ("User-Agent", USER_AGENT), ("Accept", "*/*")]
    if not request.keepalive:
        defaults.append(("Connection", "close"))
    # The user's headers replace defaults of the same name (case-insensitively), as curl's -H does.
    for name, value in (*defaults, *request.headers):
        headers[name.lower()] = (name, value)
    if request.body or request.method.upper() in _BODY_METHODS:
        headers["content-length"] = ("Content-Length", str(len(request.body)))
    lines = [f"{request.method} {request.path} HTTP/1.1"]
    lines += [f"{name}: {value}" for name, value in headers.values()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + request.body


def header_key(name: str) -> bytes:
    """What the parser searches for in a lower-cased head to find header `name` ("" never matches)."""
    return b"\r\n" + name.strip().lower().encode("latin-1") + b":" if name.strip() else b"\x00never\x00"


class ResponseParser:
    """Parses one response at a time; `feed` says when the response is complete.

    After completion: `status`, `received` (head and body bytes, as JMeter's "bytes"), `served_by` (the
    counted header's value) and `close` (the server will not take another request on this connection).
    """

    __slots__ = (
        "buf",
        "chunk_left",
        "chunked",
        "close",
        "heads",
        "no_body",
        "received",
        "remaining",
        "served_by",
        "served_key",
        "status",
        "trailers",
        "until_eof",
    )

    def __init__(self, served_key: bytes) -> None:
        self.served_key = served_key
        self.heads = _HEADS.setdefault(served_key, {})
        self.served_by: str | None = None
        self.close = False
        self.buf = b""
        self.chunked = False
        self.until_eof = False
        self.chunk_left = 0
        self.trailers = False
        self.reset(no_body=False)

    def reset(self, *, no_body: bool) -> None:
        """Get ready for the next response (`no_body`: it answers a HEAD request).

        Only what `_parse` does not set itself for every response is cleared here: this runs per request.
        """
        self.no_body = no_body
        self.status = 0
        self.received = 0
        self.remaining = 0
        if self.chunked or self.until_eof or self.buf:
            self.buf = b""
            self.chunked = False
            self.until_eof = False
            self.chunk_left = 0
            self.trailers = False

    @property
    def started(self) -> bool:
        return self.received > 0

    def feed(self, data: bytes) -> bool:
        """Take the next bytes from the connection; True once the response is complete.

        One method on purpose: it runs once per response, and a call more is a measurable cost.
        """
        self.received += len(data)
        if self.remaining > 0:
            # The common case after the head: counting Content-Length bytes down, nothing kept.
            self.remaining -= len(data)
            return self.remaining <= 0
        if self.status:
            if self.chunked:
                self.buf += data
                return self._chunks()
            return False  # the body ends when the connection does
        buf = self.buf + data if self.buf else data
        end = buf.find(HEAD_END)
        if end < 0:
            if len(buf) > 65536:
                raise ProtocolError("response head larger than 64 KiB")
            self.buf = buf
            return False
        head = buf[: end + 2]
        known = self.heads.get(head)
        if known is None:
            known = self._learn(head)
        status, self.close, self.served_by, length = known
        self.buf = b""
        if status < 200:
            # An interim answer (100 Continue, 103 Early Hints): the real response follows.
            rest = buf[end + 4 :]
            self.received -= len(rest)  # counted again by the call below
            return self.feed(rest) if rest else False
        self.status = status
        if self.no_body or status == 204 or status == 304:
            return True
        if length >= 0:
            self.remaining = length - (len(buf) - end - 4)
            return self.remaining <= 0
        if length == CHUNKED:
            self.chunked = True
            self.buf = buf[end + 4 :]
            return self._chunks()
        self.until_eof = True
        return False

    def _learn(self, head: bytes) -> Head:
        """What a head says (the slow path, once per distinct head), remembered for the next time."""
        # "HTTP/1.x NNN ": a table lookup converts and checks the code, three byte tests the rest, cheaply.
        status = _STATUS.get(head[9:12], 0)
        if not status or head[0] != 0x48 or head[5] != 0x31 or head[8] != 0x20:
            raise ProtocolError(f"not an HTTP/1.x status line: {head.split(CRLF, 1)[0][:60]!r}")
        lower = head.lower()
        if head[7] == 0x30:  # HTTP/1.0 closes unless it says keep-alive
            close = b"keep-alive" not in _value(lower, _CONNECTION)
        else:
            close = b"close" in _value(lower, _CONNECTION)
        served_by = None
        at = lower.find(self.served_key)
        if at >= 0:
            start = at + len(self.served_key)
            served_by = head[start : head.find(CRLF, start)].strip().decode("latin-1")
        # A Transfer-Encoding would override Content-Length (RFC 9112 6.3), but a server sending both is
        # broken: the length wins, as it always has here.
        at = lower.find(_CONTENT_LENGTH)
        if at >= 0:
            start = at + len(_CONTENT_LENGTH)
            length = _length(lower[start : lower.find(CRLF, start)])
        elif b"chunked" in _value(lower, _TRANSFER_ENCODING):
            length = CHUNKED
        else:
            length = UNTIL_EOF
            close = True
        known = (status, close, served_by, length)
        heads = self.heads
        if len(heads) >= HEADS_MAX:
            heads.clear()  # bounded: a server whose every head is new costs a parse each, not memory
        heads[head] = known
        return known

    def eof(self) -> bool:
        """The connection closed: True if that completes the response (a body delimited by the close)."""
        return self.until_eof and self.status > 0

    def _chunks(self) -> bool:
        buf = self.buf
        pos = 0
        done = False
        while True:
            if self.chunk_left:
                take = min(len(buf) - pos, self.chunk_left)
                pos += take
                self.chunk_left -= take
                if self.chunk_left:
                    break
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                break
            line = buf[pos:eol]
            pos = eol + 2
            if self.trailers:
                if not line:  # the empty line after the last chunk (and its trailers)
                    done = True
                    break
                continue
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise ProtocolError(f"bad chunk size line: {line[:40]!r}") from None
            if size == 0:
                self.trailers = True
            else:
                self.chunk_left = size + 2  # the chunk's data and the CRLF after it
        self.buf = buf[pos:]
        return done


def _length(raw: bytes) -> int:
    try:
        length = int(raw)
    except ValueError:
        raise ProtocolError(f"bad Content-Length: {raw[:40]!r}") from None
    if length < 0:
        raise ProtocolError(f"negative Content-Length: {length}")
    return length


def _value(lower_head: bytes, key: bytes) -> bytes:
    """The (lower-cased, stripped) value of the first header named by `key`, or b""."""
    at = lower_head.find(key)
    if at < 0:
        return b""
    start = at + len(key)
    return lower_head[start : lower_head.find(b"\r\n", start)].strip()

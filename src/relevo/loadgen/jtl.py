"""JMeter's CSV result files (.jtl): write them as JMeter 5.x does, read JMeter 2.13's and 5.x's.

A JTL row is one sample: `timeStamp` (start, epoch ms), `elapsed` (ms), `label`, `responseCode`, ...,
`success`, `bytes`, ... JMeter writes a header line by default; without one the columns are recognised
by their count (JMeter 2.13's 12 default columns, or 5.x's 17). Fields are quoted as JMeter's
CSVSaveService does: only when they hold the delimiter, a quote or a line break.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from relevo.errors import RelevoError
from relevo.loadgen.recorder import JAVA_EXCEPTION, NON_HTTP_CODE, NON_HTTP_MESSAGE, reason
from relevo.loadgen.stats import ErrorKind, RunStats, is_success
from relevo.safe_open import open_text

if TYPE_CHECKING:
    from relevo.loadgen.client import Sampler

# JMeter 5.x's default columns, in its order (jmeter.properties, jmeter.save.saveservice.*).
COLUMNS_5 = (
    "timeStamp",
    "elapsed",
    "label",
    "responseCode",
    "responseMessage",
    "threadName",
    "dataType",
    "success",
    "failureMessage",
    "bytes",
    "sentBytes",
    "grpThreads",
    "allThreads",
    "URL",
    "Latency",
    "IdleTime",
    "Connect",
)
# JMeter 2.13's defaults: no failureMessage, sentBytes, URL, IdleTime or Connect.
COLUMNS_2_13 = tuple(
    c for c in COLUMNS_5 if c not in {"failureMessage", "sentBytes", "URL", "IdleTime", "Connect"}
)
HEADERLESS = {len(COLUMNS_5): COLUMNS_5, len(COLUMNS_2_13): COLUMNS_2_13}
REQUIRED = ("timeStamp", "elapsed", "label", "success")

ERROR_TEXT = {
    ErrorKind.REFUSED: "Connection refused",
    ErrorKind.RESET: "Connection reset",
    ErrorKind.TIMEOUT: "Read timed out",
    ErrorKind.INCOMPLETE: "The target server failed to respond",
    ErrorKind.CONNECT: "No route to host",
    ErrorKind.PROTOCOL: "Invalid HTTP response",
}
# JMeter's exception names in "Non HTTP response code: <class>", mapped back to relevo's kinds.
EXCEPTION_KIND = {
    "ConnectException": ErrorKind.REFUSED,
    "HttpHostConnectException": ErrorKind.REFUSED,
    "SocketTimeoutException": ErrorKind.TIMEOUT,
    "ConnectTimeoutException": ErrorKind.TIMEOUT,
    "NoHttpResponseException": ErrorKind.INCOMPLETE,
    "ConnectionClosedException": ErrorKind.INCOMPLETE,
    "TruncatedChunkException": ErrorKind.INCOMPLETE,
    "NoRouteToHostException": ErrorKind.CONNECT,
    "UnknownHostException": ErrorKind.CONNECT,
    "BindException": ErrorKind.CONNECT,
    "ClientProtocolException": ErrorKind.PROTOCOL,
    "ProtocolException": ErrorKind.PROTOCOL,
}


class JtlError(RelevoError):
    exit_status = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class JtlSample:
    """One row of a JTL file; columns a file lacks keep these defaults."""

    timestamp_ms: int
    elapsed_ms: int
    label: str
    response_code: str = ""
    response_message: str = ""
    thread_name: str = ""
    data_type: str = "text"
    success: bool = True
    failure_message: str = ""
    bytes: int = 0
    sent_bytes: int = 0
    grp_threads: int = 0
    all_threads: int = 0
    url: str = ""
    latency_ms: int = 0
    idle_time_ms: int = 0
    connect_ms: int = 0

    @property
    def error_kind(self) -> str | None:
        """None for a success; else a relevo error kind, or the HTTP status code as text."""
        if self.success:
            return None
        code = self.response_code
        if code.startswith(NON_HTTP_CODE):
            exception = code[len(NON_HTTP_CODE) :].rsplit(".", 1)[-1]
            kind = EXCEPTION_KIND.get(exception)
            if kind is None and exception == "SocketException":
                kind = ErrorKind.RESET
            return kind.value if kind else exception
        if code.isdigit() and is_success(int(code)):
            return "assertion"  # a 2xx/3xx that a JMeter assertion failed
        return code or "error"


# Attribute of JtlSample for each column name.
_FIELD_OF = dict(zip(COLUMNS_5, (f.name for f in fields(JtlSample)), strict=True))
_INT_FIELDS = {f.name for f in fields(JtlSample) if f.type in ("int", int)}


def quote(text: str) -> str:
    """CSVSaveService's quoting: only when needed, doubling quotes inside."""
    if any(c in text for c in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text


class JtlWriter:
    """Streams samples to a JTL file in JMeter 5.x's default columns (memory stays flat)."""

    def __init__(self, out: TextIO, *, header: bool = True, epoch_delta_ns: int = 0) -> None:
        self.out = out
        # Added to a monotonic clock reading to get epoch nanoseconds (the engine's samples).
        self.epoch_delta_ns = epoch_delta_ns
        self._quoted: dict[str, str] = {}
        if header:
            out.write(",".join(COLUMNS_5) + "\n")

    @classmethod
    def open(cls, path: Path, *, header: bool = True, epoch_delta_ns: int = 0) -> JtlWriter:
        out = path.open("w", encoding="utf-8", newline="", buffering=1 << 20)
        return cls(out, header=header, epoch_delta_ns=epoch_delta_ns)

    def _q(self, text: str) -> str:
        quoted = self._quoted.get(text)
        if quoted is None:
            quoted = self._quoted[text] = quote(text)
        return quoted

    def write(self, sample: JtlSample) -> None:
        values = [getattr(sample, _FIELD_OF[c]) for c in COLUMNS_5]
        row = []
        for value in values:
            if isinstance(value, bool):
                row.append("true" if value else "false")
            elif isinstance(value, int):
                row.append(str(value))
            else:
                row.append(quote(value))
        self.out.write(",".join(row) + "\n")

    def sample(
        self,
        *,
        sampler: Sampler,
        thread: str,
        start_ns: int,
        end_ns: int,
        status: int,
        error_kind: ErrorKind | None,
        detail: str,
        received: int,
        latency_ns: int,
        connect_ns: int,
        grp_threads: int = 0,
        all_threads: int = 0,
        sent: int | None = None,
    ) -> None:
        """One sample from the engine, formatted directly (this runs once per request); `sent` is the
        bytes written, when not the whole request (0 for a connection that never opened)."""
        if error_kind is None:
            code = str(status)
            message = reason(status)
            success = "true" if 200 <= status < 400 else "false"
        else:
            code = NON_HTTP_CODE + JAVA_EXCEPTION[error_kind]
            message = NON_HTTP_MESSAGE + (detail or ERROR_TEXT[error_kind])
            success = "false"
        q = self._q
        # Rounded to the nearest ms: JMeter's ms are differences of truncated clock readings, unbiased.
        self.out.write(
            f"{(start_ns + self.epoch_delta_ns) // 1_000_000},{round((end_ns - start_ns) / 1e6)},"
            f"{q(sampler.label)},{q(code)},{q(message)},{q(thread)},text,{success},,{received},"
            f"{sampler.sent if sent is None else sent},{grp_threads},{all_threads},{q(sampler.url)},"
            f"{round(latency_ns / 1e6)},0,"
            f"{round(connect_ns / 1e6)}\n"
        )

    def close(self) -> None:
        self.out.close()


def _columns(first: list[str], path: Path) -> tuple[tuple[str, ...], bool]:
    """The file's columns, and whether the first row was the header naming them."""
    if first and first[0] == "timeStamp":
        missing = [c for c in REQUIRED if c not in first]
        if missing:
            raise JtlError(f"{path}: the header lacks {', '.join(missing)}")
        return tuple(first), True
    known = HEADERLESS.get(len(first))
    if known is None:
        raise JtlError(
            f"{path}: no header line, and {len(first)} columns match neither JMeter 5.x's default "
            f"({len(COLUMNS_5)}) nor 2.13's ({len(COLUMNS_2_13)}); save the file with a header "
            "(jmeter.save.saveservice.print_field_names=true)"
        )
    return known, False


def read_samples(path: Path) -> Iterator[JtlSample]:
    """Each row of a JTL CSV file, streamed (the file is never held in memory, nor any one line of it
    past MAX_LINE_CHARS); a binary file or an oversized field is a JtlError naming the line."""
    try:
        handle = open_text(path, encoding="utf-8", newline="")
    except OSError as exc:
        raise JtlError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        reader = csv.reader(_bounded_lines(handle, path))
        try:
            if handle.read(1) == "<":
                raise JtlError(f"{path} is an XML result file; relevo reads JMeter's CSV format")
            handle.seek(0)
            first = next(reader, None)
            if first is None:
                return
            columns, had_header = _columns(first, path)
            rows = reader if had_header else _chain(first, reader)
            for number, row in enumerate(rows, start=2 if had_header else 1):
                if not row:
                    continue
                yield _sample(columns, row, path, number)
        except UnicodeDecodeError:
            raise JtlError(
                f"{path}:{reader.line_num + 1}: not UTF-8 text: a binary file, not a JTL"
            ) from None
        except csv.Error as exc:
            what = "binary data (a NUL byte)" if "NUL" in str(exc) else str(exc)
            if "field larger than field limit" in str(exc):
                what = f"a field longer than {csv.field_size_limit()} characters"
            raise JtlError(f"{path}:{reader.line_num}: {what}; not a JMeter CSV result file") from None


# Longer lines than this are not JMeter's (its longest fields are URLs and response messages).
MAX_LINE_CHARS = 1 << 20


def _bounded_lines(handle: TextIO, path: Path) -> Iterator[str]:
    number = 0
    while True:
        line = handle.readline(MAX_LINE_CHARS + 1)
        if not line:
            return
        number += 1
        if len(line) > MAX_LINE_CHARS:
            raise JtlError(f"{path}:{number}: a line longer than {MAX_LINE_CHARS} characters; not a JTL")
        yield line


def _chain(first: list[str], rest: Iterator[list[str]]) -> Iterator[list[str]]:
    yield first
    yield from rest


def _sample(columns: tuple[str, ...], row: list[str], path: Path, line: int) -> JtlSample:
    if len(row) != len(columns):
        raise JtlError(f"{path}:{line}: {len(row)} fields where the header has {len(columns)}")
    values: dict[str, object] = {}
    for column, text in zip(columns, row, strict=True):
        name = _FIELD_OF.get(column)
        if name is None:
            continue  # a column JMeter can be told to add (Hostname, SampleCount, ...): not needed here
        if name == "success":
            values[name] = text.strip().lower() == "true"
        elif name in _INT_FIELDS:
            try:
                values[name] = int(text) if text else 0
            except ValueError:
                what = "timestamps in epoch ms" if name == "timestamp_ms" else "a whole number"
                raise JtlError(f"{path}:{line}: {column} is {text!r}, expected {what}") from None
        else:
            values[name] = text
    return JtlSample(**values)  # type: ignore[arg-type]


def read_stats(path: Path) -> RunStats:
    """A JTL file's samples folded into relevo's accumulators (two streaming passes, flat memory)."""
    origin_ms: int | None = None
    for sample in read_samples(path):
        if origin_ms is None or sample.timestamp_ms < origin_ms:
            origin_ms = sample.timestamp_ms
    stats = RunStats()
    if origin_ms is None:
        return stats
    for sample in read_samples(path):
        start_ns = sample.timestamp_ms * 1_000_000
        end_ns = start_ns + sample.elapsed_ms * 1_000_000
        kind = sample.error_kind
        stats.label(sample.label).add(
            start_ns=start_ns,
            end_ns=end_ns,
            code=sample.response_code,
            success=sample.success,
            received=sample.bytes,
            sent=sample.sent_bytes,
            error_kind=kind,
        )
        stats.series.add(
            (sample.timestamp_ms + sample.elapsed_ms - origin_ms) // 1000,
            elapsed_us=sample.elapsed_ms * 1000,
            error=not sample.success,
            received=sample.bytes,
        )
    return stats


def to_text(samples: list[JtlSample]) -> str:
    """Samples as JTL text (for tests and small exports)."""
    out = io.StringIO()
    writer = JtlWriter(out)
    for sample in samples:
        writer.write(sample)
    return out.getvalue()

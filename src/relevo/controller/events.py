"""The controller's journal: one JSON object a line in `events.jsonl`, appended, never rewritten.

Each line says when, which node, from what to what, why, and for a failover how long each part took
(detection, standby start, until the standby served). `relevo events` and `relevo status` read it.

Writing it never stops the controller: a journal that cannot be written (a full disk, a removed
directory) keeps its events in memory (bounded), says so once on stderr and in `relevo status`, and
writes them out, in order, as soon as it can. It is rotated past a size (events.jsonl -> .1).
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from relevo.errors import RelevoError


class EventKind(enum.StrEnum):
    HEALTH = "health"  # the controller's own probes changed a node's health
    FAILOVER = "failover"  # a standby took its primary's place in HAProxy
    FAILBACK = "failback"  # a primary got its traffic back
    DRAINED = "drained"  # a standby finished draining (or its bounded wait ran out)
    STANDBY_FAILED = "standby-failed"  # a standby could not serve: reported, retried after a backoff
    FAILOVER_STARTED = "failover-started"  # a primary is lost: its standby is on its way (in progress)
    OVERLOADED = "overloaded"  # answering, but slowly or after a timeout: reported, nothing done
    OPERATOR = "operator"  # a person changed a server's admin state (stats page, Runtime API): respected
    ACTION = "action"  # something the controller did, written once it succeeded
    ACTION_FAILED = "action-failed"  # an action failed (with the error); retried after a backoff
    CONTROLLER = "controller"  # the controller itself started, stopped or reloaded
    BALANCER = "balancer"  # a balancer of a pair was given the other's server states on its return
    VIP_MOVED = "vip-moved"  # a pair's shared address moved to the other balancer (keepalived)


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    kind: EventKind
    node: str
    from_: str
    to: str
    reason: str
    durations: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))

    def record(self, wall_time: float) -> dict[str, Any]:
        """The JSON object written for this event at `wall_time` (seconds since the epoch)."""
        return {
            "time": datetime.fromtimestamp(wall_time, UTC).isoformat(timespec="milliseconds"),
            "ts": round(wall_time, 4),
            "kind": self.kind.value,
            "node": self.node,
            "from": self.from_,
            "to": self.to,
            "reason": self.reason,
            "durations": {k: round(v, 4) for k, v in self.durations.items()},
        }


# Events kept in memory while the journal cannot be written; the oldest are dropped (and counted) past it.
BACKLOG_MAX = 10_000
DEFAULT_MAX_BYTES = 10_000_000


def _stderr(message: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        print(f"relevo: {message}", file=sys.stderr, flush=True)


class EventLog:
    """Appends events to a JSON-lines file; one `write` per line so concurrent readers see whole lines.
    `append` never raises: see the module's docstring."""

    def __init__(
        self,
        path: Path,
        *,
        wall_clock: Callable[[], float] = time.time,
        max_bytes: int = DEFAULT_MAX_BYTES,
        warn: Callable[[str], None] = _stderr,
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._wall_clock = wall_clock
        self._warn = warn
        self._lock = threading.Lock()
        self._backlog: deque[bytes] = deque()
        self.dropped = 0  # events lost because the backlog was full
        self.error: str | None = None  # why the journal cannot be written now (None: it can)

    @property
    def pending(self) -> int:
        """Events waiting in memory for the journal to be writable again."""
        return len(self._backlog)

    def append(self, event: Event) -> dict[str, Any]:
        record = event.record(self._wall_clock())
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        with self._lock:
            if len(self._backlog) >= BACKLOG_MAX:
                self._backlog.popleft()
                self.dropped += 1
            self._backlog.append(line)
            self._flush()
        return record

    def flush(self) -> bool:
        """Write what is waiting; True when nothing is left waiting."""
        with self._lock:
            self._flush()
            return not self._backlog

    def _flush(self) -> None:
        try:
            self._rotate()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            try:
                while self._backlog:
                    line = self._backlog[0]
                    written = os.write(fd, line)
                    if written != len(line):
                        # A short write (the disk filled mid-line): end the torn line so that readers
                        # skip it whole, and write the event again later.
                        os.write(fd, b"\n")
                        raise OSError("short write (no space left?)")
                    self._backlog.popleft()
            finally:
                os.close(fd)
        except OSError as exc:
            error = f"cannot write the journal {self.path}: {exc.strerror or exc}"
            if error != self.error:
                self._warn(f"{error}; failover goes on, {len(self._backlog)} events kept in memory")
            self.error = error
            return
        if self.error is not None:
            lost = f" ({self.dropped} events lost)" if self.dropped else ""
            self._warn(f"the journal {self.path} is written again{lost}")
            self.error = None

    def _rotate(self) -> None:
        """Past `max_bytes`, the journal becomes events.jsonl.1 (replacing the previous one)."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return
        if self.max_bytes > 0 and size >= self.max_bytes:
            self.path.replace(rotated(self.path))


def rotated(path: Path) -> Path:
    return path.with_name(path.name + ".1")


def _parse(line: str) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None  # a line cut short by a crash mid-write: skip it, keep the rest
    return record if isinstance(record, dict) else None


def read_events(
    path: Path, n: int | None = None, *, keep: Callable[[dict[str, Any]], bool] | None = None
) -> list[dict[str, Any]]:
    """The last `n` events (all when None) that `keep` accepts, oldest first; [] without a journal."""
    if n is not None and n <= 0:
        return []
    found: deque[dict[str, Any]] = deque(maxlen=n)
    for source in (rotated(path), path):  # the rotated part first: it is older
        try:
            fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)  # never through a link
            with os.fdopen(fd, encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    record = _parse(line)
                    if record is not None and (keep is None or keep(record)):
                        found.append(record)
        except FileNotFoundError:
            continue
        except OSError as exc:  # a symbolic link (ELOOP) or worse: not a journal of ours
            raise RelevoError(f"cannot read the journal {source}: {exc.strerror}") from None
    return list(found)


def follow_events(
    path: Path, *, stop: threading.Event, poll_s: float = 0.2, from_start: bool = False
) -> Iterator[dict[str, Any]]:
    """Yield events as they are appended until `stop` is set; starts at the end unless `from_start`."""
    offset = 0
    if not from_start:
        with contextlib.suppress(FileNotFoundError):
            offset = path.stat().st_size
    partial = b""
    while not stop.is_set():
        try:
            size = path.stat().st_size
            if size < offset:  # the journal was removed and started again
                offset, partial = 0, b""
            with os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), "rb") as handle:
                handle.seek(offset)
                chunk = handle.read()
        except FileNotFoundError:
            chunk = b""
        offset += len(chunk)
        *lines, partial = (partial + chunk).split(b"\n")
        for line in lines:
            if (record := _parse(line.decode(errors="replace"))) is not None:
                yield record
        if not lines:
            stop.wait(poll_s)

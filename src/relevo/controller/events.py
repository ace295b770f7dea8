"""The controller's journal: one JSON object a line in `events.jsonl`, appended, never rewritten.

Each line says when, which node, from what to what, why, and for a failover how long each part took
(detection, standby start, until the standby served). `relevo events` and `relevo status` read it
through journal.py.

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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

# Reading is journal.py's (re-exported here for the callers that import it from events).
from relevo.controller.journal import follow_events as follow_events
from relevo.controller.journal import read_events as read_events
from relevo.controller.journal import rotated


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

"""The controller's journal: one JSON object a line in `events.jsonl`, appended, never rewritten.

Each line says when, which node, from what to what, why, and for a failover how long each part took
(detection, standby start, until the standby served). `relevo events` and `relevo status` read it.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any


class EventKind(enum.StrEnum):
    HEALTH = "health"  # the controller's own probes changed a node's health
    FAILOVER = "failover"  # a standby took its primary's place in HAProxy
    FAILBACK = "failback"  # a primary got its traffic back
    DRAINED = "drained"  # a standby finished draining (or its bounded wait ran out)
    STANDBY_FAILED = "standby-failed"  # a standby could not serve: reported, retried after a backoff
    ACTION = "action"  # something the controller did: a start, a stop, a Runtime API command
    ERROR = "error"  # an action failed; retried with a backoff
    CONTROLLER = "controller"  # the controller itself started or stopped


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


class EventLog:
    """Appends events to a JSON-lines file; one `write` per line so concurrent readers see whole lines."""

    def __init__(self, path: Path, *, wall_clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._wall_clock = wall_clock
        self._lock = threading.Lock()

    def append(self, event: Event) -> dict[str, Any]:
        record = event.record(self._wall_clock())
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        return record


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
    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                record = _parse(line)
                if record is not None and (keep is None or keep(record)):
                    found.append(record)
    except FileNotFoundError:
        return []
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
            with path.open("rb") as handle:
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

"""A run in progress, told as it happens to whoever watches the cluster (the dashboard): one JSON line
per progress report and per fault, in a file the watcher follows as it follows the journal.

    {"kind": "run", "t": 1765071234.5, "what": "bench", "pid": 4242}          a run begins (new file)
    {"kind": "point", "t": ..., "rps": 812.0, "errors": 0.0, "p50_ms": 1.9, "p99_ms": 7.4, "n": 406}
    {"kind": "marker", "t": ..., "label": "kill web1", "action": "crash", "end": null}
    {"kind": "end", "t": ...}

A point's rates are the load generator's own: responses and failed samples per second since the previous
point, and p50/p99 of the responses its workers reported in the last second (`n` of them: the engine's
RecentLatency), timed from send to answer by the generator, which is what the users of the cluster saw.
Each run begins a new file (a new inode: the follower starts over); writing is best effort, since a
watcher's file that cannot be written must not fail the run it describes.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from relevo.loadgen.engine import LoadProgress, ProgressCallback


class LiveFeed:
    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        self._fd: int | None = None
        self._last: tuple[float, int, int] | None = None  # (t, done, failed) at the previous point

    def begin(self, what: str) -> None:
        """A new run: a fresh file (replacing the last run's) that starts with the run's line."""
        self.close()
        self._last = None
        scratch = self.path.with_name(self.path.name + ".new")
        with contextlib.suppress(OSError):
            scratch.unlink(missing_ok=True)
            fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            scratch.replace(self.path)
            self._fd = fd
        self._write({"kind": "run", "what": what, "pid": os.getpid()})

    def progress(self, progress: LoadProgress) -> None:
        """A point from a progress report (the engine's callback): rates since the previous one."""
        now = self.clock()
        last, self._last = self._last, (now, progress.done, progress.failed)
        if last is None or now <= last[0]:
            return
        span = now - last[0]
        recent = progress.recent
        self._write(
            {
                "kind": "point",
                "rps": round(max(0, progress.done - last[1]) / span, 1),
                "errors": round(max(0, progress.failed - last[2]) / span, 1),
                "p50_ms": _ms(recent.p50_ms) if recent else None,
                "p99_ms": _ms(recent.p99_ms) if recent else None,
                "n": recent.count if recent else None,
            },
            now,
        )

    def marker(self, label: str, action: str, *, at: float, end: float | None = None) -> None:
        """A fault the run applied at `at` (epoch seconds), healed at `end` when it lasted."""
        self._write({"kind": "marker", "label": label, "action": action, "end": end}, at)

    def end(self) -> None:
        self._write({"kind": "end"})
        self.close()

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def tee(self, callback: ProgressCallback | None) -> ProgressCallback:
        """A progress callback that feeds this and then calls `callback` (the terminal's line)."""

        def both(progress: LoadProgress) -> None:
            self.progress(progress)
            if callback is not None:
                callback(progress)

        return both

    def _write(self, record: dict[str, Any], t: float | None = None) -> None:
        if self._fd is None:
            return
        line = json.dumps({**record, "t": round(self.clock() if t is None else t, 3)}) + "\n"
        try:
            os.write(self._fd, line.encode())  # one write per line: a follower never sees half of one
        except OSError:
            self.close()


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 3)

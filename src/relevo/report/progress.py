"""The live progress line of a run, on stderr, so that stdout stays clean for the table or JSON.

On a terminal it is one line rewritten in place; elsewhere (a log file, CI) a plain line every few
seconds when asked for, since carriage returns make logs unreadable.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from relevo.loadgen.engine import Progress

PLAIN_EVERY_S = 5.0


def progress_text(progress: Progress, rate: float) -> str:
    """One line: samples, current rate, errors, active users, elapsed / planned."""
    pct = 100.0 * progress.failed / progress.done if progress.done else 0.0
    parts = [
        f"{progress.done:,} samples" + (f" of {progress.expected:,}" if progress.expected else ""),
        f"{rate:,.0f}/s",
        f"{progress.failed:,} errors ({pct:.2f}%)",
        f"{progress.active:,} active",
    ]
    elapsed = f"{progress.elapsed_s:.1f}s"
    if progress.duration_s:
        elapsed += f" of {progress.duration_s:g}s"
    parts.append(elapsed)
    return "  ".join(parts)


class ProgressLine:
    """A callable for `engine.run(on_progress=...)`."""

    def __init__(self, out: TextIO | None = None, *, live: bool | None = None) -> None:
        self.out = out or sys.stderr
        self.live = self.out.isatty() if live is None else live
        self._last_done = 0
        self._last_t = time.monotonic()
        self._last_plain = 0.0
        self._shown = False

    def __call__(self, progress: Progress) -> None:
        now = time.monotonic()
        span = now - self._last_t
        rate = (progress.done - self._last_done) / span if span > 0 else 0.0
        self._last_done, self._last_t = progress.done, now
        line = progress_text(progress, rate)
        if self.live:
            self.out.write("\r\x1b[K" + line)
            self._shown = True
        elif now - self._last_plain >= PLAIN_EVERY_S:
            self._last_plain = now
            self.out.write(line + "\n")
        self.out.flush()

    def clear(self) -> None:
        """Remove the live line before the report is printed."""
        if self._shown:
            self.out.write("\r\x1b[K")
            self.out.flush()
            self._shown = False

"""A run's progress, on stderr, so that stdout stays clean for the table or JSON.

On a terminal it is one line rewritten in place. Elsewhere (a log file, CI) carriage returns make logs
unreadable, so a plain line every `interval_s` (5 s by default), like JMeter's non-GUI summariser: samples
so far, the rate since the last line, errors and the 99th percentile so far.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from relevo.loadgen.engine import Progress

PLAIN_EVERY_S = 5.0


def progress_text(progress: Progress, rate: float) -> str:
    """One line: samples, current rate, errors, p99 so far, active users, elapsed / planned."""
    pct = 100.0 * progress.failed / progress.done if progress.done else 0.0
    parts = [
        f"{progress.done:,} samples" + (f" of {progress.expected:,}" if progress.expected else ""),
        f"{rate:,.0f}/s",
        f"{progress.failed:,} errors ({pct:.2f}%)",
    ]
    if progress.p99_ms is not None:
        parts.append(f"p99 {progress.p99_ms:,.1f} ms")
    parts.append(f"{progress.active:,} active")
    elapsed = f"{progress.elapsed_s:.1f}s"
    if progress.duration_s:
        elapsed += f" of {progress.duration_s:g}s"
    parts.append(elapsed)
    return "  ".join(parts)


class ProgressLine:
    """A callable for `engine.run(on_progress=...)`."""

    def __init__(
        self, out: TextIO | None = None, *, live: bool | None = None, interval_s: float = PLAIN_EVERY_S
    ) -> None:
        self.out = out or sys.stderr
        self.live = self.out.isatty() if live is None else live
        self.interval_s = interval_s
        self._last_done = 0
        self._last_t = time.monotonic()
        self._last_plain = time.monotonic()
        self._plain_done = 0
        self._shown = False

    def __call__(self, progress: Progress) -> None:
        now = time.monotonic()
        if self.live:
            span = now - self._last_t
            rate = (progress.done - self._last_done) / span if span > 0 else 0.0
            self._last_done, self._last_t = progress.done, now
            self.out.write("\r\x1b[K" + progress_text(progress, rate))
            self._shown = True
        elif now - self._last_plain >= self.interval_s:
            # The rate over the whole interval since the last line, as the summariser's "summary +".
            rate = (progress.done - self._plain_done) / (now - self._last_plain)
            self._last_plain, self._plain_done = now, progress.done
            self.out.write(progress_text(progress, rate) + "\n")
        self.out.flush()

    def clear(self) -> None:
        """Remove the live line before the report is printed."""
        if self._shown:
            self.out.write("\r\x1b[K")
            self.out.flush()
            self._shown = False

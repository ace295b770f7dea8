"""A load run's progress, on stderr, so that stdout stays clean for the table or JSON.

On a terminal it is one line rewritten in place, cut to fit the terminal's width (less one column, so that
no terminal wraps it: a wrapped line leaves a stale copy of every update above the new one). Elsewhere (a
log file, CI) carriage returns make logs unreadable, so a plain line every `interval_s` (5 s by default),
like JMeter's non-GUI summariser, whole (a pipe never folds a line): samples so far, the rate since the
last line, errors and the 99th percentile so far.

One `ProgressLine` per run: its rate is the difference of one run's counters. Should it be handed a new
run's counters anyway, it starts over rather than show a negative rate.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO

from relevo.loadgen.engine import LoadProgress

PLAIN_EVERY_S = 5.0
# When the terminal's width cannot be read.
DEFAULT_COLUMNS = 80


def progress_parts(progress: LoadProgress, rate: float) -> list[tuple[int, str]]:
    """The line's parts, each with its rank: when the line is too wide, the highest rank goes first."""
    pct = 100.0 * progress.failed / progress.done if progress.done else 0.0
    parts = [
        (0, f"{progress.done:,} samples" + (f" of {progress.expected:,}" if progress.expected else "")),
        (1, f"{max(rate, 0.0):,.0f}/s"),
        (0, f"{progress.failed:,} errors ({pct:.2f}%)"),
    ]
    if progress.p99_ms is not None:
        parts.append((3, f"p99 {progress.p99_ms:,.1f} ms"))
    parts.append((4, f"{progress.active:,} active"))
    elapsed = f"{progress.elapsed_s:.1f}s"
    if progress.duration_s:
        elapsed += f" of {progress.duration_s:g}s"
    parts.append((2, elapsed))
    return parts


def fit(parts: list[tuple[int, str]], width: int) -> str:
    """The parts joined, dropping the highest-ranked ones until the line fits `width` (then cut)."""
    kept = list(parts)
    while True:
        text = "  ".join(p for _, p in kept)
        if len(text) <= width or len(kept) == 1:
            break
        drop = max(range(len(kept)), key=lambda i: (kept[i][0], i))
        if kept[drop][0] == 0:
            break
        del kept[drop]
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def progress_text(progress: LoadProgress, rate: float, width: int | None = None) -> str:
    """One line: samples, current rate, errors, p99 so far, active users, elapsed / planned."""
    parts = progress_parts(progress, rate)
    return "  ".join(p for _, p in parts) if width is None else fit(parts, width)


class ProgressLine:
    """A callable for one run's `engine.run(on_progress=...)`."""

    def __init__(
        self,
        out: TextIO | None = None,
        *,
        live: bool | None = None,
        interval_s: float = PLAIN_EVERY_S,
        columns: int | None = None,
    ) -> None:
        self.out = out or sys.stderr
        self.live = self.out.isatty() if live is None else live
        self.interval_s = interval_s
        self._columns = columns  # None: the terminal's width at each update (it may be resized)
        self._start(time.monotonic())
        self._shown = False

    def _start(self, now: float) -> None:
        self._last_done = 0
        self._last_t = now
        self._last_plain = now
        self._plain_done = 0

    def columns(self) -> int:
        if self._columns is not None:
            return self._columns
        try:
            return os.get_terminal_size(self.out.fileno()).columns or DEFAULT_COLUMNS
        except (OSError, ValueError, AttributeError):
            return DEFAULT_COLUMNS

    def __call__(self, progress: LoadProgress) -> None:
        now = time.monotonic()
        if progress.done < max(self._last_done, self._plain_done):
            self._start(now)  # another run's counters: its rate starts from its own zero
        if self.live:
            span = now - self._last_t
            rate = (progress.done - self._last_done) / span if span > 0 else 0.0
            self._last_done, self._last_t = progress.done, now
            self.out.write("\r\x1b[K" + progress_text(progress, rate, self.columns() - 1))
            self._shown = True
        elif now - self._last_plain >= self.interval_s:
            # The rate over the whole interval since the last line, as the summariser's "summary +".
            rate = (progress.done - self._plain_done) / (now - self._last_plain)
            self._last_plain, self._plain_done = now, progress.done
            self._last_done = progress.done
            self.out.write(progress_text(progress, rate) + "\n")
        self.out.flush()

    def clear(self) -> None:
        """Remove the live line before the report (or another line) is printed."""
        if self._shown:
            self.out.write("\r\x1b[K")
            self.out.flush()
            self._shown = False

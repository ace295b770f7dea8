"""Progress as a person sees it: `relevo bench` under a pseudo-terminal 80 columns wide, its output
replayed through a small terminal model (autowrap at the width, carriage return, erase to end of line)."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable

from relevo.loadgen.engine import LoadProgress
from relevo.report.progress import ProgressLine

from ..loadgen.conftest import Behaviour, Server, answer

COLUMNS = 80


class Screen:
    """What a terminal of `columns` shows after some output: text lines, autowrap, \\r, \\n, ESC[K."""

    def __init__(self, columns: int) -> None:
        self.columns = columns
        self.lines: list[list[str]] = [[]]
        self.row = 0
        self.col = 0

    def feed(self, text: str) -> None:
        i = 0
        while i < len(text):
            ch = text[i]
            if text.startswith("\x1b[K", i):
                del self.lines[self.row][self.col :]
                i += 3
                continue
            if ch == "\x1b":  # another escape (colour): skip to its final letter
                i += 1
                while i < len(text) and not text[i].isalpha():
                    i += 1
                i += 1
                continue
            if ch == "\r":
                self.col = 0
            elif ch == "\n":
                self.newline()
            else:
                if self.col == self.columns:  # autowrap: the next character starts a new line
                    self.newline()
                line = self.lines[self.row]
                line.extend(" " * (self.col - len(line)))
                if self.col < len(line):
                    line[self.col] = ch
                else:
                    line.append(ch)
                self.col += 1
            i += 1

    def newline(self) -> None:
        self.row += 1
        self.col = 0
        if self.row == len(self.lines):
            self.lines.append([])

    def text(self) -> list[str]:
        return ["".join(line).rstrip() for line in self.lines]


def run_in_terminal(argv: list[str], columns: int, timeout_s: float = 60.0) -> tuple[int, str]:
    """Run `argv` with stderr on a pseudo-terminal `columns` wide (stdout elsewhere, as with `> file`);
    returns the exit status and everything written to the terminal."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # the terminal's other end closed: the command ended
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        status = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()  # our own child, by its PID
            proc.wait()
        os.close(master)
    return status, b"".join(chunks).decode("utf-8", "replace")


def test_bench_progress_fits_80_columns_and_leaves_no_stale_line(
    serve: Callable[[Behaviour], Server],
) -> None:
    """A run whose full progress line is wider than 80 columns (100 % errors, five-digit counts): every
    update fits in 79 columns, so the terminal never wraps it, and once the run ends nothing is left on
    the screen (a wrapped update used to leave a stale copy per refresh)."""
    server = serve(answer(503))
    argv = [sys.executable, "-m", "relevo", "bench", server.url, "--rate", "10000", "-d", "2s", "-w", "1"]
    status, written = run_in_terminal(argv, COLUMNS)
    assert status == 0, written
    updates = [u for u in written.split("\r\x1b[K") if u]
    assert len(updates) >= 2, written
    assert max(len(u) for u in updates) <= COLUMNS - 1, max(updates, key=len)
    assert any("errors (100.00%)" in u for u in updates)
    screen = Screen(COLUMNS)
    screen.feed(written)
    assert [line for line in screen.text() if line] == [], screen.text()


def test_a_new_run_never_shows_a_negative_rate() -> None:
    """A line handed a second run's counters (lower than the first's) starts over: no negative rate."""
    import io

    out = io.StringIO()
    line = ProgressLine(out, live=True, columns=COLUMNS)
    for done in (1000, 5000, 9000, 100, 900):
        line(LoadProgress(elapsed_s=1.0, done=done, failed=0, active=1, expected=None, duration_s=None))
    assert "-" not in out.getvalue().replace("\x1b[K", ""), out.getvalue()

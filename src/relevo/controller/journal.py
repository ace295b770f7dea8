"""Reading the controller's journal (`events.jsonl` and its rotated `events.jsonl.1`), written by
`events.EventLog`.

The journal is read by `relevo status`, `relevo events` and the scenarios while the controller appends to
it, after crashes, full disks and hands that edited it. So the reader trusts nothing: what it cannot use it
skips and says so (in `Journal.problems`), and it never fails the command that reads it.
- A journal that is not a regular file (a directory, a FIFO, a symbolic link) is skipped, never opened
  for reading in a way that could block.
- A line that is not an event (not JSON, or JSON of the wrong shape) is skipped; a line torn by a crash
  mid-write runs into the next event (no newline between): that event, which starts at the line's last
  `{"time":`, is kept.
- The last N events are read from the end of the file, backwards, block by block: the cost is the
  events read, not the file's size. A line longer than `LINE_MAX_BYTES` is skipped without being held
  in memory, and no more than `SCAN_MAX_BYTES` of a file are read (more than relevo ever writes).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from relevo.model import JOURNAL_MAX_BYTES_HIGH

# An event is a few hundred bytes; a reason carrying a command's stderr tail a few KiB.
LINE_MAX_BYTES = 64 * 1024
# The most relevo writes in one file: the rotation size plus the events kept in memory meanwhile.
SCAN_MAX_BYTES = JOURNAL_MAX_BYTES_HIGH + 16 * 1024 * 1024
BLOCK_BYTES = 64 * 1024
# Every record EventLog writes starts so (json.dumps keeps "time" first); inside a string it would be
# escaped, so in a line it starts an event.
RECORD_START = b'{"time":'
# How many problems a reading keeps word of (their count is always exact).
PROBLEMS_SHOWN = 5

Record = dict[str, Any]
Keep = Callable[[Record], bool]

# Each field of an event, and the types its value may have.
_TEXT_FIELDS = ("time", "kind", "node", "from", "to", "reason")


def rotated(path: Path) -> Path:
    """Where the journal goes when it is rotated (the older part)."""
    return path.with_name(path.name + ".1")


@dataclass(slots=True)
class Journal:
    """What a reading found: the events, oldest first, and what was skipped, in words."""

    events: list[Record] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    skipped_lines: int = 0

    def _problem(self, text: str) -> None:
        if len(self.problems) < PROBLEMS_SHOWN:
            self.problems.append(text)


def shape_error(record: object) -> str | None:
    """Why `record` is not an event relevo wrote (None: it is one)."""
    if not isinstance(record, dict):
        return "not a JSON object"
    for name in _TEXT_FIELDS:
        if name not in record:
            return f'no "{name}"'
        if not isinstance(record[name], str):
            return f'"{name}" is not text'
    ts = record.get("ts")
    if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts):
        return '"ts" is not a number of seconds'
    durations = record.get("durations")
    if not isinstance(durations, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        for v in durations.values()
    ):
        return '"durations" is not an object of numbers'
    return None


def parse_line(line: bytes) -> tuple[Record | None, str | None]:
    """One journal line: the event, or None and why it is not one. A line torn by a crash that ran into
    the next event gives that event."""
    record, why = _decode(line)
    if record is not None:
        return record, None
    start = line.rfind(RECORD_START)
    if start > 0:
        tail, _ = _decode(line[start:])
        if tail is not None:
            return tail, None
    return None, why


def _decode(line: bytes) -> tuple[Record | None, str | None]:
    try:
        record = json.loads(line.decode("utf-8", errors="replace"))
    except ValueError:
        return None, "not JSON (a line cut short?)"
    except RecursionError:  # JSON nested deeper than the interpreter goes
        return None, "not an event (nested too deep)"
    why = shape_error(record)
    return (record, None) if why is None else (None, why)


def read_journal(path: Path, n: int | None = None, *, keep: Keep | None = None) -> Journal:
    """The last `n` events (all when None) that `keep` accepts, oldest first, from `path` and its rotated
    part; a missing journal has none. Never raises for what the files hold: see the module's docstring."""
    journal = Journal()
    if n is not None and n <= 0:
        return journal
    newest_first: list[Record] = []
    for source in (path, rotated(path)):  # the current part first: reading goes backwards in time
        if n is not None and len(newest_first) >= n:
            break
        _read_backwards(source, n, keep, newest_first, journal)
    newest_first.reverse()
    journal.events = newest_first
    return journal


def read_events(path: Path, n: int | None = None, *, keep: Keep | None = None) -> list[Record]:
    """`read_journal`'s events alone, for readers with nowhere to say what was skipped."""
    return read_journal(path, n, keep=keep).events


def _open_regular(source: Path, journal: Journal) -> int | None:
    """A read-only descriptor of the journal file `source`, or None (missing, or said why not)."""
    try:
        # Never through a symbolic link; O_NONBLOCK: a FIFO put there does not block the open.
        fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        what = "a symbolic link" if exc.errno == 40 else exc.strerror
        journal._problem(f"the journal {source} cannot be read ({what}): skipped")
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        journal._problem(f"the journal {source} is not a regular file (a directory, FIFO or device): skipped")
        return None
    return fd


def _read_backwards(source: Path, n: int | None, keep: Keep | None, out: list[Record], j: Journal) -> None:
    """Adds to `out`, newest first, the events of `source` that `keep` accepts until `out` holds `n`."""
    fd = _open_regular(source, j)
    if fd is None:
        return
    try:
        for line in _lines_backwards(fd, source, j):
            if line is None:  # a line too long to be an event
                _skip(j, source, f"a line longer than {LINE_MAX_BYTES} bytes")
                continue
            if not line.strip():
                continue
            record, why = parse_line(line)
            if record is None:
                _skip(j, source, f"{why}: {_excerpt(line)}")
            elif keep is None or keep(record):
                out.append(record)
                if n is not None and len(out) >= n:
                    return
    except OSError as exc:
        j._problem(f"the journal {source} cannot be read ({exc.strerror}): the rest of it skipped")
    finally:
        os.close(fd)


def _skip(journal: Journal, source: Path, why: str) -> None:
    journal.skipped_lines += 1
    journal._problem(f"{source}: a line skipped, {why}")


def _excerpt(line: bytes) -> str:
    text = line.decode("utf-8", errors="replace").strip()
    return repr(text if len(text) <= 60 else text[:60] + "…")


def _lines_backwards(fd: int, source: Path, journal: Journal) -> Iterator[bytes | None]:
    """The file's lines, last first (None for one longer than LINE_MAX_BYTES), reading at most
    SCAN_MAX_BYTES from its end."""
    end = os.fstat(fd).st_size
    floor = max(0, end - SCAN_MAX_BYTES)
    pos = end
    partial = b""  # the start of the line being assembled (its end was read first)
    overlong = False  # the line being assembled is past LINE_MAX_BYTES: its bytes are dropped
    while pos > floor:
        size = min(BLOCK_BYTES, pos - floor)
        pos -= size
        block = os.pread(fd, size, pos)
        if len(block) < size:  # the file shrank under us (it was rotated): what was read stands
            return
        pieces = block.split(b"\n")
        # pieces[-1] continues the line assembled so far; each earlier piece ends a line.
        for piece in reversed(pieces[1:]):
            if overlong:
                yield None
            else:
                line = piece + partial
                yield None if len(line) > LINE_MAX_BYTES else line
            partial, overlong = b"", False
        if not overlong:
            partial = pieces[0] + partial
            if len(partial) > LINE_MAX_BYTES:
                partial, overlong = b"", True
    if pos > 0:
        journal._problem(
            f"the journal {source} is larger than a journal relevo writes: only its last {SCAN_MAX_BYTES} "
            "bytes were read"
        )
        return  # the line at the cut is incomplete
    if overlong:
        yield None
    elif partial:
        yield partial


def follow_events(
    path: Path,
    *,
    stop: threading.Event,
    poll_s: float = 0.2,
    from_start: bool = False,
    warn: Callable[[str], None] | None = None,
) -> Iterator[Record]:
    """Yield events as they are appended until `stop` is set; starts at the end unless `from_start`.
    What cannot be used is skipped and, once per kind of trouble, given to `warn`."""
    said: set[str] = set()

    def tell(text: str, detail: str = "") -> None:
        if warn is not None and text not in said:
            said.add(text)
            warn(text + detail)

    offset = 0
    if not from_start:
        with contextlib.suppress(OSError):
            offset = path.stat().st_size
    partial = b""
    while not stop.is_set():
        chunk = b""
        probe = Journal()
        fd = _open_regular(path, probe)
        for problem in probe.problems:
            tell(problem)
        if fd is not None:
            try:
                size = os.fstat(fd).st_size
                if size < offset:  # the journal was rotated or removed, and started again
                    offset, partial = 0, b""
                chunk = os.pread(fd, min(size - offset, 4 * LINE_MAX_BYTES), offset)
            except OSError as exc:
                tell(f"the journal {path} cannot be read ({exc.strerror})")
            finally:
                os.close(fd)
        offset += len(chunk)
        *lines, partial = (partial + chunk).split(b"\n")
        if len(partial) > LINE_MAX_BYTES:
            tell(f"{path}: a line longer than {LINE_MAX_BYTES} bytes skipped")
            partial = b""
        for line in lines:
            if not line.strip():
                continue
            record, why = parse_line(line)
            if record is None:
                tell(f"{path}: a line skipped, {why}", f": {_excerpt(line)}")
            else:
                yield record
        if not lines:
            stop.wait(poll_s)


def describe(journal: Journal) -> list[str]:
    """What a reading skipped, as lines for people: the first problems, and how many lines in all."""
    lines = list(journal.problems)
    if journal.skipped_lines > PROBLEMS_SHOWN:
        lines.append(f"{journal.skipped_lines} lines of the journal skipped in all")
    return lines

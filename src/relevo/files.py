"""Small file habits shared by every module that keeps state on disk."""

from __future__ import annotations

import os
from pathlib import Path


def read_or_empty(path: Path) -> str:
    """The file's text, or "" when it is missing or unreadable (a pid file not written yet, a log)."""
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def tail(path: Path, lines: int = 12) -> str:
    """The last lines of a log, for an error message."""
    return "\n".join(read_or_empty(path).splitlines()[-lines:])


def write_atomic(path: Path, text: str, *, mode: int = 0o644) -> None:
    """Replace `path` with `text` in one step: a reader never sees half a file. The new file is created
    with `mode`, so a private one is never readable by others, even briefly."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    tmp.replace(path)

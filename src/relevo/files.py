"""Small file habits shared by every module that keeps state on disk.

relevo often runs as root in a directory other users can write to (a topology beside a web site, in
/tmp): nothing in the state directory is trusted unless relevo made it. The directory must be ours and
closed to others, and no file in it is ever reached through a symbolic link (O_NOFOLLOW).
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from relevo import anchor
from relevo.errors import RelevoError
from relevo.strict_modes import unsafe_ancestor

# Enough for any log tail, pid file or state file relevo reads back; more is not ours.
READ_LIMIT_BYTES = 4 << 20


class UnsafeStateError(RelevoError):
    """The state directory (or something in it) is not ours to trust: refused before anything runs."""

    exit_status = 2


class StateWriteError(RelevoError, OSError):
    """A state file could not be written (a full disk, a read-only file system): nothing half-written is
    left behind. Also an OSError, so that code which tolerates a failed write keeps doing so."""

    def __init__(self, path: Path, exc: OSError) -> None:
        self.message = f"cannot write {anchor.real(path)}: {exc.strerror or exc}"
        RelevoError.__init__(self, self.message)
        self.errno = exc.errno
        self.strerror = exc.strerror
        self.filename = str(anchor.real(path))

    def __str__(self) -> str:
        return self.message


def claim_state_dir(root: Path, *, create: bool = True) -> None:
    """Make sure `root` is a directory of ours that nobody else can write to or swap: created 0700 when
    missing; refused (UnsafeStateError, exit 2) when it is a symbolic link, is owned by another user, is
    group- or world-writable, or sits below a directory another user could rename it in (strict_modes).
    Once checked it is held by a descriptor (anchor): `StatePaths.held()` reaches it through that, never
    through its name again. With `create` False a missing directory is fine (nothing to trust yet)."""
    root = anchor.real(root)
    problem = unsafe_ancestor(root)
    if problem is not None:
        raise UnsafeStateError(f"refusing the state directory {root}: {problem}")
    if create:
        try:
            root.mkdir(mode=0o700)
        except FileExistsError:
            pass
        except OSError as exc:
            raise UnsafeStateError(f"cannot create the state directory {root}: {exc.strerror}") from None
        else:
            root.chmod(0o700, follow_symlinks=False)  # whatever the umask said
    _check_dir(root, what="the state directory")
    if os.path.lexists(root):
        try:
            held = anchor.hold(root)
        except OSError as exc:
            raise UnsafeStateError(f"cannot open the state directory {root}: {exc.strerror}") from None
        _check_info(root, held, what="the state directory")


def ensure_dir(path: Path) -> None:
    """Create `path` (and missing parents) 0700 inside a claimed state directory, and refuse a symbolic
    link or another user's directory where one of ours should be."""
    missing = []
    probe = path
    while not os.path.lexists(probe):
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=0o700)
        except FileExistsError:
            pass
        except OSError as exc:
            raise StateWriteError(directory, exc) from None
    _check_dir(path, what="state directory")


def _check_dir(path: Path, *, what: str) -> None:
    try:
        info = path.stat() if anchor.is_held_root(path) else os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise UnsafeStateError(f"cannot inspect {what} {path}: {exc.strerror}") from None
    _check_info(path, info, what=what)


def _check_info(path: Path, info: os.stat_result, *, what: str) -> None:
    path = anchor.real(path)  # named as people know it
    if stat.S_ISLNK(info.st_mode):
        raise UnsafeStateError(
            f"{what} {path} is a symbolic link; relevo keeps its state only in a real directory of its "
            "own (remove the link)"
        )
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeStateError(f"{what} {path} is not a directory")
    if info.st_uid != os.geteuid():
        raise UnsafeStateError(
            f"{what} {path} belongs to uid {info.st_uid}, not to you (uid {os.geteuid()}); "
            "relevo runs nothing from a directory another user controls (remove or chown it)"
        )
    if info.st_mode & 0o022:
        raise UnsafeStateError(
            f"{what} {path} is writable by others (mode {stat.S_IMODE(info.st_mode):o}); "
            f"run `chmod 700 {path}`"
        )


def open_nofollow(path: Path, *, limit: int = READ_LIMIT_BYTES) -> bytes:
    """A regular file's bytes, never through a symbolic link, never a FIFO or a device, at most `limit`
    bytes (more raises OSError EFBIG)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(22, "not a regular file", str(path))
        chunks = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise OSError(27, f"larger than {limit} bytes", str(path))
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_or_empty(path: Path) -> str:
    """The file's text, or "" when it is missing or unreadable (a pid file not written yet, a log)."""
    try:
        return open_nofollow(path).decode(errors="replace")
    except OSError:
        return ""


def tail(path: Path, lines: int = 12) -> str:
    """The last lines of a log, for an error message (its last 64 KiB at most)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return ""
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return ""
        start = max(0, info.st_size - 64 * 1024)
        text = os.pread(fd, info.st_size - start, start).decode(errors="replace")
    except OSError:
        return ""
    finally:
        os.close(fd)
    return "\n".join(text.splitlines()[-lines:])


def write_atomic(path: Path, text: str | bytes, *, mode: int = 0o644) -> None:
    """Replace `path` with `text` in one step: a reader never sees half a file, two writers never share a
    temporary file (each has a unique name), a symbolic link at `path` is replaced, never followed. The
    new file is created with `mode`, so a private one is never readable by others, even briefly. A
    failed write (a full disk) removes its temporary file and raises StateWriteError."""
    data = text.encode() if isinstance(text, str) else text
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as exc:
        raise StateWriteError(path, exc) from None
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StateWriteError(path, exc) from None

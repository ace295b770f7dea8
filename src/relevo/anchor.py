"""The state directory, held by a file descriptor once claimed: no path under it is resolved by name again.

A directory's name can be made to point elsewhere at any instant by whoever may write to its parent
(`renameat2(RENAME_EXCHANGE)` swaps two directories atomically). Checking the directory once and then
using its name leaves that window open, in relevo and in every daemon it starts (an Apache reading a
swapped-in httpd.conf as root runs its `ErrorLog "|cmd"`). So `claim_state_dir` opens the directory
(O_PATH, never through a symbolic link), checks what it opened, and keeps the descriptor for the life of
the process; paths under it are spelled `/proc/self/fd/N/...`, which the kernel resolves through that
descriptor, not through the name.

A daemon relevo starts gets the same directory at one fixed number, DAEMON_FD (`spawn_argv` in
providers/tools puts it there in the child only), and its config and the paths inside it are spelled
`/proc/self/fd/100/...` (DAEMON_ROOT): the same text whichever relevo process renders it, and it reaches
the very directory relevo checked for the daemon's whole life, reloads included (Apache re-reads its
config on a graceful restart, HAProxy's master re-executes itself; both keep the descriptor).
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import threading
from pathlib import Path

PROC_FD = "/proc/self/fd"
# Where a daemon started by relevo finds the state directory (relevo's own descriptors stay above it).
DAEMON_FD = 100
DAEMON_ROOT = Path(f"{PROC_FD}/{DAEMON_FD}")

_lock = threading.Lock()
_held: dict[str, int] = {}  # the directory's absolute name → an O_PATH descriptor on it


def _key(root: Path) -> str:
    return str(Path.cwd() / root) if not root.is_absolute() else str(root)


def hold(root: Path) -> os.stat_result:
    """Open `root` (a directory, never a symbolic link) and keep it; the descriptor already held is kept
    (what was claimed first stays what is used) unless its directory was removed meanwhile. Returns the
    held directory's status, for the caller to check (raises OSError when `root` cannot be opened)."""
    key = _key(root)
    with _lock:
        fd = _held.get(key)
        if fd is not None:
            info = os.fstat(fd)
            if info.st_nlink > 0:
                return info
            del _held[key]  # removed (a destroy, a test's cleanup): the next directory by that name
            os.close(fd)
        fd = os.open(key, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        # Above DAEMON_FD: never the number a daemon expects its state directory at.
        moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, DAEMON_FD + 1)
        os.close(fd)
        _held[key] = moved
        return os.fstat(moved)


def adopt(root: Path, fd: int) -> None:
    """Hold `root` as the directory open at `fd`, a descriptor inherited from the relevo that started this
    process (`relevo watch`, `relevo dashboard`): the directory that relevo checked and holds, whatever
    the name points to by now. `claim_state_dir` then checks what is held, and keeps it. Raises OSError
    when `fd` is not an open directory."""
    info = os.fstat(fd)
    if not stat.S_ISDIR(info.st_mode):
        raise OSError(errno.ENOTDIR, "the inherited state directory is not a directory", str(root))
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, DAEMON_FD + 1)
    with _lock:
        old = _held.get(_key(root))
        _held[_key(root)] = moved
    if old is not None:
        os.close(old)


def inherited(root: Path) -> tuple[list[str], tuple[int, ...]]:
    """What a relevo process started from this one needs to reach the held `root` itself: its
    arguments (`--state-fd N`) and the descriptor to pass to it (`pass_fds`). Nothing when not held."""
    fd = descriptor(root)
    return ([], ()) if fd is None else (["--state-fd", str(fd)], (fd,))


def release(root: Path) -> None:
    """Let go of a held directory (a process that claims many, as a test run does)."""
    with _lock:
        fd = _held.pop(_key(root), None)
    if fd is not None:
        os.close(fd)


def descriptor(root: Path) -> int | None:
    """The descriptor held on `root` (a held path's directory too), None when not held."""
    root = real(root)
    with _lock:
        return _held.get(_key(root))


def held(root: Path) -> Path:
    """`root` as reached through its descriptor (`/proc/self/fd/N`) when held, else its name."""
    with _lock:
        fd = _held.get(_key(root))
    if fd is None or os.fstat(fd).st_nlink == 0:
        return root  # not claimed yet, or removed since: its name until the next claim holds it again
    return Path(f"{PROC_FD}/{fd}")


def is_held(path: Path) -> bool:
    return str(path).startswith(PROC_FD + "/")


def is_held_root(path: Path) -> bool:
    """`path` is a held directory itself (/proc/self/fd/N: a link to lstat, the directory to stat)."""
    with _lock:
        return any(str(path) == f"{PROC_FD}/{fd}" for fd in _held.values())


def real(path: Path) -> Path:
    """A path under a held directory, spelled with the directory's name again (for people to read, and
    for what leaves this process: another daemon such as LXD resolves names in its own process)."""
    text = str(path)
    if not is_held(path):
        return path
    with _lock:
        for key, fd in _held.items():
            prefix = f"{PROC_FD}/{fd}"
            if text == prefix or text.startswith(prefix + "/"):
                return Path(key + text[len(prefix) :])
    return path


def from_daemon(path: Path, root: Path) -> Path:
    """A daemon's spelling of a path (under DAEMON_ROOT) as this process reaches it: through the
    descriptor held on `root`."""
    if path == DAEMON_ROOT or DAEMON_ROOT in path.parents:
        return held(real(root)) / path.relative_to(DAEMON_ROOT)
    return path

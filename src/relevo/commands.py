"""Running the programs relevo drives: one search path, one lookup, one runner (to completion, or
streaming each line of output); argument lists only, a timeout on every call, a failure a
`ProviderError` naming the command and the tail of its output."""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from relevo import anchor
from relevo.errors import MissingToolError, ProviderError

# sbin is not on every user's PATH, but that is where distributions put daemons and build tools.
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin", "/sbin"])


def which(*names: str) -> Path | None:
    for name in names:
        found = shutil.which(name, path=SEARCH_PATH)
        if found:
            return Path(found)
    return None


def tool(name: str, package: str) -> str:
    found = shutil.which(name, path=SEARCH_PATH)
    if found is None:
        raise MissingToolError(f"{name} is not installed: install it with `sudo apt-get install {package}`")
    return found


def run(
    command: list[str], *, timeout_s: float = 30.0, what: str | None = None, state_dir: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion; a non-zero exit or a timeout becomes a ProviderError naming `what`
    (by default the program). With a claimed `state_dir`, the command (and a daemon it becomes) has that
    directory at anchor.DAEMON_FD."""
    what = what or Path(command[0]).name
    fd = anchor.descriptor(state_dir) if state_dir is not None else None
    try:
        if fd is not None:
            result = _run_with_state_dir(command, fd, timeout_s)
        else:
            result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        output = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        raise ProviderError(
            f"{what}: no answer after {timeout_s:g}s", command=command, output=output
        ) from None
    except OSError as exc:
        raise ProviderError(f"{what}: {exc.strerror}", command=command) from None
    if result.returncode != 0:
        raise ProviderError(
            f"{what} (exit status {result.returncode})", command=command, output=result.stdout + result.stderr
        )
    return result


def _run_with_state_dir(command: list[str], fd: int, timeout_s: float) -> subprocess.CompletedProcess[str]:
    """subprocess.run's capture and timeout, with `fd` duplicated to anchor.DAEMON_FD in the child only
    (posix_spawn's file actions: nothing of this process's own descriptor table changes, whichever
    thread runs it). stdout and stderr come back together, in order."""
    read_end, write_end = os.pipe()
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_DUP2, write_end, 1),
        (os.POSIX_SPAWN_DUP2, write_end, 2),
        (os.POSIX_SPAWN_DUP2, fd, anchor.DAEMON_FD),
    ]
    try:
        pid = os.posix_spawnp(command[0], command, os.environ, file_actions=actions, setsigdef=_DEFAULTED)
    finally:
        os.close(write_end)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(read_end, selectors.EVENT_READ)
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not selector.select(left):
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    raise subprocess.TimeoutExpired(command, timeout_s, output=b"".join(chunks))
                chunk = os.read(read_end, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
    finally:
        os.close(read_end)
    try:
        code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    except ChildProcessError:
        code = 0  # reaped by another thread's reap_children first: as subprocess, taken as success
    output = b"".join(chunks).decode(errors="replace")
    return subprocess.CompletedProcess(command, code, output, "")


# Signals a child starts with at their defaults, as subprocess does (Python ignores SIGPIPE itself).
_DEFAULTED = (signal.SIGPIPE, signal.SIGXFSZ)


def run_streaming(argv: list[str], progress: Callable[[str], None], timeout_s: float) -> None:
    """Run `argv` in its own process group, passing each output line to `progress`; on timeout or
    interrupt the whole group is stopped (debootstrap runs dpkg and chroot below it)."""
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    timed_out = threading.Event()

    def expire() -> None:
        timed_out.set()
        kill_group(proc)

    timer = threading.Timer(timeout_s, expire)
    timer.start()
    tail: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            if line:
                tail = [*tail[-19:], line]
                progress(line)
        proc.wait()
    except BaseException:
        kill_group(proc)
        raise
    finally:
        timer.cancel()
        if proc.stdout is not None:
            proc.stdout.close()  # not left to the garbage collector: its ResourceWarning fails a test
    if timed_out.is_set():
        raise ProviderError(f"{Path(argv[0]).name} took longer than {timeout_s:.0f} s", command=argv)
    if proc.returncode != 0:
        raise ProviderError(
            f"{Path(argv[0]).name} failed (exit {proc.returncode})", command=argv, output="\n".join(tail)
        )


def kill_group(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the group this process leads: only what we started
        proc.wait()

"""Running the programs relevo drives: one search path, one lookup, one runner (to completion, or
streaming each line of output); argument lists only, a timeout on every call, a failure a
`ProviderError` naming the command and the tail of its output."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

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


def run(command: list[str], *, timeout_s: float = 30.0, what: str) -> subprocess.CompletedProcess[str]:
    """Run a command to completion; a non-zero exit or a timeout becomes a ProviderError."""
    try:
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

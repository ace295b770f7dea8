"""Hearing a recorded process end the moment it does: one pidfd per process, in a selector.

A pidfd (Linux 5.3+, `os.pidfd_open`) becomes readable when its process exits, whoever's child it is:
no polling of /proc, no tick to wait for. The pidfd names the process itself, not its number, so a PID
reused later by someone else can never make a stale watch fire or stay quiet; the record is proven
(`is_ours`) after the pidfd is opened, so the fd is known to name our process.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import threading
from collections.abc import Mapping

from relevo.procs import ProcessRecord, is_ours


def pidfd_supported() -> bool:
    """This kernel and Python can open pidfds (Linux 5.3+, Python 3.9+)."""
    if not hasattr(os, "pidfd_open"):
        return False
    try:
        fd = os.pidfd_open(os.getpid())
    except OSError:
        return False
    os.close(fd)
    return True


class PidWatch:
    """Watches one process per key (a node's leading process). `wait` returns the keys whose process
    exited, each death once; `follow` (thread-safe) changes what is watched and wakes a `wait`."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._watched: dict[str, tuple[ProcessRecord, int]] = {}  # key -> (record, pidfd)
        self._dead: dict[str, ProcessRecord] = {}  # key -> a record whose death was reported
        self._pending: list[str] = []  # found dead by `follow`, reported by the next `wait`
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._closed = False

    def follow(self, records: Mapping[str, ProcessRecord | None]) -> None:
        """Watch these records (None: stop watching that key); keys not named are left as they are. A
        record whose process is already gone is reported by the next `wait` (once)."""
        with self._lock:
            if self._closed:
                return
            for key, record in records.items():
                current = self._watched.get(key)
                if current is not None and current[0] == record:
                    continue
                if record is not None and self._dead.get(key) == record:
                    continue
                if current is not None:
                    self._forget(key)
                if record is None:
                    self._dead.pop(key, None)
                    continue
                try:
                    fd = os.pidfd_open(record.pid)
                except ProcessLookupError:
                    self._died(key, record)
                    continue
                if not is_ours(record):  # the PID names some other process now: ours is gone
                    os.close(fd)
                    self._died(key, record)
                    continue
                self._selector.register(fd, selectors.EVENT_READ, key)
                self._watched[key] = (record, fd)
                self._dead.pop(key, None)
        self._wake()

    def watched(self) -> dict[str, int]:
        """key -> the PID watched for it."""
        with self._lock:
            return {key: record.pid for key, (record, _) in self._watched.items()}

    def wait(self, timeout_s: float) -> list[str]:
        """Block up to `timeout_s` for exits; the keys whose process exited (each reported once)."""
        with self._lock:
            exited, self._pending = self._pending, []
        if exited:
            return exited
        for selected, _ in self._selector.select(timeout_s):
            key = selected.data
            if key is None:
                with contextlib.suppress(BlockingIOError):
                    while os.read(self._wake_r, 4096):
                        pass
                continue
            with self._lock:
                current = self._watched.get(key)
                if current is not None and current[1] == selected.fd:
                    self._forget(key)
                    self._dead[key] = current[0]
                    exited.append(key)
        return exited

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for key in list(self._watched):
                self._forget(key)
        self._wake()
        self._selector.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _died(self, key: str, record: ProcessRecord) -> None:
        self._dead[key] = record
        self._pending.append(key)

    def _forget(self, key: str) -> None:
        _, fd = self._watched.pop(key)
        self._selector.unregister(fd)
        os.close(fd)

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"x")

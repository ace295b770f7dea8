"""Processes relevo starts, recorded by PID and start time so that only they are ever signalled.

A PID alone can be reused by an unrelated process once ours has died; the kernel's start time of the
process (field 22 of /proc/PID/stat) tells ours from a newcomer. Nothing here matches processes by name.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from dataclasses import asdict, dataclass
from pathlib import Path

from relevo.files import ensure_dir, open_nofollow, write_atomic
from relevo.polling import wait_until

PROC = Path("/proc")


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessRecord:
    pid: int
    start_time: int  # clock ticks since boot, from /proc/PID/stat
    # The process group leader's pid: a node's processes (Apache's workers, HAProxy's worker) share it.
    pgid: int
    exe: str  # the executable, resolved (/proc/PID/exe)
    # An argument its command line must carry (the config file in our state directory): proof that the
    # process is the one we started, not just any process of that program.
    config: str = ""

    def save(self, path: Path) -> None:
        ensure_dir(path.parent)
        write_atomic(path, json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: Path) -> ProcessRecord | None:
        try:
            data = json.loads(open_nofollow(path, limit=64 * 1024))
            return cls(
                pid=int(data["pid"]),
                start_time=int(data["start_time"]),
                pgid=int(data["pgid"]),
                exe=str(data["exe"]),
                config=str(data.get("config", "")),
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    @classmethod
    def of(cls, pid: int, *, config: str = "") -> ProcessRecord | None:
        """Record a live process now; None if it is already gone."""
        stat = _stat_fields(pid)
        exe = executable(pid)
        if stat is None or exe is None:
            return None
        return cls(pid=pid, start_time=int(stat[19]), pgid=int(stat[2]), exe=exe, config=config)

    def names(self, *, exe: str | Path, config: str | Path) -> bool:
        """The record claims the program and config we expect (what a forged record may not claim)."""
        return self.exe == os.path.realpath(exe) and self.config == str(config)


def executable(pid: int) -> str | None:
    """The resolved path of a process's executable (None when it is gone or not ours to inspect)."""
    try:
        return str((PROC / str(pid) / "exe").readlink()).removesuffix(" (deleted)")
    except OSError:
        return None


def command_line(pid: int) -> list[str]:
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [arg.decode(errors="replace") for arg in raw.split(b"\0") if arg]


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (which may hold spaces), or None."""
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid pgrp ...": split after the last ')' so a strange comm cannot shift fields.
    return raw[raw.rindex(")") + 2 :].split()


def process_state(pid: int) -> str | None:
    """The kernel's one-letter state (R, S, T, Z, ...) or None when there is no such process."""
    fields = _stat_fields(pid)
    return fields[0] if fields else None


def signal_pending(pid: int, sig: signal.Signals) -> bool:
    """`sig` was sent to the process and it has not acted on it yet (a SIGKILLed process still runs, and
    holds its locks, until it does: on a busy machine, for a while)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    bit = 1 << (sig - 1)
    for line in status.splitlines():
        name, _, mask = line.partition(":")
        if name in ("SigPnd", "ShdPnd") and int(mask.strip() or "0", 16) & bit:
            return True
    return False


def is_ours(record: ProcessRecord) -> bool:
    """True while the recorded process is alive (not a zombie) and provably the one we started: the same
    kernel start time, our user, the recorded executable and, on its command line, the recorded config."""
    fields = _stat_fields(record.pid)
    if fields is None or fields[0] in ("Z", "X") or int(fields[19]) != record.start_time:
        return False
    try:
        if (PROC / str(record.pid)).stat().st_uid != os.geteuid():
            return False
    except OSError:
        return False
    if executable(record.pid) != record.exe:
        return False
    return not record.config or record.config in _arguments(record.pid)


# A process in the middle of an execve shows an empty /proc/PID/cmdline until the kernel has laid out its
# new arguments. HAProxy's master re-executes itself on every reload: read at that moment, a reloading
# balancer was taken for stopped (5 of 40 reloads at load ~2, the provider contract's reload test failed
# once under load). A bound, not a speed: the window is the new program's loading.
EXEC_ARGUMENTS_WAIT_S = 1.0


def _arguments(pid: int) -> list[str]:
    """The command line of a process whose start time and executable are already ours, read again while
    it is empty (it is mid-exec); empty after EXEC_ARGUMENTS_WAIT_S only if it never shows one."""
    found: list[str] = []

    def read() -> bool:
        found[:] = command_line(pid)
        return bool(found)

    wait_until(read, EXEC_ARGUMENTS_WAIT_S, 0.001)
    return found


def find_by_config(*, exe: str, config: str) -> ProcessRecord | None:
    """The live process of ours that leads its own group, runs `exe` and names `config` on its command
    line (a daemon relevo started, when its record was lost): the one a record would have named."""
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        fields = _stat_fields(pid)
        if fields is None or int(fields[2]) != pid or fields[0] in ("Z", "X"):
            continue
        try:
            if entry.stat().st_uid != os.geteuid():
                continue
        except OSError:
            continue
        if executable(pid) == exe and config in command_line(pid):
            record = ProcessRecord.of(pid, config=config)
            if record is not None and is_ours(record):
                return record
    return None


def group_members(pgid: int) -> list[int]:
    """Live PIDs in a process group (our node's processes), found by group id, never by name."""
    members = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def proven_members(record: ProcessRecord) -> list[int]:
    """The group's processes that are provably ours: the recorded executable, started no earlier than the
    leader. Once the leader is gone its group id may in time name someone else's group: only these may
    still be signalled."""
    proven = []
    for pid in group_members(record.pgid):
        fields = _stat_fields(pid)
        if fields and int(fields[19]) >= record.start_time and executable(pid) == record.exe:
            proven.append(pid)
    return proven


def signal_group(record: ProcessRecord, sig: signal.Signals) -> bool:
    """Send `sig` to every process of our group; False when the leader is no longer ours."""
    if not is_ours(record):
        return False
    try:
        os.killpg(record.pgid, sig)
    except ProcessLookupError:
        return False
    return True


def group_paused(record: ProcessRecord) -> bool:
    """Every live process of the group is stopped by a signal (state T): a hung node."""
    if process_state(record.pid) != "T":
        return False  # the common case, answered without scanning /proc
    states = [process_state(pid) for pid in group_members(record.pgid)]
    return bool(states) and all(state == "T" for state in states)


def reap_children() -> None:
    """Collect exit statuses of our own exited children so they do not linger as zombies."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass


def wait_gone(record: ProcessRecord, timeout_s: float) -> bool:
    """Wait until the leader and every proven member of its group have exited; True if they did within
    the timeout."""

    def gone() -> bool:
        reap_children()
        return not is_ours(record) and not proven_members(record)

    return wait_until(gone, timeout_s, 0.005)


def stop_group(
    record: ProcessRecord, *, term: signal.Signals = signal.SIGTERM, timeout_s: float = 5.0
) -> None:
    """Ask the group to stop, wait, then SIGKILL what is left. A paused group is resumed first. While
    the leader is ours the whole group is signalled; without it, only the members proven ours."""
    if is_ours(record):
        # A SIGSTOPped process never handles SIGTERM: resume it so it can exit cleanly.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(record.pgid, signal.SIGCONT)
            os.kill(record.pid, term)
    elif not _signal_members(record, signal.SIGCONT, term):
        return
    if wait_gone(record, timeout_s):
        return
    if is_ours(record):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(record.pgid, signal.SIGKILL)
    else:
        _signal_members(record, signal.SIGKILL)
    wait_gone(record, 2.0)


def _signal_members(record: ProcessRecord, *signals: signal.Signals) -> bool:
    """Signal each proven member of a group whose leader is gone; False when there is none."""
    members = proven_members(record)
    for pid in members:
        for sig in signals:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
    return bool(members)

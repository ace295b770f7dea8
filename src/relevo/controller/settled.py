"""HAProxy's server-state file holds only states the controller has settled.

A restarted HAProxy reads back every server's admin and health state from that file. Saved in the
middle of a failover (the standby in service, its primary not yet in MAINT, a drain under way), it
brings back a moment no one holds any more: after `relevo scenarios` ended with kill-controller, a
killed HAProxy came back with healthy web1 in MAINT, and the controller took that for a person's
planned maintenance. So the file is written only on a settled tick: HAProxy answered, the decision
asked for nothing, no start, stop or drain is under way and no command's outcome is uncertain. It is
written at the controller's first settled tick (whatever an earlier run left), after every settled
change (its own commands, a person's), and again whenever someone else wrote the file meanwhile (a
reload saves the states of that instant, which may be mid-failover).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


class SettledStates:
    def __init__(self, save: Callable[[], None], state_file: Path | None) -> None:
        self.save = save
        self.state_file = state_file
        self.dirty = True  # at its start: the file may be anyone's, from any instant
        self._written: tuple[int, int] | None = None

    def changed(self) -> None:
        """A server's admin state changed (by the controller, or by a person)."""
        self.dirty = True

    def tick(self, *, settled: bool) -> None:
        """Save now if the states are settled and the file is not already theirs (raises what saving
        raised: the state stays dirty, the next settled tick tries again)."""
        if not settled or (not self.dirty and self._stamp() == self._written):
            return
        self.save()
        self.dirty = False
        self._written = self._stamp()

    def _stamp(self) -> tuple[int, int] | None:
        if self.state_file is None:
            return None
        try:
            info = self.state_file.stat()
        except OSError:
            return None
        return info.st_ino, info.st_mtime_ns

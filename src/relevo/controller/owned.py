"""Which admin states are the controller's, saved so that a restarted controller still knows: the states
it set (`owned`), those it was about to set (`pending`: saved before the command, so that a controller
killed in between takes neither its change nor its absence for a person's), and the servers a person
holds (`manual`). Everything else seen in HAProxy was set by a person. And whether HAProxy was seen
hung or stopped since it last answered (`lapsed`): a controller restarted before it saw the new HAProxy
answer still takes that HAProxy's states for a restart's, not for a person's.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from relevo.controller.state import Memory, readonly
from relevo.files import open_nofollow, write_atomic
from relevo.haproxy.runtime import AdminState


class OwnedFile:
    def __init__(
        self, path: Path | None, *, servers: Sequence[str], log_error: Callable[[str, str], None]
    ) -> None:
        self.path = path
        self.servers = tuple(servers)
        self.log_error = log_error
        self._saved: tuple[object, ...] = ()

    def lapsed(self) -> bool:
        """The previous controller saw HAProxy hung or stopped, and not answering since."""
        return self._data().get("lapsed") is True

    def load(self) -> Memory:
        """A new controller's memory: what the previous one saved (nothing, if unreadable)."""
        saved = self._data()
        return Memory(
            owned=readonly(self._states(saved.get("owned"))),
            manual=self._manual(saved.get("manual")),
            inherited=readonly(self._states(saved.get("pending"))),
        )

    def save(self, memory: Memory, about_to_set: Mapping[str, AdminState], *, lapsed: bool) -> None:
        """The states the controller set (and those it is about to set), for the next controller."""
        owned = dict(memory.owned)
        if self.path is None or (owned, dict(about_to_set), memory.manual, lapsed) == self._saved:
            return
        text = json.dumps(
            {
                "owned": {k: str(v) for k, v in owned.items()},
                "pending": {k: str(v) for k, v in about_to_set.items()},
                "manual": sorted(memory.manual),
                "lapsed": lapsed,
            }
        )
        try:
            write_atomic(self.path, text, mode=0o600)
        except OSError as exc:
            self.log_error("owned-file", f"cannot write {self.path}: {exc}")
            return
        self._saved = (owned, dict(about_to_set), memory.manual, lapsed)

    def _states(self, saved: object) -> dict[str, AdminState]:
        if not isinstance(saved, dict):
            return {}
        values = {s.value for s in AdminState}
        return {
            name: AdminState(state)
            for name, state in saved.items()
            if name in self.servers and state in values
        }

    def _manual(self, saved: object) -> frozenset[str]:
        return frozenset(n for n in saved if n in self.servers) if isinstance(saved, list) else frozenset()

    def _data(self) -> dict[str, Any]:
        if self.path is None:
            return {}
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(open_nofollow(self.path))
            if isinstance(data, dict):
                return data
        return {}


def unsettled(memory: Memory) -> dict[str, AdminState]:
    """States that may be in HAProxy without the controller knowing yet: inherited from the previous
    controller, or set by a command that went unanswered."""
    late = {name: action.state for name, (action, _) in memory.uncertain.items() if action.state}
    return {**memory.inherited, **late}

"""What the controller did and saw, told once: each event to the journal, the listener (its metrics) and
the log; each error to the log when it first happens, when it changes, and then every REPEAT_LOG_S.

A provider action is journalled twice: as under way when it is submitted (from what is true then), and
as done when it returned; a Runtime API command once, when it answered.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, Protocol

from relevo.controller.events import Event, EventKind, EventLog
from relevo.controller.state import ActionKind, ControlAction, NodeView, readonly
from relevo.providers.base import NodeState

LOG = logging.getLogger("relevo.controller")
# The same error is logged again at most this often, so a long outage does not flood the log.
REPEAT_LOG_S = 30.0


class Listener(Protocol):
    """Told each journal record and each tick's duration (the metrics, `controller/metrics.py`)."""

    def on_event(self, record: Mapping[str, Any]) -> None: ...

    def on_tick(self, took_s: float, snapshot: Mapping[str, Any]) -> None: ...


class Recorder:
    def __init__(
        self, events: EventLog, *, clock: Callable[[], float], listener: Listener | None = None
    ) -> None:
        self.events = events
        self.clock = clock
        self.listener = listener
        self._logged: dict[str, tuple[str, float]] = {}  # key -> the last message logged, and when

    def record(self, event: Event) -> None:
        record = self.events.append(event)
        if self.listener is not None:
            self.listener.on_event(record)
        durations = "".join(f" {k}={v:g}" for k, v in record["durations"].items())
        if event.kind in (EventKind.ACTION_FAILED, EventKind.STANDBY_FAILED):
            level = logging.WARNING
        else:  # routine steps only with `relevo watch --verbose`: the journal has them all anyway
            level = logging.DEBUG if event.kind is EventKind.ACTION else logging.INFO
        message = f"{event.kind} {event.node}: {event.from_} -> {event.to} ({event.reason}){durations}"
        LOG.log(level, "%s", message)

    def log_error(self, key: str, message: str) -> None:
        """Log an error when it first happens, when it changes, and then every REPEAT_LOG_S."""
        now = self.clock()
        last = self._logged.get(key)
        if last is None or last[0] != message or now - last[1] >= REPEAT_LOG_S:
            LOG.warning("%s", message)
            self._logged[key] = (message, now)

    def resolved(self, key: str) -> None:
        """The error logged under `key` is over: the next one is logged at once."""
        self._logged.pop(key, None)

    def failing(self, key: str) -> bool:
        """An error is logged under `key` and not resolved since."""
        return key in self._logged

    def guard(self, key: str, call: Callable[[], None]) -> None:
        try:
            call()
        except Exception as exc:  # a side duty; the next tick tries again
            self.log_error(key, f"{key} failed: {exc}")

    # --- actions -------------------------------------------------------------------------------------
    def began(self, action: ControlAction, process: NodeState | None) -> None:
        """A provider action began (off the tick): journalled now, from what is true now, so the journal
        reads stopped -> starting, then starting -> running once it returned (not `running -> running`
        when the node was seen up before the start's own return was)."""
        self.record(
            Event(
                kind=EventKind.ACTION,
                node=action.node,
                from_=str(process or "unknown"),
                to=_UNDER_WAY[action.kind],
                reason=_reason(action),
            )
        )

    def done(self, action: ControlAction, *, took_s: float, at: float, view: NodeView | None) -> None:
        """An action succeeded: journalled with what it changed, then the event it was planned with."""
        before, after = _transition(action, view)
        self.record(
            Event(
                kind=EventKind.ACTION,
                node=action.node,
                from_=before,
                to=after,
                reason=_reason(action),
                durations={"took_s": took_s},
            )
        )
        if action.then is not None:
            timed = {name: at - since for name, since in action.timed_from.items()}
            self.record(replace(action.then, durations=readonly({**action.then.durations, **timed})))


def _reason(action: ControlAction) -> str:
    return f"{action.kind}: {action.reason}" if action.reason else str(action.kind)


# What a provider action's node is while the action runs (the `to` of its first journal line).
_UNDER_WAY = {
    ActionKind.START: "starting",
    ActionKind.RESTART: "restarting",
    ActionKind.STOP: "stopping",
    ActionKind.FREEZE: "freezing",
    ActionKind.THAW: "thawing",
}
_DONE = {ActionKind.STOP: "stopped", ActionKind.FREEZE: "frozen"}


def _transition(action: ControlAction, view: NodeView | None) -> tuple[str, str]:
    """What an action changed, in the words `relevo events` shows: from -> to."""
    server = view.server if view else None
    match action.kind:
        case ActionKind.START | ActionKind.RESTART | ActionKind.STOP | ActionKind.FREEZE | ActionKind.THAW:
            # Provider actions: journalled as under way when submitted (see Recorder.began).
            return _UNDER_WAY[action.kind], _DONE.get(action.kind, "running")
        case ActionKind.SET_STATE:
            return str(server.admin) if server else "unknown", str(action.state)
        case _:
            return ("up" if server and server.up else "down"), "up"

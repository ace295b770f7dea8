"""The LXD nodes' state changes as LXD publishes them (`/1.0/events?type=lifecycle`), one stream per
daemon: a container force-stopped, frozen or started is heard in milliseconds instead of at the next
tick's listing. Events of containers that are not this cluster's nodes (another cluster's, another
project's) are ignored. A dropped stream is reconnected on a later `wait`, never faster than
RECONNECT_S; meanwhile the tick's own listing covers the gap.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from relevo.lxd.errors import LXDError
from relevo.lxd.events import EventStream, lifecycle
from relevo.lxd.transport import APIEndpoint
from relevo.providers.base import NodeEvent, NodeState

RECONNECT_S = 0.5

# What each lifecycle action says about the instance's processes.
ACTIONS: dict[str, NodeState] = {
    "instance-stopped": NodeState.STOPPED,
    "instance-deleted": NodeState.MISSING,
    "instance-paused": NodeState.PAUSED,
    "instance-resumed": NodeState.RUNNING,
    "instance-started": NodeState.RUNNING,
}

Opener = Callable[[APIEndpoint], EventStream]


def _open(endpoint: APIEndpoint) -> EventStream:
    return EventStream(endpoint)


class LifecycleWatch:
    """One daemon's lifecycle events for `names` (container name -> node)."""

    def __init__(
        self,
        endpoint: APIEndpoint,
        names: Mapping[str, str],
        *,
        opener: Opener = _open,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.endpoint = endpoint
        self.names = dict(names)
        self.project = endpoint.project or "default"
        self._opener = opener
        self._clock = clock
        self._sleep = sleep
        self._stream: EventStream | None = None
        self._next_try = 0.0
        self.connects = 0  # streams opened (a reconnect counts): for tests and diagnostics
        self.last_error = ""

    def refresh(self) -> None:
        """Nothing to follow: the stream reports every container by name."""

    def wait(self, timeout_s: float) -> list[NodeEvent]:
        stream = self._stream or self._connect(timeout_s)
        if stream is None:
            return []
        try:
            messages = stream.receive(timeout_s)
        except LXDError as exc:
            self.last_error = str(exc)
            stream.close()
            self._stream = None
            self._next_try = self._clock() + RECONNECT_S
            return []
        events: list[NodeEvent] = []
        for message in messages:
            event = lifecycle(message)
            if event is None or event.project != self.project:
                continue
            node, state = self.names.get(event.name), ACTIONS.get(event.action)
            if node is not None and state is not None:
                events.append(NodeEvent(node=node, state=state, source="lxd-events", detail=event.action))
        return events

    def _connect(self, timeout_s: float) -> EventStream | None:
        wait = self._next_try - self._clock()
        if wait > 0:
            self._sleep(min(wait, timeout_s))
            return None
        try:
            self._stream = self._opener(self.endpoint)
        except (LXDError, OSError) as exc:
            self.last_error = str(exc)
            self._next_try = self._clock() + RECONNECT_S
            return None
        self.connects += 1
        return self._stream

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None

"""Event sources beside the tick: a node's death heard from the substrate the moment it happens.

Each provider that can (`Watching`: pidfds locally, LXD's lifecycle events) gives watches; each watch
is read by its own thread here, which queues what it hears, stamped with when, and wakes the loop so
the controller acts at once instead of at its next tick. The tick stays: it is the safety net for a
source that is down or reconnecting, and the only judge of ambiguous evidence (a probe timing out).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from relevo.providers.base import NodeEvent, NodeState, Provider, Watch, Watching

if TYPE_CHECKING:
    from relevo.cluster import Cluster

LOG = logging.getLogger("relevo.controller")
# Each watch blocks at most this long per read, so that closing the sources is prompt.
WAIT_S = 0.25
# A watch whose read raised (a bug, not a dropped connection) is read again after this.
ERROR_PAUSE_S = 1.0
# States that are certain evidence of a node not serving.
DEATHS = (NodeState.STOPPED, NodeState.MISSING, NodeState.PAUSED)


@dataclass(frozen=True, slots=True, kw_only=True)
class Heard:
    """A node event and the monotonic time it was heard."""

    event: NodeEvent
    at: float

    @property
    def death(self) -> bool:
        return self.event.state in DEATHS


class Sources:
    """The watches of one cluster, each read in a daemon thread; `heard` drains what they reported."""

    def __init__(self, watches: Sequence[Watch], *, clock: Callable[[], float] = time.monotonic) -> None:
        self.watches = list(watches)
        self._clock = clock
        self._lock = threading.Lock()
        self._queue: list[Heard] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._wake: Callable[[], None] = lambda: None

    def start(self, wake: Callable[[], None]) -> None:
        """Start reading; `wake` is called (from a reader thread) after each batch of events."""
        self._wake = wake
        self.refresh()
        for index, watch in enumerate(self.watches):
            thread = threading.Thread(
                target=self._read, args=(watch,), name=f"relevo-source-{index}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def refresh(self) -> None:
        for watch in self.watches:
            try:
                watch.refresh()
            except Exception as exc:  # a source is a speed-up: the tick still sees everything
                LOG.warning("an event source could not refresh: %s", exc)

    def heard(self) -> list[Heard]:
        with self._lock:
            found, self._queue = self._queue, []
        return found

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=2 * WAIT_S + 1.0)
        for watch in self.watches:
            try:
                watch.close()
            except Exception as exc:  # closing is best effort: the process is ending
                LOG.debug("closing an event source: %s", exc)

    def _read(self, watch: Watch) -> None:
        while not self._stop.is_set():
            try:
                events = watch.wait(WAIT_S)
            except Exception:  # never the end of the source: the tick covers meanwhile
                LOG.exception("an event source failed; reading it again in %g s", ERROR_PAUSE_S)
                self._stop.wait(ERROR_PAUSE_S)
                continue
            if not events:
                continue
            now = self._clock()
            with self._lock:
                self._queue += [Heard(event=event, at=now) for event in events]
            self._wake()


def cluster_sources(cluster: Cluster, nodes: Sequence[str]) -> Sources:
    """The watches of every provider of `nodes` that has an event stream."""
    by_provider: dict[int, tuple[Provider, list[str]]] = {}
    for node in nodes:
        provider = cluster.provider_for(node)
        by_provider.setdefault(id(provider), (provider, []))[1].append(node)
    watches: list[Watch] = []
    for provider, names in by_provider.values():
        if isinstance(provider, Watching):
            try:
                watches += provider.watches(names)
            except Exception as exc:  # without events, the tick alone detects: slower, still correct
                LOG.warning("no event source for %s: %s", ", ".join(names), exc)
    return Sources(watches)

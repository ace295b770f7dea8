"""Provider actions (start, stop, restart) off the tick: one at a time per node, each node in its own
worker thread, bounded in time.

A container start takes seconds and a VM's longer; run inline, one slow start would stall every other
pair's failover. Here the tick only submits and, next time, harvests what finished; meanwhile the node
is `starting`/`stopping` for the decision code. An action still running after its timeout is reported
as failed once (the decision code retries it after a backoff); its thread cannot be killed, so the
node stays busy until the call returns, and a late result is then only logged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from relevo.controller.state import Busy, ControlAction

LOG = logging.getLogger("relevo.controller")


@dataclass(frozen=True, slots=True, kw_only=True)
class Done:
    """A provider action that finished (error None), failed, or ran past its timeout."""

    action: ControlAction
    began: float  # monotonic
    ended: float
    error: str | None = None


class Runner(Protocol):
    """What the loop needs to run provider actions off the tick (a deterministic fake in unit tests)."""

    def submit(self, action: ControlAction) -> bool:
        """Start `action` unless its node is busy; False when it was not started."""
        ...

    def busy(self) -> Mapping[str, Busy]:
        """Nodes with an action still running."""
        ...

    def harvest(self) -> list[Done]:
        """Actions that ended (or timed out) since the last call, each reported once."""
        ...

    def close(self) -> None: ...


@dataclass(slots=True)
class _Running:
    action: ControlAction
    future: Future[None]
    began: float
    reported: bool = False  # its timeout was already reported


@dataclass
class ActionRunner:
    """The real `Runner`: a single-thread executor per node (created on first use)."""

    perform: Callable[[ControlAction], None]
    timeout_s: float
    clock: Callable[[], float] = time.monotonic
    done: Callable[[], None] = lambda: None  # called (in the worker) when an action ends: wakes the loop
    _executors: dict[str, ThreadPoolExecutor] = field(default_factory=dict)
    _running: dict[str, _Running] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def submit(self, action: ControlAction) -> bool:
        with self._lock:
            if action.node in self._running:
                return False
            executor = self._executors.get(action.node)
            if executor is None:
                executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"relevo-{action.node}")
                self._executors[action.node] = executor
            future = executor.submit(self.perform, action)
            future.add_done_callback(lambda _: self.done())
            self._running[action.node] = _Running(action=action, future=future, began=self.clock())
            return True

    def busy(self) -> Mapping[str, Busy]:
        with self._lock:
            return {node: running.action.busy for node, running in self._running.items()}

    def harvest(self) -> list[Done]:
        now = self.clock()
        done: list[Done] = []
        with self._lock:
            for node, running in list(self._running.items()):
                if running.future.done():
                    del self._running[node]
                    error = running.future.exception()
                    if running.reported:  # already reported as failed: a late outcome, only logged
                        LOG.warning("%s ended after its timeout: %s", running.action, error or "succeeded")
                        continue
                    done.append(
                        Done(
                            action=running.action,
                            began=running.began,
                            ended=now,
                            error=None if error is None else str(error) or type(error).__name__,
                        )
                    )
                elif not running.reported and now - running.began >= self.timeout_s:
                    running.reported = True
                    done.append(
                        Done(
                            action=running.action,
                            began=running.began,
                            ended=now,
                            error=f"still running after {self.timeout_s:g} s",
                        )
                    )
        return done

    def close(self) -> None:
        with self._lock:
            for executor in self._executors.values():
                executor.shutdown(wait=False, cancel_futures=True)

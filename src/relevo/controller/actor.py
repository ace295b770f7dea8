"""Doing what `decide()` planned: Runtime API commands inline (each bounded by the socket timeout, well
below the tick), provider actions in the action runner's worker threads (`perform`). Each outcome is a
`Done`; the loop folds it into its memory and journals it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from relevo.controller import balancers
from relevo.controller.actions import Done
from relevo.controller.haproxy_view import BalancerControl
from relevo.controller.state import ActionKind, ControlAction
from relevo.providers.base import Fault, Nodes, NodeState


class Actor:
    def __init__(self, *, nodes: Nodes, balancer: BalancerControl, clock: Callable[[], float]) -> None:
        self.nodes = nodes
        self.balancer = balancer
        self.clock = clock

    def perform(self, action: ControlAction) -> None:
        """A provider action, in a worker thread of the runner."""
        match action.kind:
            case ActionKind.START:
                self.nodes.start(action.node)
            case ActionKind.STOP:
                self.nodes.stop(action.node)
            case ActionKind.FREEZE:
                self.nodes.fault(action.node, Fault.HANG)  # SIGSTOP of the group; LXD freezes
            case ActionKind.THAW:
                self.nodes.fault(action.node, Fault.RESUME)  # SIGCONT; LXD unfreezes
            case ActionKind.RESTART:
                # Hung (paused) or dead: SIGKILL whatever is left (a stopped process takes it too),
                # then start; the new HAProxy reads the server states the controller last saved.
                with contextlib.suppress(Exception):
                    self.nodes.fault(action.node, Fault.CRASH)
                with contextlib.suppress(Exception):
                    # A pair: the other balancer's current states, for this one to start from.
                    balancers.save_for_restart(self.balancer, action.node)
                self.nodes.start(action.node)
                state = self.nodes.status(action.node)
                if state is not NodeState.RUNNING:
                    raise RuntimeError(f"{action.node} is {state} after its restart")
            case _:
                raise ValueError(f"not a provider action: {action}")

    def execute(self, action: ControlAction) -> Done:
        """A Runtime API command, inline: done, or failed with HAProxy's error (retried after a
        backoff)."""
        began = self.clock()
        try:
            match action.kind:
                case ActionKind.SET_STATE:
                    assert action.state is not None
                    self.balancer.set_state(action.node, action.state)
                case ActionKind.HEALTH_UP:
                    self.balancer.health_up(action.node)
                case _:
                    raise ValueError(f"not a Runtime API action: {action}")
        except Exception as exc:  # every failure is retried after a backoff, journalled
            return Done(action=action, began=began, ended=self.clock(), error=str(exc))
        return Done(action=action, began=began, ended=self.clock())

"""A scenario's faults on the load's clock: each applied at its time (and not before the controller
event it waits for), each spanned one healed at the end of its span, and every one still in force healed
when the run ends, whatever ended it (the load's end, an error, Ctrl-C): `Timeline.close` runs in the
runner's `finally`. Lasting faults are recorded by their provider before they are applied, so a relevo
killed mid-span leaves them to the next `scenarios`, `up` or `down` to heal."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from relevo.cluster import Cluster
from relevo.controller.journal import read_events
from relevo.errors import RelevoError
from relevo.loadgen.feed import LiveFeed
from relevo.providers.in_charge import InCharge
from relevo.scenarios.faults import apply_fault, fault_lock, heal_fault
from relevo.scenarios.model import LASTING_ACTIONS, FaultStep, Scenario
from relevo.scenarios.result import Marker, Verdict

# How often a fault that waits for a controller event reads the journal.
AFTER_POLL_S = 0.05
TICK_S = 0.01


class Clock(Protocol):
    """The load's handle, as far as the timeline needs it."""

    @property
    def done(self) -> bool: ...

    def elapsed_s(self) -> float: ...


@dataclass
class _InForce:
    fault: FaultStep  # with its node (a fault meant for the balancer in charge: the one it went to)
    label: str
    started_s: float
    due_s: float  # math.inf: until the run ends
    means: str


class Timeline:
    def __init__(
        self, cluster: Cluster, scenario: Scenario, clock: Clock, feed: LiveFeed | None = None
    ) -> None:
        self.cluster = cluster
        self.scenario = scenario
        self.clock = clock
        self.feed = feed  # the dashboard's view of the run: each fault as it is applied and healed
        self._zero = time.time() - clock.elapsed_s()  # the load's start instant, in epoch seconds
        self.markers: list[Marker] = []
        self.verdicts: list[Verdict] = []
        self.in_force: list[_InForce] = []
        # The balancer in charge when the first fault meant for it was applied: this scenario's target.
        self.in_charge: InCharge | None = None

    def play(self, sleep: Callable[[float], None] = time.sleep) -> None:
        """Apply and heal on time until the last fault is applied and every span has ended (or the load
        ended first: a fault it ended before is reported, not done)."""
        clock = self.clock
        began = time.time() - clock.elapsed_s()
        pending = list(self.scenario.faults)
        while (pending or any(f.due_s < math.inf for f in self.in_force)) and not clock.done:
            now = clock.elapsed_s()
            due = min(self.in_force, key=lambda f: f.due_s, default=None)
            if due is not None and due.due_s <= now:
                self._heal(due)
                continue
            if pending and pending[0].at_s <= now:
                fault = pending[0]
                if fault.after and not _journalled(self.cluster.paths.held().events, fault.after, began):
                    sleep(AFTER_POLL_S)
                    continue
                pending.pop(0)
                self._apply(fault)
                continue
            next_s = min(pending[0].at_s if pending else math.inf, due.due_s if due else math.inf)
            sleep(min(TICK_S, max(0.0, next_s - now)))
        for fault in pending:
            waited = f" and the controller's {fault.after}" if fault.after else ""
            self.verdicts.append(
                Verdict(
                    what=f"fault {fault.label} at {fault.at_s:g} s{waited}",
                    ok=False,
                    detail="the load ended before it: lengthen the load or move the fault",
                )
            )

    def close(self) -> None:
        """Heal every fault still in force (the run's end, an error, Ctrl-C)."""
        for held in list(self.in_force):
            self._heal(held)

    def _apply(self, fault: FaultStep) -> None:
        label = fault.label
        try:
            with fault_lock(self.cluster, fault):
                fault, label = self._target(fault)
                at = self.clock.elapsed_s()  # when it was done: a lock held by another writer delays it
                means = apply_fault(self.cluster, fault)
        except RelevoError as exc:
            self.verdicts.append(Verdict(what=f"fault {label}", ok=False, detail=str(exc)))
            return
        self._tell(label, fault, at)
        spanned = fault.for_s is not None or fault.action in LASTING_ACTIONS
        if spanned:
            due = at + fault.for_s if fault.for_s is not None else math.inf
            self.in_force.append(
                _InForce(fault=fault, label=label, started_s=at, due_s=due, means=means or "")
            )
            return
        self.markers.append(Marker(t_s=at, source="fault", kind=str(fault.action), label=label))

    def _target(self, fault: FaultStep) -> tuple[FaultStep, str]:
        """The fault with its node, and its label: one meant for the balancer in charge goes to the one in
        charge now, resolved once per scenario (a failback's start goes to the balancer its stop took out),
        and its label says which and why (the result's markers, the live feed)."""
        if not fault.in_charge:
            return fault, fault.label
        if self.in_charge is not None:
            chosen = replace(fault, node=self.in_charge.name, in_charge=False)
            return chosen, f"{chosen.label} (the balancer in charge at this scenario's first fault)"
        self.in_charge = self.cluster.balancer_in_charge()
        chosen = replace(fault, node=self.in_charge.name, in_charge=False)
        return chosen, f"{chosen.label} (in charge: {self.in_charge.why})"

    def _heal(self, held: _InForce) -> None:
        self.in_force.remove(held)
        fault = held.fault
        try:
            with fault_lock(self.cluster, fault):
                heal_fault(self.cluster, fault)
                end = self.clock.elapsed_s()
        except RelevoError as exc:
            self.verdicts.append(Verdict(what=f"heal {held.label}", ok=False, detail=str(exc)))
            end = self.clock.elapsed_s()
        self._tell(held.label, fault, held.started_s, end)
        self.markers.append(
            Marker(
                t_s=held.started_s,
                source="fault",
                kind=str(fault.action),
                label=held.label,
                end_t_s=end,
                means=held.means,
            )
        )

    def _tell(self, label: str, fault: FaultStep, at_s: float, end_s: float | None = None) -> None:
        if self.feed is None:
            return
        end = self._zero + end_s if end_s is not None else None
        self.feed.marker(label, str(fault.action), at=self._zero + at_s, end=end)


def _journalled(journal: Path, kind: str, since: float) -> bool:
    def match(event: Mapping[str, Any]) -> bool:
        ts = event.get("ts")
        return event.get("kind") == kind and isinstance(ts, int | float) and ts >= since

    return bool(read_events(journal, 1, keep=match))

"""Reads a user's scenario file (YAML) into `Scenario`s, read as the topology is (`relevo.positioned`):
every error names the file, line and column and what was expected (exit status 2), unknown keys are
errors, and node names are checked against the topology before anything runs.

    version: 1
    scenarios:
      double-trouble:
        description: web1 dies, then web2 hangs while web1bck takes over
        load: {model: open, rate: 1500, duration: 12s}     # or {threads: 100, loops: 20, ramp_up: 1s}
        setup: {running: [web1, web2], in_rotation: [], controller: true}
        faults:
          - {at: 3s, kill: web1}
          - {at: 3.5s, hang: web2}
          - {at: 6s, resume: web2}
          - {at: 6.5s, after: failover, start: web1}    # and not before the controller's failover
          - {at: 7s, kill-controller: true}
        expect: {max_failed: 0, served_by: [web1bck], events: [failover]}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from relevo.controller.events import EventKind
from relevo.errors import TopologyError
from relevo.model import Role, Topology
from relevo.positioned import PositionedReader, compose_yaml, read_yaml_text
from relevo.providers.base import Impairment
from relevo.scenarios.model import (
    CONTROLLER_ACTIONS,
    LASTING_ACTIONS,
    OPEN_CONNECTIONS,
    OPEN_DURATION_S,
    OPEN_RATE_RPS,
    SEED_LOOPS,
    SEED_RAMP_UP_S,
    SEED_THREADS,
    SPANNED_ACTIONS,
    Action,
    Expectation,
    FaultStep,
    LoadSettings,
    Model,
    Scenario,
    Setup,
)

MAX_FILE_BYTES = 1 << 20
MAX_FAULTS = 1000
EVENT_KINDS = tuple(str(kind) for kind in EventKind)
# Each lasting fault's amounts: key -> (lowest, highest, unit, required).
AMOUNTS: dict[Action, dict[str, tuple[float, float, str, bool]]] = {
    Action.DELAY: {"ms": (1, 60_000, "milliseconds", True), "jitter": (0, 60_000, "milliseconds", False)},
    Action.SLOW: {"ms": (1, 60_000, "milliseconds", True)},
    Action.LOSS: {"pct": (0.01, 100, "a percentage", True)},
    Action.BANDWIDTH: {"kbit": (8, 10_000_000, "kbit/s", True)},
    Action.CPU_STARVE: {"pct": (1, 100, "a percentage of one core", True)},
}
AMOUNT_KEYS = ("ms", "jitter", "pct", "kbit")
# Actions that act on Apache (a web node), not on the balancer.
WEB_ONLY = frozenset({Action.HANG_WORKERS, Action.MAINTENANCE, Action.READY})


class ScenarioFileError(TopologyError):
    """A scenario file is wrong: the file, line and column, and what was expected (exit status 2)."""


def load_scenarios(path: Path, topology: Topology | None = None) -> dict[str, Scenario]:
    """The scenarios in `path`, in file order; node names checked against `topology` when given."""
    text = read_yaml_text(
        path,
        what="a scenario file",
        missing="no such scenario file",
        error=ScenarioFileError,
        max_bytes=MAX_FILE_BYTES,
    )
    return parse_scenarios(text, source=path, topology=topology)


def parse_scenarios(
    text: str, *, source: Path | None, topology: Topology | None = None
) -> dict[str, Scenario]:
    root = compose_yaml(text, source=source, error=ScenarioFileError)
    if root is None:
        raise ScenarioFileError("empty; expected `scenarios:` with at least one scenario", path=source)
    return _ScenarioReader(source, topology).file(root)


class _ScenarioReader:
    """The scenario file's sections, each value read where it stands (a `PositionedReader` raising
    `ScenarioFileError`), node names checked against the topology when one is given."""

    def __init__(self, source: Path | None, topology: Topology | None) -> None:
        self.read = PositionedReader(source, error=ScenarioFileError)
        self.known = topology

    def file(self, root: yaml.Node) -> dict[str, Scenario]:
        top = self.read.mapping(root, "top level", {"version", "scenarios"})
        if "version" in top:
            self.read.integer(top["version"], "version", low=1, high=1)
        if "scenarios" not in top:
            raise self.read.fail(root, "top level: missing `scenarios:` (a mapping of names to scenarios)")
        node = top["scenarios"]
        if not isinstance(node, yaml.MappingNode) or not node.value:
            raise self.read.fail(node, "scenarios: expected a mapping of scenario names to their settings")
        out: dict[str, Scenario] = {}
        for key_node, value_node in node.value:
            name = self.read.name(key_node, "scenarios")
            if name in out:
                raise self.read.fail(key_node, f"scenarios: duplicate scenario name {name!r}")
            out[name] = self.scenario(name, value_node)
        return out

    def scenario(self, name: str, node: yaml.Node) -> Scenario:
        where = f"scenarios.{name}"
        section = self.read.mapping(node, where, {"description", "load", "setup", "faults", "expect"})
        load = self.load(section.get("load"), f"{where}.load")
        return Scenario(
            name=name,
            description=self.read.string(section["description"], f"{where}.description")
            if "description" in section
            else name,
            load=load,
            setup=self.setup(section["setup"], f"{where}.setup") if "setup" in section else Setup(),
            faults=self.faults(section["faults"], f"{where}.faults", load) if "faults" in section else (),
            expect=self.expect(section["expect"], f"{where}.expect")
            if "expect" in section
            else Expectation(),
        )

    def load(self, node: yaml.Node | None, where: str) -> LoadSettings:
        if node is None:
            return LoadSettings.seed()
        keys = {"model", "threads", "loops", "ramp_up", "duration", "rate", "timeout"}
        section = self.read.mapping(node, where, keys)
        model = self.read.choice(section["model"], f"{where}.model", Model) if "model" in section else None
        if model is None:
            model = Model.OPEN if "rate" in section else Model.CLOSED
        values: dict[str, Any] = {"model": model}
        if "threads" in section:
            values["threads"] = self.read.integer(section["threads"], f"{where}.threads", low=1, high=100_000)
        if "loops" in section:
            values["loops"] = self.read.integer(section["loops"], f"{where}.loops", low=1, high=1_000_000)
        if "ramp_up" in section:
            values["ramp_up_s"] = self.read.duration(section["ramp_up"], f"{where}.ramp_up", low_s=0.0)
        if "duration" in section:
            values["duration_s"] = self.read.duration(section["duration"], f"{where}.duration", low_s=0.1)
        if "timeout" in section:
            values["timeout_s"] = self.read.duration(section["timeout"], f"{where}.timeout", high_s=600)
        if "rate" in section:
            rate = self.read.scalar(section["rate"], f"{where}.rate")
            if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate <= 1_000_000:
                raise self.read.fail(
                    section["rate"], f"{where}.rate: expected requests per second above 0, got {rate!r}"
                )
            values["rate_rps"] = float(rate)
        if model is Model.OPEN:
            if "loops" in section:
                raise self.read.fail(
                    section["loops"], f"{where}.loops: the open model sends rate x duration; no loops"
                )
            values.setdefault("rate_rps", OPEN_RATE_RPS)
            values.setdefault("duration_s", OPEN_DURATION_S)
            values.setdefault("threads", OPEN_CONNECTIONS)
            values.setdefault("ramp_up_s", 0.0)
            values["loops"] = None
        else:
            if "rate" in section:
                raise self.read.fail(section["rate"], f"{where}.rate: a rate needs `model: open`")
            if "loops" in section and "duration" in section:
                raise self.read.fail(section["duration"], f"{where}: give loops or duration, not both")
            values.setdefault("threads", SEED_THREADS)
            values.setdefault("ramp_up_s", SEED_RAMP_UP_S)
            if "duration" in section:
                values["loops"] = None
            else:
                values.setdefault("loops", SEED_LOOPS)
        return LoadSettings(**values)

    def setup(self, node: yaml.Node, where: str) -> Setup:
        section = self.read.mapping(node, where, {"running", "in_rotation", "controller"})
        running = (
            self.web_names(section["running"], f"{where}.running", Role.WEB, Role.STANDBY)
            if "running" in section
            else None
        )
        rotation = (
            self.web_names(section["in_rotation"], f"{where}.in_rotation", Role.STANDBY)
            if "in_rotation" in section
            else ()
        )
        if running is not None:
            for name in rotation:
                if name not in running:
                    raise self.read.fail(
                        section["in_rotation"],
                        f"{where}.in_rotation: {name} must also be in `running`",
                    )
        controller = True
        if "controller" in section:
            value = self.read.scalar(section["controller"], f"{where}.controller")
            if not isinstance(value, bool):
                raise self.read.fail(section["controller"], f"{where}.controller: expected true or false")
            controller = value
        return Setup(running=running, in_rotation=rotation, controller=controller)

    def faults(self, node: yaml.Node, where: str, load: LoadSettings) -> tuple[FaultStep, ...]:
        if not isinstance(node, yaml.SequenceNode):
            raise self.read.fail(node, f"{where}: expected a list such as `- {{at: 3s, kill: web1}}`")
        if len(node.value) > MAX_FAULTS:
            raise self.read.fail(node, f"{where}: more than {MAX_FAULTS} faults")
        actions = {a.value for a in Action}
        out: list[FaultStep] = []
        for i, item in enumerate(node.value):
            here = f"{where}[{i}]"
            section = self.read.mapping(item, here, {"at", "after", "for", *AMOUNT_KEYS, *actions})
            if "at" not in section:
                raise self.read.fail(item, f"{here}: missing `at:` (when, after the load starts, e.g. 3s)")
            after = None
            if "after" in section:
                after = self.read.string(section["after"], f"{here}.after")
                if after not in EVENT_KINDS:
                    raise self.read.fail(
                        section["after"],
                        f"{here}.after: expected a controller event, one of: {', '.join(EVENT_KINDS)}",
                    )
            named = [k for k in section if k not in ("at", "after", "for", *AMOUNT_KEYS)]
            if len(named) != 1:
                raise self.read.fail(
                    item, f"{here}: expected exactly one action, one of: {', '.join(sorted(actions))}"
                )
            action = Action(named[0])
            at = self.read.duration(section["at"], f"{here}.at", low_s=0.0)
            value_node = section[named[0]]
            for_s = self.span(section, here, action, at, load)
            amount = self.amount(section, here, action, item)
            line = item.start_mark.line + 1
            if action in CONTROLLER_ACTIONS:
                if self.read.scalar(value_node, f"{here}.{action}") is not True:
                    raise self.read.fail(value_node, f"{here}.{action}: expected `true` (it names no node)")
                out.append(FaultStep(at_s=at, action=action, after=after))
                continue
            roles: tuple[Role, ...] = (Role.WEB, Role.STANDBY)
            if action not in WEB_ONLY:
                roles = (*roles, Role.BALANCER)
            node_name = self.node_name(value_node, f"{here}.{action}", roles)
            out.append(
                FaultStep(
                    at_s=at,
                    action=action,
                    node=node_name,
                    after=after,
                    for_s=for_s,
                    amount=amount,
                    line=line,
                )
            )
        return tuple(sorted(out, key=lambda f: f.at_s))

    def span(
        self, section: dict[str, yaml.Node], here: str, action: Action, at: float, load: LoadSettings
    ) -> float | None:
        """`for:` a lasting fault's or a hang's span, which must end inside the load (when it has a
        known length)."""
        if "for" not in section:
            return None
        if action not in SPANNED_ACTIONS:
            spanned = ", ".join(sorted(str(a) for a in SPANNED_ACTIONS))
            raise self.read.fail(
                section["for"], f"{here}.for: {action} has no span; `for:` goes with {spanned}"
            )
        for_s = self.read.duration(section["for"], f"{here}.for", low_s=0.001, high_s=3600.0)
        if load.duration_s is not None and at + for_s > load.duration_s:
            raise self.read.fail(
                section["for"],
                f"{here}.for: the fault would end at {at + for_s:g} s, after the load's end at "
                f"{load.duration_s:g} s (every fault is healed inside the run)",
            )
        return for_s

    def amount(
        self, section: dict[str, yaml.Node], here: str, action: Action, item: yaml.Node
    ) -> Impairment | None:
        """A lasting fault's amount: exactly the keys its kind takes, each within bounds."""
        wanted = AMOUNTS.get(action, {})
        for key in section:
            if key in AMOUNT_KEYS and key not in wanted:
                takes = ", ".join(wanted) or "no amount"
                raise self.read.fail(section[key], f"{here}.{key}: {action} takes {takes}")
        if action not in LASTING_ACTIONS:
            return None
        values: dict[str, float] = {}
        for key, (low, high, unit, required) in wanted.items():
            if key not in section:
                if required:
                    raise self.read.fail(
                        item, f"{here}: {action} needs `{key}:` ({unit}, {low:g} to {high:g})"
                    )
                continue
            value = self.read.scalar(section[key], f"{here}.{key}")
            if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
                raise self.read.fail(
                    section[key], f"{here}.{key}: expected {unit} from {low:g} to {high:g}, got {value!r}"
                )
            values[key] = float(value)
        if "jitter" in values and values["jitter"] > values.get("ms", 0.0):
            raise self.read.fail(section["jitter"], f"{here}.jitter: at most the delay itself (`ms`)")
        return Impairment(
            fault=LASTING_ACTIONS[action],
            ms=values.get("ms", 0.0),
            jitter_ms=values.get("jitter", 0.0),
            pct=values.get("pct", 0.0),
            kbit=int(values.get("kbit", 0)),
        )

    def expect(self, node: yaml.Node, where: str) -> Expectation:
        keys = {"max_failed", "min_error_pct", "error_codes", "served_by", "events"}
        section = self.read.mapping(node, where, keys)
        values: dict[str, Any] = {}
        if "max_failed" in section:
            values["max_failed"] = self.read.integer(
                section["max_failed"], f"{where}.max_failed", low=0, high=1 << 40
            )
        if "min_error_pct" in section:
            pct = self.read.scalar(section["min_error_pct"], f"{where}.min_error_pct")
            if isinstance(pct, bool) or not isinstance(pct, int | float) or not 0 <= pct <= 100:
                raise self.read.fail(section["min_error_pct"], f"{where}.min_error_pct: expected 0 to 100")
            values["min_error_pct"] = float(pct)
        if "error_codes" in section:
            values["error_codes"] = tuple(
                str(self.read.scalar(item, f"{where}.error_codes"))
                for item in self.sequence(section["error_codes"], f"{where}.error_codes")
            )
        if "served_by" in section:
            values["served_by"] = self.web_names(
                section["served_by"], f"{where}.served_by", Role.WEB, Role.STANDBY
            )
        if "events" in section:
            values["events"] = tuple(
                self.read.string(item, f"{where}.events") for item in self.sequence(section["events"], where)
            )
        return Expectation(**values)

    # -- names, checked against the topology when there is one -------------------------------------------
    def sequence(self, node: yaml.Node, where: str) -> list[yaml.Node]:
        if not isinstance(node, yaml.SequenceNode):
            raise self.read.fail(node, f"{where}: expected a list such as [web1, web2]")
        return list(node.value)

    def web_names(self, node: yaml.Node, where: str, *roles: Role) -> tuple[str, ...]:
        names = [self.node_name(item, where, roles) for item in self.sequence(node, where)]
        return tuple(dict.fromkeys(names))

    def node_name(self, node: yaml.Node, where: str, roles: tuple[Role, ...]) -> str:
        name = self.read.name(node, where)
        if self.known is None:
            return name
        if self.known.is_balancer(name):
            role = Role.BALANCER
        else:
            try:
                role = self.known.node(name).role
            except KeyError:
                known = ", ".join(self.known.node_names)
                raise self.read.fail(
                    node, f"{where}: no node named {name!r} in the topology; nodes: {known}"
                ) from None
        if role not in roles:
            wanted = " or ".join(str(r) for r in roles)
            raise self.read.fail(node, f"{where}: {name} is the {role}; expected a {wanted} node")
        return name

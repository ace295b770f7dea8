"""What the dashboard shows, gathered from where relevo's other commands read it: HAProxy's counters
through its Runtime API (`show stat`), each node's state from its provider, the controller's view from
its state file, and the journal as it is appended.

Each source can be unreachable on its own (HAProxy stopped, no controller, a provider that errs): a
sample then says which source it could not reach and why, keeps what the others gave, and the next
sample tries again, so the page catches up by itself when a source returns. Rates are differences of
HAProxy's counters between two samples; a counter that went back (HAProxy restarted) starts afresh.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from relevo.controller.daemon import controller_status
from relevo.controller.journal import read_events, rotated
from relevo.dashboard.access_log import AccessLogReceiver
from relevo.haproxy.runtime import RuntimeAPI
from relevo.model import Role, Topology
from relevo.paths import StatePaths
from relevo.providers.base import NodeState
from relevo.services.haproxy import runtime_sockets

HISTORY_S = 300.0  # the charts' window: the last five minutes
# A run's point is drawn at the samples up to this long after it (the run and the dashboard tick at the
# same pace but not in step: without it, every other sample would show a gap).
LOAD_POINT_FRESH_S = 1.0
LOAD_MARKERS_KEPT = 200
JOURNAL_KEPT = 300  # journal lines the page starts with
RUNTIME_TIMEOUT_S = 0.5  # a sample must not wait long for a hung HAProxy


@dataclass(frozen=True, slots=True)
class Stat:
    """The counters of one `show stat` line that the dashboard uses."""

    status: str = ""
    sessions: int = 0
    requests: int = 0
    errors: int = 0  # 5xx answers and failed requests (frontend), failed connections and answers (server)
    rtime_ms: int = 0  # HAProxy's average response time over the last 1024 requests
    rtime_max_ms: int = 0
    check: str = ""


def parse_stat(text: str) -> dict[tuple[str, str], Stat]:
    """`show stat` as {(proxy, server): Stat}; FRONTEND and BACKEND lines keep those names."""
    found: dict[tuple[str, str], Stat] = {}
    for row in csv.DictReader(io.StringIO(text.lstrip("# "))):
        if not row.get("pxname"):
            continue

        def number(key: str, row: dict[str, str] = row) -> int:
            with contextlib.suppress(ValueError, TypeError):
                return int(row.get(key) or 0)
            return 0

        errors = number("hrsp_5xx") + number("ereq") + number("econ") + number("eresp")
        found[(row["pxname"], row["svname"])] = Stat(
            status=row.get("status", ""),
            sessions=number("scur"),
            requests=number("req_tot") or number("stot"),
            errors=errors,
            rtime_ms=number("rtime"),
            rtime_max_ms=number("rtime_max"),
            check=row.get("check_status", ""),
        )
    return found


class JournalTail:
    """The journal's new lines since the last call (a rotation or a new file starts it over)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._inode: int | None = None
        self._offset = 0
        self._partial = b""
        self.started = False

    def start(self, keep: int = JOURNAL_KEPT) -> list[dict[str, Any]]:
        """The last `keep` events, and the place to follow on from."""
        self.started = True
        with contextlib.suppress(OSError):
            info = self.path.stat()
            self._inode, self._offset = info.st_ino, info.st_size
        return read_events(self.path, keep)

    def new(self) -> list[dict[str, Any]]:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return []
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            fresh: list[dict[str, Any]] = []
            if info.st_ino != self._inode or info.st_size < self._offset:
                # Rotated (events.jsonl became .1) or removed and begun again: what was added to the old
                # file after our last read is at the end of .1; the new file is read from its start.
                if self._inode is not None:
                    fresh += _rest_of(rotated(self.path), self._inode, self._offset)
                self._inode, self._offset, self._partial = info.st_ino, 0, b""
            handle.seek(self._offset)
            chunk = handle.read()
        self._offset += len(chunk)
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        for line in lines:
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict):
                    fresh.append(record)
        return fresh


def _rest_of(path: Path, inode: int, offset: int) -> list[dict[str, Any]]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return []
    with os.fdopen(fd, "rb") as handle:
        if os.fstat(handle.fileno()).st_ino != inode:
            return []
        handle.seek(offset)
        lines = handle.read().split(b"\n")
    found = []
    for line in lines:
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict):
                found.append(record)
    return found


StatesFn = Callable[[list[str]], Mapping[str, NodeState]]


@dataclass
class Collector:
    """Samples the cluster; `sample()` is called every push interval by the app (in a worker thread)."""

    topology: Topology
    states: StatesFn
    # Each balancer's Runtime API by name (a pair has two; fakes with `command` in tests).
    runtimes: Mapping[str, Any] = field(default_factory=dict)
    clock: Callable[[], float] = time.time
    history_s: float = HISTORY_S
    series: deque[dict[str, Any]] = field(default_factory=deque)
    journal: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=JOURNAL_KEPT))
    _last: tuple[float, dict[tuple[str, str], Stat]] | None = None
    _tail: JournalTail | None = None
    latest: dict[str, Any] = field(default_factory=dict)
    # The run in progress (relevo bench or scenarios against this cluster), from its live feed.
    run: dict[str, Any] | None = None
    load_markers: list[dict[str, Any]] = field(default_factory=list)
    _load_tail: JournalTail | None = None
    _load_point: dict[str, Any] | None = None
    # HAProxy's request log (AccessLogReceiver): latency percentiles and errors/s with or without a run.
    requests: AccessLogReceiver | None = None

    def __post_init__(self) -> None:
        paths = StatePaths(self.topology.state_dir).held()
        if not self.runtimes:
            self.runtimes = {
                name: RuntimeAPI(path, timeout_s=RUNTIME_TIMEOUT_S)
                for name, path in runtime_sockets(self.topology).items()
            }
        self._tail = JournalTail(paths.events)
        self._load_tail = JournalTail(paths.load_feed)  # never started: read from the run's beginning

    # -- the parts ---------------------------------------------------------------------------------------
    def haproxy(self) -> tuple[dict[tuple[str, str], Stat] | None, dict[str, str]]:
        """Every balancer's `show stat`, merged (a pair's counters added up: both take traffic), and
        why each balancer that did not answer did not."""
        answers: list[dict[tuple[str, str], Stat]] = []
        errors: dict[str, str] = {}
        for name, runtime in self.runtimes.items():
            try:
                answers.append(parse_stat(runtime.command("show stat")))
            except Exception as exc:  # any failure is "cannot reach this HAProxy", shown on the page
                errors[name] = f"its Runtime API does not answer: {exc}"
        return (merge(answers) if answers else None), errors

    def provider(self) -> tuple[Mapping[str, NodeState], str | None]:
        try:
            return self.states(list(self.topology.node_names)), None
        except Exception as exc:  # a provider error is shown, never fatal
            return {}, f"the provider does not answer: {exc}"

    def controller(self) -> tuple[dict[str, Any], str | None]:
        try:
            status = controller_status(self.topology)
        except Exception as exc:  # an unreadable state file is shown, never fatal
            return {}, f"cannot read the controller's state: {exc}"
        if not status.get("running"):
            return status, "no failover controller runs"
        if not status.get("ticking"):
            return status, f"the controller has not ticked for {status.get('last_tick_age_s')} s"
        return status, None

    def new_events(self) -> tuple[list[dict[str, Any]], str | None]:
        assert self._tail is not None
        try:
            fresh = self._tail.new() if self._tail.started else self._tail.start()
        except Exception as exc:  # a journal that cannot be read: shown, tried again
            return [], f"cannot read the journal: {exc}"
        self.journal.extend(fresh)
        return fresh, None

    def load(self) -> tuple[list[dict[str, Any]], str | None]:
        """The run's new lines: its beginning and end, points (kept for the next chart point) and fault
        markers (returned, for the pages)."""
        assert self._load_tail is not None
        try:
            records = self._load_tail.new()
        except Exception as exc:  # shown, tried again
            return [], f"cannot read the run's live feed: {exc}"
        markers: list[dict[str, Any]] = []
        for record in records:
            kind, t = record.get("kind"), record.get("t")
            if not isinstance(t, int | float):
                continue
            if kind == "run":
                self.run = {"what": str(record.get("what", "a run")), "t": t, "pid": record.get("pid")}
                self._load_point = None
                markers.append({"t": t, "kind": "run", "label": "run started", "title": self.run["what"]})
            elif kind == "point":
                self._load_point = record
            elif kind == "marker":
                end = record.get("end")
                markers.append(
                    {
                        "t": t,
                        "kind": "fault",
                        "label": str(record.get("label", "")),
                        "title": f"the run: {record.get('label', '')} ({record.get('action', '')})",
                        "end": end if isinstance(end, int | float) else None,
                    }
                )
            elif kind == "end" and self.run is not None:
                self.run = {**self.run, "ended": t}
                markers.append({"t": t, "kind": "run", "label": "run ended", "title": self.run["what"]})
        self.load_markers = (self.load_markers + markers)[-LOAD_MARKERS_KEPT:]
        return markers, None

    def load_point(self, now: float) -> dict[str, Any] | None:
        point = self._load_point
        if point is None or now - point["t"] > LOAD_POINT_FRESH_S:
            return None
        return {key: point.get(key) for key in ("rps", "errors", "p50_ms", "p99_ms", "n")}

    # -- one sample ------------------------------------------------------------------------------------------
    def sample(self) -> dict[str, Any]:
        """Read every source once; return the update pushed to the pages (also kept as `latest`)."""
        now = self.clock()
        stats, haproxy_errors = self.haproxy()
        states, provider_error = self.provider()
        controller, controller_error = self.controller()
        events, journal_error = self.new_events()
        markers, load_error = self.load()
        logged = self.requests.summary(now) if self.requests is not None else None
        point = self.point(now, stats, self.load_point(now), logged)
        if point is not None:
            self.series.append(point)
        while self.series and self.series[0]["t"] < now - self.history_s:
            self.series.popleft()
        unreachable = {f"haproxy {name}": error for name, error in haproxy_errors.items()}
        self.latest = {
            "t": now,
            "unreachable": unreachable
            | {
                source: error
                for source, error in (
                    ("controller", controller_error),
                    ("provider", provider_error),
                    ("journal", journal_error),
                    ("the run's feed", load_error),
                    ("haproxy's request log", self.requests.error if self.requests is not None else None),
                )
                if error
            },
            "nodes": self.nodes(stats, states, controller, set(haproxy_errors)),
            "controller": {
                "running": bool(controller.get("running")),
                "pid": controller.get("pid"),
                "ticking": bool(controller.get("ticking")),
            },
            "point": point,
            "events": events,
            "run": self.run,
            "markers": markers,
        }
        return self.latest

    def point(
        self,
        now: float,
        stats: dict[tuple[str, str], Stat] | None,
        load: dict[str, Any] | None = None,
        logged: dict[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        """One point of the charts: HAProxy's rates since the previous sample (None without two
        readings), the run's latest point (`load`, None without a run) and the last second of HAProxy's
        request log (`log`: None without a receiver or without a request). None when none of them."""
        rates = self.rates(now, stats)
        log = logged if logged is not None and logged["n"] > 0 else None
        if rates is None and load is None and log is None:
            return None
        if rates is None:
            rates = {"rps": {}, "errors": None, "rtime_ms": None, "rtime_max_ms": None}
        return {"t": round(now, 3), **rates, "load": load, "log": log}

    def rates(self, now: float, stats: dict[tuple[str, str], Stat] | None) -> dict[str, Any] | None:
        if stats is None:
            self._last = None
            return None
        last, self._last = self._last, (now, stats)
        if last is None or now <= last[0]:
            return None
        span = now - last[0]
        backend, frontend = self.topology.balancer.BACKEND, self.topology.balancer.FRONTEND

        def rate(key: tuple[str, str], counter: str) -> float:
            before, after = last[1].get(key), stats.get(key)
            if before is None or after is None:
                return 0.0
            delta = getattr(after, counter) - getattr(before, counter)
            return max(0.0, float(delta) / span)  # a restarted HAProxy counts from 0 again

        servers = [n.name for n in self.topology.nodes]
        totals = stats.get((backend, "BACKEND"), Stat())
        return {
            "rps": {name: round(rate((backend, name), "requests"), 1) for name in servers},
            "errors": round(rate((frontend, "FRONTEND"), "errors") + rate((backend, "BACKEND"), "errors"), 1),
            "rtime_ms": totals.rtime_ms,
            "rtime_max_ms": totals.rtime_max_ms,
        }

    def nodes(
        self,
        stats: dict[tuple[str, str], Stat] | None,
        states: Mapping[str, NodeState],
        controller: Mapping[str, Any],
        silent: frozenset[str] | set[str] = frozenset(),
    ) -> dict[str, Any]:
        """Each node as the picture shows it: process state, HAProxy's health and admin state, its
        condition in one word, sessions and requests per second, which primary a standby serves for."""
        backend = self.topology.balancer.BACKEND
        point = self.series[-1] if self.series else {"rps": {}}
        seen = controller.get("nodes") or {}
        front = stats.get((self.topology.balancer.FRONTEND, "FRONTEND")) if stats is not None else None
        out: dict[str, Any] = {}
        for balancer in self.topology.balancers:
            state = _state(self.topology, balancer.name, states.get(balancer.name), {})
            answering = balancer.name not in silent
            hung = state in ("paused", "frozen")
            condition = "serving" if answering else ("hung" if hung else "down")
            out[balancer.name] = {
                "state": state,
                "haproxy": "answering" if answering else "not answering",
                "condition": condition,
                "sessions": front.sessions if front and len(self.runtimes) == 1 else None,
                "rps": sum(point["rps"].values()) if front and point["rps"] else None,
            }
        for node in self.topology.nodes:
            stat = stats.get((backend, node.name)) if stats is not None else None
            view = seen.get(node.name) or {}
            state = _state(self.topology, node.name, states.get(node.name), view)
            health = _health(stat.status) if stat else "-"
            condition = _condition(node.role, state, health)
            serving_for = node.standby_for if node.standby_for and condition == "serving" else None
            out[node.name] = {
                "state": state,
                "health": health,
                "check": stat.check if stat else "",
                "sessions": stat.sessions if stat else None,
                "rps": point["rps"].get(node.name),
                "condition": condition,
                "serving_for": serving_for,
                "probe": view.get("probe"),
                "failing_over_s": view.get("failing_over_s"),
            }
        return out

    def snapshot(self) -> dict[str, Any]:
        """What a page gets when it (re)connects: the layout, the charts' history, the journal so far."""
        return {
            "topology": layout(self.topology),
            "series": list(self.series),
            "journal": list(self.journal),
            "latest": {**self.latest, "events": [], "markers": []},
            "markers": list(self.load_markers),
        }


def merge(answers: list[dict[tuple[str, str], Stat]]) -> dict[tuple[str, str], Stat]:
    """Balancers' counters added up; the state words (status, check) are the first balancer's."""
    merged = dict(answers[0])
    for other in answers[1:]:
        for key, stat in other.items():
            first = merged.get(key)
            if first is None:
                merged[key] = stat
                continue
            merged[key] = Stat(
                status=first.status,
                sessions=first.sessions + stat.sessions,
                requests=first.requests + stat.requests,
                errors=first.errors + stat.errors,
                rtime_ms=max(first.rtime_ms, stat.rtime_ms),
                rtime_max_ms=max(first.rtime_max_ms, stat.rtime_max_ms),
                check=first.check,
            )
    return merged


def _health(status: str) -> str:
    word = status.split(" ", 1)[0]
    return "MAINT" if word.startswith("MAINT") else word


def _state(topology: Topology, name: str, state: NodeState | None, view: Mapping[str, Any]) -> str:
    """The provider's state in the provider's words (an LXD container is frozen, a process paused), or
    `starting` while the controller waits for a standby it started."""
    if view.get("starting") and state is not NodeState.PAUSED:
        return "starting"
    if state is None:
        return "unknown"
    balancers = {b.name: b.provider for b in topology.balancers}
    provider = balancers[name] if name in balancers else topology.node(name).provider
    if state is NodeState.PAUSED and provider != "local":
        return "frozen"
    return str(state)


def _condition(role: Role, state: str, health: str) -> str:
    """One word for the picture. The provider's word comes first: a killed server that HAProxy still
    counts UP until its checks fail is down already."""
    if state in ("paused", "frozen"):
        return "hung"
    if state in ("stopped", "missing"):
        return "idle" if role is Role.STANDBY else "down"
    if health == "DRAIN":
        return "draining"
    if health in ("UP", "NOLB"):
        return "serving"
    if state == "starting":
        return "starting"
    if health == "MAINT":
        return "idle" if role is Role.STANDBY else "maint"
    if health == "-":
        return "unknown"  # running, and HAProxy cannot be asked what it makes of it
    return "down"


def layout(topology: Topology) -> dict[str, Any]:
    """The picture's shape: the balancers (a list: one today, a pair with its VIP later), each primary
    with its standby, and the controller."""
    return {
        "cluster": topology.name,
        "balancers": [
            {
                "name": b.name,
                "provider": b.provider,
                "frontend": b.frontend.url + "/",
                "stats": b.stats.url + "/stats",
            }
            for b in topology.balancers
        ],
        "vip": topology.pair.vip if topology.pair is not None else None,
        "nodes": [
            {
                "name": n.name,
                "role": str(n.role),
                "standby_for": n.standby_for,
                "address": f"{n.address}:{n.port}",
                "provider": n.provider,
            }
            for n in topology.nodes
        ],
    }

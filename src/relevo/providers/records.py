"""A local node's record in the state directory: written before its processes can serve, proven after.

Starting a daemon and learning its pid cannot be one step, so the record comes first: `intend` writes
"this node is being started as KIND" (a failed write, a full disk, stops the start before anything
runs); the daemon then writes its own pid file, and `load` adopts the process it names into a full
record. A crash at any instant between the two leaves an intent that the next reader (status, stop,
down, a controller tick, up) adopts or, once it is stale and nothing runs, clears.

Nothing in a record is trusted as written: where a node's config and pid file live, and which program
runs it, follow from the node's name and kind; the record must claim exactly those, and the live process
must prove them (start time, executable, the config path on its command line).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relevo.files import ensure_dir, open_nofollow, read_or_empty, write_atomic
from relevo.paths import StatePaths
from relevo.procs import ProcessRecord, find_by_config, is_ours, proven_members

LOG = logging.getLogger("relevo.records")
HAPROXY = "haproxy"
APACHE = "apache"
KINDS = (HAPROXY, APACHE)
# An intent older than this with nothing to adopt belongs to a start that died or gave up.
STALE_INTENT_S = 30.0


@dataclass(frozen=True, slots=True)
class ExpectedProcess:
    """What a node's process must be: derived from its name and kind, never read from the record."""

    kind: str
    exe: str
    config: Path
    pid_file: Path


class NodeRecords:
    """The records under `run/nodes/`, one per node (the controller's own record is in `run/`)."""

    def __init__(self, paths: StatePaths) -> None:
        self.paths = paths
        self._corrupt: set[str] = set()  # records set aside, whose node is to be looked for

    @property
    def _at(self) -> StatePaths:
        return self.paths.held()  # never by name once the state directory is claimed

    def intend(self, node: str, kind: str) -> None:
        """Record that `node` is about to be started (raises StateWriteError, with nothing started)."""
        path = self._at.pid_file(node)
        ensure_dir(path.parent)
        write_atomic(path, json.dumps({"intent": kind, "since": time.time()}))

    def kind(self, node: str) -> str | None:
        """The kind a record (or an intent) names, when it names a known one."""
        data = self._data(node)
        kind = data.get("intent", data.get("kind")) if data else None
        return kind if kind in KINDS else None

    def load(self, node: str, expected: ExpectedProcess) -> ProcessRecord | None:
        """The node's process when the record names it and it is provably ours; an intent is adopted
        from the daemon's pid file on the way. None when nothing of ours runs."""
        data = self._data(node)
        if data is None:
            if node in self._corrupt:
                self._corrupt.discard(node)
                return self._find(node, expected)
            return None
        if "intent" in data:
            return self._adopt_intent(node, data, expected)
        try:
            record = ProcessRecord(
                pid=int(data["pid"]),
                start_time=int(data["start_time"]),
                pgid=int(data["pgid"]),
                exe=str(data["exe"]),
                config=str(data["config"]),
            )
        except (KeyError, TypeError, ValueError):
            return None
        if data.get("kind") != expected.kind or not record.names(exe=expected.exe, config=expected.config):
            return None  # not a record of ours: never honoured, whatever process it names
        return record

    def adopt(self, node: str, expected: ExpectedProcess) -> ProcessRecord | None:
        """Turn the daemon's pid file into the node's full record, if it names a process of ours."""
        text = read_or_empty(expected.pid_file).strip()
        if not text.isdigit():
            return None
        record = ProcessRecord.of(int(text), config=str(expected.config))
        if record is None or not record.names(exe=expected.exe, config=expected.config):
            return None
        if not is_ours(record):
            return None
        self.save(node, expected.kind, record)
        return record

    def save(self, node: str, kind: str, record: ProcessRecord) -> None:
        data = {
            "kind": kind,
            "pid": record.pid,
            "start_time": record.start_time,
            "pgid": record.pgid,
            "exe": record.exe,
            "config": record.config,
        }
        write_atomic(self._at.pid_file(node), json.dumps(data))

    def clear(self, node: str) -> None:
        self._at.pid_file(node).unlink(missing_ok=True)

    def recorded(self) -> list[str]:
        """Every node name with a record or an intent (whatever the topology says now)."""
        return [name for name in self._listed() if self.kind(name) is not None]

    def intended(self) -> list[str]:
        """The recorded nodes whose record is still an intent: a start not yet adopted, or cut short.
        Each record read once: the controller asks every tick."""
        return [name for name in self._listed() if (self._data(name) or {}).get("intent") in KINDS]

    def _listed(self) -> list[str]:
        """The names of the record files in run/ (an earlier relevo's, in run/ itself, moved there first)."""
        run = self._at.pid_file("x").parent
        with contextlib.suppress(OSError):
            for entry in run.parent.iterdir():  # records an earlier relevo wrote in run/ itself
                if entry.suffix == ".json" and entry != self._at.controller_pid:
                    self._adopt_legacy(entry.stem)
        try:
            return sorted(entry.stem for entry in run.iterdir() if entry.suffix == ".json")
        except OSError:
            return []

    def _adopt_intent(
        self, node: str, data: dict[str, Any], expected: ExpectedProcess
    ) -> ProcessRecord | None:
        if data.get("intent") != expected.kind:
            return None
        try:
            record = self.adopt(node, expected)
        except OSError:
            return None  # a full disk: the intent stays, and the next reader tries again
        if record is not None:
            return record
        since = data.get("since")
        if isinstance(since, int | float) and time.time() - since > STALE_INTENT_S:
            self.clear(node)
        return None

    def _adopt_legacy(self, node: str) -> None:
        """A record an earlier relevo kept at run/NODE.json moves to run/nodes/ (once), so that a cluster
        started before an upgrade is still stopped by its records. Read as any record: never trusted."""
        legacy = self._at.controller_pid.parent / f"{node}.json"
        if legacy == self._at.controller_pid or not legacy.is_file() or legacy.is_symlink():
            return
        target = self._at.pid_file(node)
        with contextlib.suppress(OSError):
            ensure_dir(target.parent)
            if not target.exists():
                legacy.replace(target)

    def _data(self, node: str) -> dict[str, Any] | None:
        self._adopt_legacy(node)
        try:
            raw = open_nofollow(self._at.pid_file(node), limit=64 * 1024)
        except OSError:
            return None
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        if isinstance(data, dict):
            return data
        self._set_aside(node)
        return None

    def _set_aside(self, node: str) -> None:
        """A record that is not JSON of ours (a torn write, garbage) is moved out of the way, said so, and
        the node is looked for by its config on a command line when next loaded."""
        path = self._at.pid_file(node)
        aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
        try:
            path.replace(aside)
        except OSError:
            return
        self._corrupt.add(node)
        LOG.warning(
            "relevo: %s is not a record relevo wrote: set aside as %s; %s is looked for by its config "
            "on the command line",
            self.paths.real(path),
            aside.name,
            node,
        )

    def _find(self, node: str, expected: ExpectedProcess) -> ProcessRecord | None:
        """After a corrupt record: the node's process found by its executable and its config on the
        command line (our user's, leading its own group), recorded again."""
        record = find_by_config(exe=expected.exe, config=str(expected.config))
        if record is None:
            return None
        with contextlib.suppress(OSError):
            self.save(node, expected.kind, record)
        return record


def lingering(record: ProcessRecord) -> bool:
    """Something of the node still runs: its leader, or members of its group proven ours."""
    return is_ours(record) or bool(proven_members(record))

"""The records of lasting faults, one per node (faults/NODE.json in the state directory), shared by every
provider that applies them: written before a fault is applied, read back to undo exactly what it names
(by this relevo, or by the next `scenarios`, `up` or `down` after one that died mid-span), removed once
undone. Nothing else is trusted: a record that cannot be read is no record."""

from __future__ import annotations

import json
from pathlib import Path

from relevo.files import ensure_dir, open_nofollow, write_atomic
from relevo.paths import StatePaths

RECORD_MAX_BYTES = 64 * 1024


class FaultRecords:
    def __init__(self, paths: StatePaths) -> None:
        self.directory: Path = paths.held().root / "faults"  # never by the directory's name (see anchor)

    def save(self, node: str, record: dict[str, object]) -> None:
        ensure_dir(self.directory)
        write_atomic(self.directory / f"{node}.json", json.dumps(record))

    def load(self, node: str) -> dict[str, object] | None:
        try:
            data = json.loads(open_nofollow(self.directory / f"{node}.json", limit=RECORD_MAX_BYTES))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def remove(self, node: str) -> None:
        (self.directory / f"{node}.json").unlink(missing_ok=True)

    def nodes(self) -> list[str]:
        """The nodes with a lasting fault recorded."""
        if not self.directory.is_dir():
            return []
        return sorted(p.stem for p in self.directory.glob("*.json"))

"""The one progress type: what a long operation says as it goes, one line at a time.

    def up(topology, *, progress: Progress = quiet) -> ...: progress("starting web1")

Every layer takes a `Progress` and never prints: the command line decides how lines are shown (on a
terminal folded to its width, in a pipe whole: `cli.common.say`). A load run's counters are a different
thing, `loadgen.engine.LoadProgress`, shown by `report.progress.ProgressLine`.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str], None]


def quiet(_line: str) -> None:
    """The default: say nothing."""

"""What relevo.yaml and the command line share: one grammar for durations, and "did you mean".

Durations read as Go's and k6's do: a number with a unit, units in decreasing order and combined
(`250ms`, `2s`, `1m30s`, `1h`), or a plain number of seconds.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

UNITS_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
DURATION_EXAMPLES = "250ms, 2s, 1m30s, 1h"


def parse_duration(value: object) -> float:
    """Seconds; ValueError when `value` is not a duration."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration (examples: {DURATION_EXAMPLES})")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = str(value).strip().lower().replace(" ", "")
        try:
            seconds = float(text)
        except ValueError:
            parts = _PART.findall(text)
            units = [unit for _, unit in parts]
            order = [list(UNITS_S).index(unit) for unit in units]
            if (
                not parts
                or "".join(n + u for n, u in parts) != text
                or order != sorted(set(order))  # each unit once, largest first: 1m30s, not 30s1m
            ):
                raise ValueError(f"{value!r} is not a duration (examples: {DURATION_EXAMPLES})") from None
            seconds = sum(float(n) * UNITS_S[u] for n, u in parts)
    if seconds != seconds or seconds < 0 or seconds == float("inf"):
        raise ValueError(f"{value!r} is not a duration (examples: {DURATION_EXAMPLES})")
    return seconds


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """ " (did you mean 'x'?)" for the closest choice, or "" when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""

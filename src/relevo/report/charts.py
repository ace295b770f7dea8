"""Each scenario's run over time, drawn with matplotlib: throughput, p50/p99 latency, errors per second
and requests per server, one panel each on a shared time axis, with the faults and the controller's
events as vertical markers on every panel.

One figure gives both outputs: an SVG string for the HTML report (text kept as <text>, so the figure
needs no font files and no network) and a PNG file. Elements carry ids (matplotlib's `gid`) so that a
test, or a reader's browser, can find each chart and each marker:
`<slug>--chart--<metric>` for a panel, `<slug>--marker--<metric>--<n>` for a marker on it.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from relevo.scenarios.result import Marker, ScenarioResult

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

METRICS = ("throughput", "latency", "errors", "servers")
TITLES = {
    "throughput": "throughput (responses/s)",
    "latency": "latency (ms)",
    "errors": "errors per second",
    "servers": "requests per server (per second)",
}
# Marker colours: faults relevo injected in red, the controller's answers in other colours.
MARKER_COLOURS = {
    "fault": "#d62728",
    "failover": "#2ca02c",
    "failback": "#1f77b4",
    "drained": "#9467bd",
    "health": "#ff7f0e",
    "overloaded": "#8c564b",
}
OTHER_COLOUR = "#7f7f7f"


@dataclass(frozen=True, slots=True)
class Chart:
    svg: str  # an <svg> element, ready to be placed inline in HTML
    png: Path | None


def slug(name: str) -> str:
    """An id-safe form of a scenario name (names are already [a-z0-9_-], this is a second guard)."""
    return re.sub(r"[^a-z0-9_-]", "-", name.lower()) or "scenario"


def marker_colour(marker: Marker) -> str:
    if marker.source == "fault":
        return MARKER_COLOURS["fault"]
    return MARKER_COLOURS.get(marker.kind, OTHER_COLOUR)


def draw(result: ScenarioResult, *, png: Path | None = None) -> Chart:
    """The scenario's four panels as inline SVG, and as PNG at `png` when given."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib import pyplot as plt

    name = slug(result.scenario.name)
    # Ids inside each SVG (clip paths) are hashed with this salt: unique per scenario, so several
    # figures can share one HTML page without their ids colliding, and stable from run to run.
    # text.parse_math off: a description is text, never mathtext ("costs $x^$" made matplotlib raise
    # after every scenario had run, and the run's report was lost).
    with matplotlib.rc_context(
        {
            "svg.fonttype": "none",
            "svg.hashsalt": name,
            "font.size": 8,
            "axes.titlesize": 9,
            "text.parse_math": False,
        }
    ):
        figure, axes = plt.subplots(len(METRICS), 1, sharex=True, figsize=(8.0, 7.5), layout="constrained")
        try:
            _fill(figure, list(axes), result, name)
            svg = _svg(figure, prefix=name)
            if png is not None:
                png.parent.mkdir(parents=True, exist_ok=True)
                figure.savefig(png, format="png", dpi=90)
        finally:
            plt.close(figure)
    return Chart(svg=svg, png=png)


def _fill(figure: Figure, axes: Sequence[Axes], result: ScenarioResult, name: str) -> None:
    seconds = result.seconds
    t = [s.t_s + 0.5 for s in seconds]  # a second's numbers belong to its middle
    figure.suptitle(f"{result.scenario.name}: {result.scenario.description}", fontsize=9)
    panels = dict(zip(METRICS, axes, strict=True))
    for metric, ax in panels.items():
        ax.set_gid(f"{name}--chart--{metric}")
        ax.set_title(TITLES[metric], loc="left")
        ax.grid(True, alpha=0.3)
    panels["throughput"].plot(
        t, [s.requests for s in seconds], color="#1f77b4", label="responses/s", drawstyle="steps-mid"
    )
    panels["latency"].plot(
        t, [s.p50_ms for s in seconds], color="#2ca02c", label="p50", drawstyle="steps-mid"
    )
    panels["latency"].plot(
        t, [s.p99_ms for s in seconds], color="#d62728", label="p99", drawstyle="steps-mid"
    )
    panels["latency"].legend(loc="upper right", fontsize=7)
    panels["errors"].bar(t, [s.errors for s in seconds], width=0.9, color="#d62728", label="errors/s")
    servers = result.servers
    for server in servers:
        panels["servers"].plot(
            t, [s.served_by.get(server, 0) for s in seconds], label=server, drawstyle="steps-mid"
        )
    if servers:
        panels["servers"].legend(loc="upper right", fontsize=7, ncols=min(4, len(servers)))
    for ax in axes:
        ax.set_ylim(bottom=0)
    end = max([s.t_s + 1 for s in seconds] + [m.t_s for m in result.markers] + [1.0])
    axes[-1].set_xlim(0, end)
    axes[-1].set_xlabel("seconds since the load started")
    _markers(panels, result.markers, name)


def _markers(panels: dict[str, Axes], markers: Sequence[Marker], name: str) -> None:
    top = panels["throughput"]
    for metric, ax in panels.items():
        for n, marker in enumerate(markers):
            line = ax.axvline(
                marker.t_s,
                color=marker_colour(marker),
                linestyle="--" if marker.source == "fault" else ":",
                linewidth=1.2,
            )
            line.set_gid(f"{name}--marker--{metric}--{n}")
    # Labels once, on the top panel, staggered so that events close in time stay readable.
    for n, marker in enumerate(markers):
        top.annotate(
            f"{marker.kind}: {marker.label}" if marker.source == "controller" else marker.label,
            xy=(marker.t_s, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(2, -10 - 9 * (n % 6)),
            textcoords="offset points",
            fontsize=6,
            color=marker_colour(marker),
        )


def _svg(figure: Figure, *, prefix: str) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg")
    text = buffer.getvalue()
    # Inline SVG needs the <svg> element alone: drop the XML declaration and the DOCTYPE.
    text = text[text.index("<svg") :]
    # matplotlib numbers its elements per figure (figure_1, line2d_1, ...): several figures on one page
    # would repeat those ids, so each is prefixed with the scenario, references included. Our own
    # gids (with "--") are unique already.
    own = {m for m in _ID.findall(text) if "--" not in m}

    def rename(match: re.Match[str]) -> str:
        name = match.group(2)
        return f"{match.group(1)}{prefix}-{name}{match.group(3)}" if name in own else match.group(0)

    return _REF.sub(rename, text)


_ID = re.compile(r'\sid="([^"]+)"')
_REF = re.compile(r'(\sid="|url\(#|href="#)([^"()]+)([")])')

"""Each scenario's run over time, drawn with matplotlib at 100 ms resolution: throughput, latency, errors
and responses per server, one panel each on a shared time axis, the faults shaded while in force, and every
event (a fault relevo did, an answer of the controller) as a numbered vertical line; the numbers sit in a
strip of their own, staggered so that none prints over another, and the report's table says what each is.

How the series are drawn, so that nothing shows before its cause:
- a bucket's value is drawn from the *end* of its 100 ms (a step after the fact, never before it);
- throughput, errors and responses per server count responses by when they *completed*; latency is that
  of the requests *sent* in the bucket (a stall shows where it began, not when its requests gave up);
- only whole buckets up to the load's end are drawn (a last partial bucket is a cliff to ~0 that says
  nothing about the cluster; the result's `tail` says what was left out).

One figure gives both outputs: an SVG string for the HTML report (text kept as <text>, so the figure needs
no font files and no network) and a PNG file. Elements carry ids (matplotlib's `gid`) so that a test, or a
reader's browser, can find them: `<slug>--chart--<metric>` for a panel, `<slug>--marker--<metric>--<n>`
for event n's line on it, `<slug>--label--<n>` for its number, `<slug>--zoom--<k>` for the k-th fault's
zoomed chart (±2 s around it).
"""

from __future__ import annotations

import io
import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from relevo.scenarios.result import Bucket, FaultSpan, Marker, ScenarioResult

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

METRICS = ("throughput", "latency", "errors", "servers")
TITLES = {
    "throughput": "throughput: responses completed per 100 ms",
    "latency": "latency of the requests sent in each 100 ms (ms)",
    "errors": "errors completed per 100 ms",
    "servers": "responses per server per 100 ms",
}
# Marker colours: faults relevo injected in red, the controller's answers in other colours.
MARKER_COLOURS = {
    "fault": "#d62728",
    "failover": "#2ca02c",
    "failover-started": "#17becf",
    "failback": "#1f77b4",
    "drained": "#9467bd",
    "health": "#ff7f0e",
    "overloaded": "#8c564b",
}
OTHER_COLOUR = "#7f7f7f"
SPAN_COLOUR = "#d62728"
# Responses per server: each its own line style and width (widest first), so equal series stay visible.
SERVER_STYLES = (("-", 3.0), ("--", 2.2), ("-.", 1.6), (":", 1.2), ("-", 0.8))
ZOOM_S = 2.0
TITLE_CHARS = 95
# The events strip: a number's room in points, and the plot area's width it is placed in.
LABEL_PT = 16.0
AXES_PT = 480.0


@dataclass(frozen=True, slots=True)
class Chart:
    svg: str  # an <svg> element, ready to be placed inline in HTML
    png: Path | None
    zooms: tuple[str, ...] = ()  # one <svg> per fault: ±2 s around it


def slug(name: str) -> str:
    """An id-safe form of a scenario name (names are already [a-z0-9_-], this is a second guard)."""
    return re.sub(r"[^a-z0-9_-]", "-", name.lower()) or "scenario"


def marker_colour(marker: Marker) -> str:
    if marker.source == "fault":
        return MARKER_COLOURS["fault"]
    return MARKER_COLOURS.get(marker.kind, OTHER_COLOUR)


def marker_rows(markers: Sequence[Marker], start_s: float, end_s: float) -> list[int]:
    """A row in the events strip for each marker's number: the first row where it keeps a number's width
    from the last one placed there, so no two numbers print over each other."""
    gap = max(end_s - start_s, 1e-9) * LABEL_PT / AXES_PT
    last: list[float] = []
    rows = []
    for marker in markers:
        for row, at in enumerate(last):
            if marker.t_s - at >= gap:
                last[row] = marker.t_s
                rows.append(row)
                break
        else:
            last.append(marker.t_s)
            rows.append(len(last) - 1)
    return rows


def draw(result: ScenarioResult, *, png: Path | None = None) -> Chart:
    """The scenario's panels as inline SVG (and as PNG at `png` when given), and a zoom per fault."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib import pyplot as plt

    name = slug(result.scenario.name)
    markers = result.markers
    end = max(result.charted_s, 0.1)
    rows = marker_rows(markers, 0.0, end)
    strip = max(rows, default=-1) + 1
    # text.parse_math off: a description is text, never mathtext ("costs $x^$" made matplotlib raise
    # after every scenario had run, and the run's report was lost).
    with matplotlib.rc_context(
        {
            "svg.fonttype": "none",
            "svg.hashsalt": name,
            "font.size": 8,
            "axes.titlesize": 8,
            "text.parse_math": False,
        }
    ):
        figure, axes = plt.subplots(
            len(METRICS) + 1,
            1,
            sharex=True,
            figsize=(8.0, 8.0 + 0.15 * strip),
            layout="constrained",
            gridspec_kw={"height_ratios": [0.35 + 0.18 * strip, 1, 1, 0.8, 1.2]},
        )
        try:
            panels = dict(zip(METRICS, axes[1:], strict=True))
            title = f"{result.scenario.name}: {result.scenario.description}"
            figure.suptitle(textwrap.fill(title, TITLE_CHARS), fontsize=9)
            _fill(panels, result.buckets, result.servers, name)
            _spans(list(panels.values()), result.spans, end)
            axes[-1].set_xlim(0, end)
            _markers(panels, axes[0], markers, rows, name)
            axes[-1].set_xlabel("seconds since the load started (each 100 ms drawn from its end)")
            _legend(figure, markers, result.spans)
            svg = _svg(figure, prefix=name)
            if png is not None:
                png.parent.mkdir(parents=True, exist_ok=True)
                figure.savefig(png, format="png", dpi=90)
        finally:
            plt.close(figure)
        zooms = tuple(
            _zoom(result, span, k, name) for k, span in enumerate(result.spans) if span.start_s <= end
        )
    return Chart(svg=svg, png=png, zooms=zooms)


def _steps(buckets: Sequence[Bucket], width: float) -> list[float]:
    """x for a step drawn from each bucket's end (`steps-post` holds it until the next bucket's end)."""
    return [b.t_s + width for b in buckets]


Series = dict[str, dict[str, tuple[list[float], list[float]]]]


def chart_series(buckets: Sequence[Bucket], servers: Sequence[str], width: float = 0.1) -> Series:
    """What each panel draws, as (x, y) per line: x is each bucket's end (`steps-post` holds a value from
    there to the next bucket's end), so no change shows before the 100 ms it happened in had passed."""
    x = _steps(buckets, width)
    sent = [(xi, b) for xi, b in zip(x, buckets, strict=True) if b.p50_ms is not None]
    return {
        "throughput": {"responses": (x, [float(b.requests) for b in buckets])},
        "latency": {
            "p50": ([xi for xi, _ in sent], [b.p50_ms or 0.0 for _, b in sent]),
            "p99": ([xi for xi, _ in sent], [b.p99_ms or 0.0 for _, b in sent]),
        }
        if sent
        else {},
        "errors": {"errors": (x, [float(b.errors) for b in buckets])},
        "servers": {server: (x, [float(b.served_by.get(server, 0)) for b in buckets]) for server in servers},
    }


def _fill(panels: dict[str, Axes], buckets: Sequence[Bucket], servers: Sequence[str], name: str) -> None:
    for metric, ax in panels.items():
        ax.set_gid(f"{name}--chart--{metric}")
        ax.set_title(TITLES[metric], loc="left")
        ax.grid(True, alpha=0.3)
    if not buckets:
        for ax in panels.values():
            _no_data(ax, "no data: no request completed")
        return
    series = chart_series(buckets, servers)
    step: dict[str, Any] = {"drawstyle": "steps-post", "linewidth": 1.2}
    ((x, y),) = series["throughput"].values()
    panels["throughput"].plot(x, y, color="#1f77b4", **step)
    ((x, y),) = series["errors"].values()
    panels["errors"].plot(x, y, color="#d62728", **step)
    if series["latency"]:
        for label, colour in (("p50", "#2ca02c"), ("p99", "#d62728")):
            x, y = series["latency"][label]
            panels["latency"].plot(x, y, color=colour, label=label, **step)
        panels["latency"].legend(loc="upper left", fontsize=7, ncols=2, framealpha=0.9)
    else:
        _no_data(panels["latency"], "no data: no latency was measured")
    if servers:
        for i, (server, (x, y)) in enumerate(series["servers"].items()):
            style, lw = SERVER_STYLES[i % len(SERVER_STYLES)]
            panels["servers"].plot(x, y, label=server, drawstyle="steps-post", linestyle=style, linewidth=lw)
        panels["servers"].legend(loc="upper left", fontsize=7, ncols=min(5, len(servers)), framealpha=0.9)
    else:
        _no_data(panels["servers"], "no data: no response named its server (X-Served-By)")
    for ax in panels.values():
        if ax.lines:
            # From 0, with room above the highest step for the legend, so it never covers a line's top.
            ax.set_ylim(0, max(ax.get_ylim()[1] * (1.35 if ax.get_legend() else 1.05), 1.0))


def _no_data(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="#777", fontsize=8)
    ax.set_ylim(0, 1)


def _spans(axes: Sequence[Axes], spans: Sequence[FaultSpan], end: float) -> None:
    """Each fault shaded while it was in force (an instant, such as a reload, as a thin band)."""
    for span in spans:
        stop = end if span.end_s is None else span.end_s
        stop = max(stop, span.start_s + 0.03)
        for ax in axes:
            ax.axvspan(span.start_s, stop, color=SPAN_COLOUR, alpha=0.08, linewidth=0)


def _markers(
    panels: dict[str, Axes],
    strip: Axes,
    markers: Sequence[Marker],
    rows: Sequence[int],
    name: str,
    numbers: Sequence[int] | None = None,
) -> None:
    """Each marker as a line on every panel and its number in the strip (`numbers`: the markers' numbers
    in the whole run's table, when these are a part of them)."""
    numbers = list(numbers) if numbers is not None else list(range(len(markers)))
    strip.set_title("events (numbered as in the table under the chart)", loc="left")
    strip.set_yticks([])
    strip.set_ylim(max(rows, default=0) + 0.8, -0.8)
    for side in ("top", "right", "left"):
        strip.spines[side].set_visible(False)
    for metric, ax in panels.items():
        for n, marker in zip(numbers, markers, strict=True):
            line = ax.axvline(
                marker.t_s,
                color=marker_colour(marker),
                linestyle="--" if marker.source == "fault" else ":",
                linewidth=1.1,
            )
            line.set_gid(f"{name}--marker--{metric}--{n}")
    low, high = strip.get_xlim()
    for n, marker, row in zip(numbers, markers, rows, strict=True):
        if not low <= marker.t_s <= high:
            continue  # after the charted end (a failback's drain): in the table, not past the axis
        strip.axvline(marker.t_s, color=marker_colour(marker), linewidth=0.6, alpha=0.5)
        label = strip.text(
            marker.t_s,
            row,
            str(n + 1),
            ha="center",
            va="center",
            fontsize=7,
            color="white",
            bbox={"boxstyle": "round,pad=0.2", "facecolor": marker_colour(marker), "edgecolor": "none"},
        )
        label.set_gid(f"{name}--label--{n}")


def _legend(figure: Figure, markers: Sequence[Marker], spans: Sequence[FaultSpan]) -> None:
    """What the line styles mean: faults dashed, the controller's events dotted by kind, spans shaded."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles: list[Any] = []
    if spans:
        handles.append(Patch(color=SPAN_COLOUR, alpha=0.15, label="fault in force"))
    kinds: dict[str, Marker] = {}
    for marker in markers:
        kinds.setdefault("fault" if marker.source == "fault" else marker.kind, marker)
    for kind, marker in kinds.items():
        handles.append(
            Line2D(
                [],
                [],
                color=marker_colour(marker),
                linestyle="--" if marker.source == "fault" else ":",
                label="fault relevo did" if kind == "fault" else f"controller: {kind}",
            )
        )
    if handles:
        figure.legend(handles=handles, loc="outside lower center", ncols=min(4, len(handles)), fontsize=7)


def _zoom(result: ScenarioResult, span: FaultSpan, k: int, name: str) -> str:
    """±2 s around a fault: responses per server and latency, the same 100 ms steps, the same numbers."""
    from matplotlib import pyplot as plt

    low = max(0.0, span.start_s - ZOOM_S)
    high = max(min(result.charted_s, span.start_s + ZOOM_S), low + 0.1)
    inside = [b for b in result.buckets if low - 0.1 <= b.t_s <= high]
    numbers = [n for n, m in enumerate(result.markers) if low <= m.t_s <= high]
    markers = [result.markers[n] for n in numbers]
    rows = marker_rows(markers, low, high)
    strip_rows = max(rows, default=-1) + 1
    figure, axes = plt.subplots(
        3,
        1,
        sharex=True,
        figsize=(8.0, 4.4 + 0.15 * strip_rows),
        layout="constrained",
        gridspec_kw={"height_ratios": [0.35 + 0.18 * strip_rows, 1, 1]},
    )
    try:
        title = f"{result.scenario.name}: {span.label} at {span.start_s:.2f} s, ±{ZOOM_S:g} s"
        figure.suptitle(textwrap.fill(title, TITLE_CHARS), fontsize=9)
        zoom_name = f"{name}--zoom--{k}"
        panels = {"servers": axes[1], "latency": axes[2]}
        for metric, ax in panels.items():
            ax.set_gid(f"{zoom_name}--chart--{metric}")
            ax.set_title(TITLES[metric], loc="left")
            ax.grid(True, alpha=0.3)
        series = chart_series(inside, result.servers)
        if series["servers"]:
            for i, (server, (x, y)) in enumerate(series["servers"].items()):
                style, lw = SERVER_STYLES[i % len(SERVER_STYLES)]
                axes[1].plot(x, y, label=server, drawstyle="steps-post", linestyle=style, linewidth=lw)
            axes[1].legend(loc="upper left", fontsize=7, ncols=min(5, len(series["servers"])), framealpha=0.9)
        else:
            _no_data(axes[1], "no data: no response named its server (X-Served-By)")
        if series["latency"]:
            for label, colour in (("p50", "#2ca02c"), ("p99", "#d62728")):
                x, y = series["latency"][label]
                axes[2].plot(x, y, color=colour, label=label, drawstyle="steps-post")
            axes[2].legend(loc="upper left", fontsize=7, ncols=2, framealpha=0.9)
        else:
            _no_data(axes[2], "no data: no latency was measured")
        for ax in panels.values():
            if ax.lines:
                ax.set_ylim(0, max(ax.get_ylim()[1] * 1.35, 1.0))
        _spans(list(panels.values()), [span], result.charted_s)
        axes[-1].set_xlim(low, high)
        _markers(panels, axes[0], markers, rows, zoom_name, numbers)
        axes[-1].set_xlabel("seconds since the load started (each 100 ms drawn from its end)")
        return _svg(figure, prefix=zoom_name)
    finally:
        plt.close(figure)


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

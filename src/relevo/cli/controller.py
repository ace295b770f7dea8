"""`relevo watch` and `relevo events`: the failover controller in the foreground, and its journal."""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from rich.text import Text

from relevo.cli.common import adopt_state_dir, console, err_console, file_option, get_topology, print_json

KIND_STYLE = {
    "failover": "bold yellow",
    "failback": "bold green",
    "drained": "cyan",
    "standby-failed": "bold red",
    "action-failed": "red",
    "failover-started": "yellow",
    "overloaded": "yellow",
    "operator": "bold cyan",
    "health": "magenta",
    "controller": "dim",
}
DURATION_LABELS = {
    "detection_s": "detected",
    "standby_start_s": "standby up",
    "until_served_s": "serving",
    "drain_s": "drained",
    "took_s": "took",
    "retry_in_s": "retry in",
}


@click.command()
@file_option
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path, file_okay=False),
    hidden=True,
    help="Use this state directory (how `relevo up` runs the controller for the built-in topology).",
)
@click.option(
    "--state-fd",
    type=int,
    hidden=True,
    help="The state directory as the relevo that started this one holds it (an inherited descriptor).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log every action, not only failovers and failures.")
@click.pass_context
def watch(ctx: click.Context, state_dir: Path | None, state_fd: int | None, verbose: bool) -> None:
    """Run the failover controller in the foreground until Ctrl-C or SIGTERM.

    Every tick (`controller.tick`, 100 ms by default) it checks each node's processes, probes each web
    node's health path itself (never with a shorter timeout than HAProxy's check, `health.timeout`) and
    reads HAProxy's view through the Runtime API. When a primary fails (refused, or its processes gone or
    paused: at once; `health.fall` timed-out or wrong probes in a row), or a person puts it in maint or
    drain, it starts the paired standby and puts it in service as soon as the standby
    answers; when the primary is healthy again for `standby.hold`, traffic goes back to it and the standby
    is drained and stopped. Every step is appended to the event journal (`relevo events`).

    `relevo up` already runs it in the background; only one controller runs per cluster (a lock in the
    state directory), so this fails while that one runs (`relevo down` or `relevo status` to see it).
    """
    from relevo.controller.daemon import run_foreground

    topology = get_topology(ctx)
    if state_dir is not None:
        topology = replace(topology, state_dir=state_dir)
    if state_fd is not None:
        adopt_state_dir(topology.state_dir, state_fd)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s", force=True)
    logging.getLogger("relevo.controller").setLevel(logging.DEBUG if verbose else logging.INFO)
    run_foreground(topology)


@click.command()
@file_option
@click.option("--json", "as_json", is_flag=True, help="JSON: an array, or one object a line with --follow.")
@click.option("--follow", is_flag=True, help="Keep printing new events as they happen (Ctrl-C stops).")
@click.option("-n", "--lines", default=20, show_default=True, help="How many of the last events to show.")
@click.option("--kind", "kinds", multiple=True, help="Only events of this kind (failover, health, ...).")
@click.pass_context
def events(ctx: click.Context, as_json: bool, follow: bool, lines: int, kinds: tuple[str, ...]) -> None:
    """Show the failover controller's journal (STATE_DIR/events.jsonl).

    Each event has a time, a node, a transition (from -> to), a reason and, for a failover, how long
    each part took: `detected` (the first evidence of the fault to the primary's DOWN verdict; the
    evidence is a failed probe, or the provider seeing the process gone or paused, and the reason names
    it: certain evidence such as a killed process or a refused connection is DOWN at once, so a kill
    shows 0), `standby up` (the standby's start to its first passing probe) and `serving` (the first
    evidence of the fault to the standby being in service). A failover is journalled in the order it
    happened: `failover-started` as the standby's start is decided, the start as `stopped -> starting`
    then `starting -> running`, then `failover` once HAProxy has the standby in service.
    """
    from relevo.controller.journal import describe, follow_events, read_journal
    from relevo.files import claim_state_dir
    from relevo.paths import StatePaths

    topology = get_topology(ctx)
    claim_state_dir(topology.state_dir, create=False)  # read through its descriptor, not its name
    path = StatePaths(topology.state_dir).held().events

    def wanted(event: dict[str, Any]) -> bool:
        return not kinds or event.get("kind") in kinds

    def warn(problem: str) -> None:
        err_console.print(f"relevo: {problem}", style="yellow", markup=False, soft_wrap=True)

    journal = read_journal(path, lines, keep=wanted)
    for problem in describe(journal):
        warn(problem)
    recent = journal.events
    if as_json and not follow:
        print_json(recent)
        return
    for event in recent:
        _show(event, as_json)
    if not follow:
        if not recent and not as_json:
            console.print(f"[dim]no events yet in {path}[/]")
        return
    stop = threading.Event()
    try:
        for event in follow_events(path, stop=stop, warn=warn):
            if wanted(event):
                _show(event, as_json)
    except KeyboardInterrupt:
        stop.set()


def _show(event: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(event), nl=True)
        return
    # On a terminal rich wraps a long event at word boundaries; a pipe or a file gets one line per event.
    console.print(event_line(event), soft_wrap=not console.is_terminal)


def event_line(event: dict[str, Any]) -> Text:
    """One event as a line of text: time, kind, node, from -> to, reason, durations."""
    ts = event.get("ts")
    when = datetime.fromtimestamp(ts).strftime("%H:%M:%S.%f")[:-3] if isinstance(ts, int | float) else "?"
    kind = str(event.get("kind", ""))
    line = Text(f"{when} ", style="dim")
    line.append(f"{kind:<14} ", style=KIND_STYLE.get(kind, ""))
    line.append(f"{event.get('node', '')} ", style="bold")
    line.append(f"{event.get('from', '')} → {event.get('to', '')}")
    if event.get("reason"):
        line.append(f"  {event['reason']}", style="dim" if kind == "action" else "")
    durations = event.get("durations") or {}
    if durations:
        parts = [f"{DURATION_LABELS.get(k, k)} {float(v) * 1000:.0f} ms" for k, v in durations.items()]
        line.append(f"  [{', '.join(parts)}]", style="cyan")
    return line

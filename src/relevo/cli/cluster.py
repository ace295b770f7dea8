"""Commands that build and drive the cluster: init, up, down, destroy, status, start, stop, kill, render."""

from __future__ import annotations

import os
import signal
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import click
from rich import box
from rich.markup import escape
from rich.table import Table

from relevo.cli.common import console, err_console, file_option, get_topology, print_json, say
from relevo.cluster import Cluster
from relevo.controller import daemon
from relevo.dashboard.process import dashboard_url
from relevo.dashboard.process import running_pid as dashboard_pid
from relevo.errors import RelevoError
from relevo.files import write_atomic
from relevo.lifecycle import down, up
from relevo.model import Topology
from relevo.providers.base import as_fault
from relevo.providers.reserve import disk_notes
from relevo.topology import DEFAULT_FILE, default_text

SIGNALS = {"KILL": signal.SIGKILL, "STOP": signal.SIGSTOP, "CONT": signal.SIGCONT, "TERM": signal.SIGTERM}
HEALTH_STYLE = {"UP": "green", "DOWN": "red", "MAINT": "yellow", "DRAIN": "cyan", "NOLB": "cyan"}
STATE_STYLE = {"running": "green", "stopped": "dim", "paused": "red", "missing": "dim"}


def _progress(message: str) -> None:
    say(f"[dim]·[/] {message}")


def _node_name(topology: Topology, name: str) -> str:
    if name not in topology.node_names:
        raise click.BadParameter(
            f"no node {name!r}; nodes: {', '.join(topology.node_names)}", param_hint="NODE"
        )
    return name


@click.command()
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False), default=DEFAULT_FILE)
def init(path: Path, force: bool) -> None:
    """Write the default topology (the seed's layout) to PATH (default: ./relevo.yaml)."""
    if os.path.lexists(path) and not force:
        raise RelevoError(f"{path} exists; use --force to overwrite it")
    # Replaced in one step, never written through a symbolic link someone left at PATH.
    write_atomic(path, default_text())
    console.print(f"wrote {path}: ha1 balancing web1 and web2, with standbys web1bck and web2bck")


@click.command("up")
@file_option
@click.option("--no-controller", is_flag=True, help="Do not start the failover controller.")
@click.option("--no-dashboard", is_flag=True, help="Do not start the dashboard (see `dashboard.enabled`).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def up_command(ctx: click.Context, no_controller: bool, no_dashboard: bool, as_json: bool) -> None:
    """Start the cluster: render and check configs, start HAProxy and the primaries, wait until HAProxy
    sees them UP, start the failover controller. Standbys are prepared but stay stopped (cold).

    Running it again changes nothing that already runs, except to apply an edited topology. If any step
    fails, what this call started is stopped again and the reason is printed."""
    from relevo.dashboard.process import listening, start_background

    topology = get_topology(ctx)
    with_dashboard = topology.dashboard.enabled and not no_dashboard
    result = up(
        topology,
        progress=_progress,
        controller=not no_controller,
        also_listening=(lambda: listening(topology)) if with_dashboard else tuple,
    )
    dashboard = None
    if with_dashboard:
        _progress("starting the dashboard")
        dashboard = start_background(topology)[1]
    metrics = daemon.controller_metrics_url(topology) if not no_controller else None
    if as_json:
        print_json({**asdict(result), "dashboard_url": dashboard, "controller_metrics_url": metrics})
        return
    console.print(
        f"[green]cluster {topology.name!r} is up[/]" + ("" if result.started else " (already running)")
    )
    # URLs and paths are never broken across lines: a terminal wraps them, a pipe gets them whole.
    console.print(f"  frontend  {result.frontend_url}", soft_wrap=True)
    console.print(
        f"  stats     {result.stats_url}   (user and password in {result.secrets_file})", soft_wrap=True
    )
    console.print(f"  metrics   {result.metrics_url}   (HAProxy's)", soft_wrap=True)
    if metrics:
        console.print(f"  metrics   {metrics}   (the controller's)")
    if dashboard:
        console.print(f"  dashboard {dashboard}   (the same user and password)")
    if result.controller_pid:
        console.print(
            f"  controller running as pid {result.controller_pid}: `relevo events --follow` to follow it"
        )
    for change in result.controller_changes:
        console.print(f"  controller: {change}")


@click.command("down")
@file_option
@click.option("--json", "as_json", is_flag=True, help="Print what was stopped as JSON.")
@click.pass_context
def down_command(ctx: click.Context, as_json: bool) -> None:
    """Stop everything relevo started (by PID): controller, balancer, web nodes. Removes no file."""
    from relevo.dashboard.process import stop_background

    topology = get_topology(ctx)
    dashboard = stop_background(topology)
    stopped = (["dashboard"] if dashboard else []) + down(topology, progress=_progress)
    if as_json:
        print_json({"stopped": stopped})
    else:
        console.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@click.command("destroy")
@file_option
@click.option("--json", "as_json", is_flag=True, help="Print what was stopped and removed as JSON.")
@click.pass_context
def destroy_command(ctx: click.Context, as_json: bool) -> None:
    """`down`, then remove what relevo created for the cluster (LXD containers, bridge, profile), and
    nothing else."""
    from relevo.dashboard.process import stop_background
    from relevo.lifecycle import destroy

    topology = get_topology(ctx)
    stop_background(topology)
    removed = destroy(topology, progress=_progress)
    if as_json:
        print_json({"removed": removed})
    else:
        console.print(f"removed: {', '.join(removed)}" if removed else "nothing to remove")


@click.command()
@file_option
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.option("--events", "event_count", default=5, show_default=True, help="How many recent events to show.")
@click.pass_context
def status(ctx: click.Context, as_json: bool, event_count: int) -> None:
    """Each node's state (running/stopped/paused), its health as HAProxy sees it (UP, DOWN, MAINT, DRAIN),
    its address, current sessions and total requests; the URLs; the controller and its last events."""
    topology = get_topology(ctx)
    _refuse_no_cluster_here(topology)
    report = status_report(topology, event_count)
    if as_json:
        print_json(report)
        return
    console.print(status_table(report, f"cluster {topology.name!r} ({topology.standby.mode} standbys)"))
    # URLs and paths are never broken across lines: a terminal wraps them, a pipe gets them whole.
    console.print(f"frontend  {report['frontend_url']}", soft_wrap=True)
    holder = report["controller"].get("vip_holder")
    if topology.pair is not None and topology.pair.vip is not None:
        console.print(f"vip       {topology.pair.vip} on {holder or 'unknown (not seen yet)'}")
    stats = f"stats     {report['stats_url']}   (credentials in {report['secrets_file']})"
    console.print(stats, soft_wrap=True)
    if report["dashboard_url"]:
        running = "" if report["dashboard_running"] else "  (not running: `relevo up` starts it)"
        console.print(f"dashboard {report['dashboard_url']}{running}", soft_wrap=True)
    controller = report["controller"]
    if controller["running"]:
        console.print(f"controller [green]running[/] (pid {controller['pid']})")
    else:
        console.print("controller [red]not running[/]")
    for line in daemon.controller_notes(controller):
        console.print(f"  [yellow]{line}[/]")
    for line in report["disk"]:
        console.print(f"[red]disk[/] {line}")
    for event in report["events"]:
        console.print(
            f"  [dim]{escape(event['time'])}[/] {escape(event['node'])}: "
            f"{escape(event['from'])} → {escape(event['to'])} ({escape(event['reason'])})"
        )
    for problem in report["journal_problems"]:
        console.print(f"  [yellow]{escape(problem)}[/]", soft_wrap=True)


def _refuse_no_cluster_here(topology: Topology) -> None:
    """No topology file found and no state directory here: there is nothing to show, and a table of the
    default layout with every node `missing` would only mislead (the state `./scripts/up` leaves when
    relevo is run from a subdirectory of the one it was started in)."""
    if topology.source is not None or topology.state_dir.exists():
        return
    here = topology.state_dir.parent
    raise RelevoError(
        f"no cluster here: no relevo.yaml in {here} or any parent directory, and no state directory "
        f"{topology.state_dir}. Run relevo from the directory of the cluster's relevo.yaml (or the one "
        "`relevo up` ran in), pass its topology with `relevo -f PATH/relevo.yaml status`, or write one "
        "here with `relevo init` (then `relevo up`)"
    )


def status_table(report: dict[str, Any], title: str) -> Table:
    """The nodes of a `status_report`, in 80 columns: light borders, a standby's role as "standby→web1",
    and the provider in the title when every node has the same one; what is still too wide wraps."""
    nodes = report["nodes"]
    providers = {node["provider"] for node in nodes}
    # "sess": HAProxy's current sessions (its `scur`), short so that a full address fits at 80 columns.
    columns = ["node", "role", "provider", "state", "health", "address", "sess", "requests"]
    if len(providers) == 1:
        columns.remove("provider")
        title += f" · provider {providers.pop()}"
    table = Table(
        title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1, 0, 0)
    )
    for column in columns:
        numeric = column in ("sess", "requests")
        table.add_column(column, justify="right" if numeric else "left", overflow="fold")
    for node in nodes:
        state, health = node["state"], node["health"]
        cells = {
            "node": node["name"],
            "role": node["role"] + (f"→{node['standby_for']}" if node["standby_for"] else ""),
            "provider": node["provider"],
            "state": f"[{STATE_STYLE.get(state, '')}]{state}[/]",
            "health": f"[{HEALTH_STYLE.get(health, 'dim')}]{health}[/]",
            "address": node["address"],
            "sess": _count(node["current_sessions"]),
            "requests": _count(node["total_requests"]),
        }
        table.add_row(*(cells[c] for c in columns))
    return table


def status_report(topology: Topology, event_count: int = 5) -> dict[str, Any]:
    from relevo.controller.journal import describe

    cluster = Cluster(topology)
    journal = daemon.recent_journal(topology, event_count)
    stats = topology.balancer.stats.url
    controller = daemon.controller_status(topology)
    holder = controller.get("vip_holder")
    return {
        "cluster": topology.name,
        "topology": str(topology.source) if topology.source else None,
        "frontend_url": topology.balancer.frontend.url + "/",
        "stats_url": stats + "/stats",
        "metrics_url": stats + "/metrics",
        "controller_metrics_url": daemon.controller_metrics_url(topology),
        "dashboard_url": dashboard_url(topology),
        "dashboard_running": dashboard_running(topology),
        "secrets_file": str(cluster.paths.secrets),
        "disk": disk_notes(cluster.paths.held(), list(topology.node_names)),
        "nodes": [asdict(node) for node in cluster.node_statuses()],
        # Each HAProxy of the cluster (a pair has two): where it runs and its own stats page.
        "balancers": [
            {
                "name": b.name,
                "address": b.address,
                "frontend_url": b.frontend.url + "/",
                "stats_url": b.stats.url + "/stats",
                "vip": topology.pair.vip if topology.pair else None,
                # Whether it holds the VIP, as the controller last saw (None: no VIP, or not seen).
                "holds_vip": (holder == b.name) if holder and topology.pair else None,
            }
            for b in topology.balancers
        ],
        "controller": controller,
        "events": journal.events,
        # What the journal held that is not an event (skipped), in words: status shows the nodes anyway.
        "journal_problems": describe(journal),
    }


def dashboard_running(topology: Topology) -> bool:
    return dashboard_pid(topology) is not None


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


@click.command()
@file_option
@click.argument("node")
@click.pass_context
def start(ctx: click.Context, node: str) -> None:
    """Start NODE (a web node, a standby or the balancer). A primary left in drain or maint by `relevo
    stop` (or by hand) is put back in service once it answers."""
    from relevo.maintenance import start_node

    topology = get_topology(ctx)
    start_node(topology, _node_name(topology, node), progress=_progress)
    console.print(f"started {node}")


@click.command()
@file_option
@click.argument("node")
@click.pass_context
def stop(ctx: click.Context, node: str) -> None:
    """Stop NODE gracefully (SIGTERM, then SIGKILL after a few seconds). A primary with a standby is
    drained first: set to drain, its standby put in service, its sessions left to end (at most
    `controller.drain_timeout`), then stopped; no request fails. `relevo start NODE` puts it back."""
    from relevo.maintenance import stop_node

    topology = get_topology(ctx)
    stop_node(topology, _node_name(topology, node), progress=_progress)
    console.print(f"stopped {node}")


@click.command()
@file_option
@click.argument("node")
@click.option(
    "-s",
    "--signal",
    "signal_name",
    type=click.Choice(sorted(SIGNALS), case_sensitive=False),
    default="KILL",
    show_default=True,
    help="KILL: a crash. STOP: a hang. CONT: resume a hung node. TERM: a clean stop.",
)
@click.pass_context
def kill(ctx: click.Context, node: str, signal_name: str) -> None:
    """Send a signal to every process of NODE: the failures the controller must handle."""
    topology = get_topology(ctx)
    Cluster(topology).fault(_node_name(topology, node), as_fault(SIGNALS[signal_name.upper()]))
    console.print(f"sent SIG{signal_name.upper()} to {node}")


@click.command()
@file_option
@click.argument("what", type=click.Choice(["haproxy", "apache", "systemd"]))
@click.argument("node", required=False)
@click.option("--show-secrets", is_flag=True, help="Print the stats password instead of masking it.")
@click.pass_context
def render(ctx: click.Context, what: str, node: str | None, show_secrets: bool) -> None:
    """Print a rendered configuration: `haproxy`, `apache NODE`, or `systemd` (a unit that runs the
    failover controller on a host). Writes nothing, generates no credentials (shows placeholders when
    none exist yet); the stats password is masked unless --show-secrets."""
    topology = get_topology(ctx)
    click.echo(render_text(topology, what, node, show_secrets=show_secrets), nl=False)


MASK = "********"


def render_text(topology: Topology, what: str, node: str | None, *, show_secrets: bool = False) -> str:
    from relevo.files import claim_state_dir
    from relevo.paths import StatePaths
    from relevo.secrets import Secrets, load_or_create_secrets

    paths = StatePaths(topology.state_dir)
    claim_state_dir(paths.root, create=False)  # what is read from it, read through its descriptor
    held = paths.held()
    if what == "haproxy":
        from relevo.render.haproxy import render_haproxy, worker_account

        secrets = (
            load_or_create_secrets(held.secrets)
            if held.secrets.exists()
            else Secrets(stats_user="admin", stats_password="<generated by relevo up>")  # noqa: S106 - a placeholder
        )
        if held.secrets.exists() and not show_secrets:
            secrets = replace(secrets, stats_password=MASK)
            err_console.print(
                f"[dim]the stats password is masked (it is in {paths.secrets}; --show-secrets)[/]",
                soft_wrap=True,
            )
        return render_haproxy(topology, secrets, paths, run_as=worker_account())
    if what == "apache":
        from relevo.providers.tools import find_apache
        from relevo.render.apache import layout_for, render_apache, worker_account

        names = [n.name for n in topology.nodes]
        if node is None or node not in names:
            raise click.BadParameter(f"expected a web node: {', '.join(names)}", param_hint="NODE")
        web = topology.node(node)
        return render_apache(
            topology, web, layout_for(web, paths, find_apache().modules_dir), run_as=worker_account()
        )
    from relevo.controller.systemd import render_systemd_unit

    return render_systemd_unit(topology)

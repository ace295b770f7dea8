"""`relevo dashboard`: the live page of the cluster, in the foreground."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import click

from relevo.cli.common import adopt_state_dir, err_console, file_option, get_topology


@click.command()
@file_option
@click.option(
    "--listen",
    metavar="HOST:PORT",
    help="Where to serve: HOST:PORT, or a PORT on the balancer's address (default: that address and "
    "`dashboard.port`, 8405, on loopback). "
    "Another address exposes the page and its buttons to whoever reaches it and has the credentials.",
)
@click.option("--state-dir", type=click.Path(path_type=Path, file_okay=False), hidden=True)
@click.option(
    "--state-fd",
    type=int,
    hidden=True,
    help="The state directory as the relevo that started this one holds it (an inherited descriptor).",
)
@click.pass_context
def dashboard(ctx: click.Context, listen: str | None, state_dir: Path | None, state_fd: int | None) -> None:
    """Serve the live dashboard until Ctrl-C: the topology as a picture (each node's state, HAProxy's
    health and admin state, which standby serves for whom, sessions and requests per second), charts of
    the last minutes with every journal event as a marker, and the journal as it is written; pushed to
    the page at least every 500 ms. With `dashboard.actions` (on by default for the local provider),
    buttons per node kill, hang, resume, start, stop, drain or put it in maintenance, as the CLI does.

    The page needs the cluster's generated credentials (the stats user and password, in the secrets
    file); `relevo up` already runs one in the background unless `dashboard.enabled: false`."""
    from relevo.dashboard.process import LOOPBACK, default_listen, parse_listen, run_foreground

    topology = get_topology(ctx)
    if state_dir is not None:
        topology = replace(topology, state_dir=state_dir)
    if state_fd is not None:
        adopt_state_dir(topology.state_dir, state_fd)
    try:
        where = parse_listen(listen, default_listen(topology)[0]) if listen else None
    except ValueError as exc:  # bad input: exit 2 before anything is read or started
        raise click.BadParameter(str(exc), param_hint="'--listen'") from None
    if where is not None and not where[0].startswith(LOOPBACK):
        err_console.print(
            f"[yellow]serving on {where[0]}: anyone who reaches it and has the cluster's credentials can "
            "see the cluster and, with dashboard.actions, kill and stop its nodes (plain HTTP)[/]",
            soft_wrap=True,
        )
    run_foreground(topology, listen=where)

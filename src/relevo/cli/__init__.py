"""The `relevo` command: a thin layer that parses arguments, calls the library and prints."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import click

from relevo import __version__
from relevo.cli.common import CliState
from relevo.errors import RelevoError

# Each module adds its commands to the group through `register(group)`.
COMMAND_MODULES = ("relevo.cli.cluster", "relevo.cli.controller", "relevo.cli.bench")


class RelevoGroup(click.Group):
    """Turns relevo's own errors into one clear line on stderr and their exit status: no traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except RelevoError as exc:
            click.secho(f"relevo: {exc}", fg="red", err=True)
            sys.exit(exc.exit_status)


@click.group(cls=RelevoGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-f",
    "--file",
    "topology_file",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="RELEVO_FILE",
    help="Topology file (default: ./relevo.yaml, else the built-in seed layout).",
)
@click.version_option(__version__, prog_name="relevo")
@click.pass_context
def cli(ctx: click.Context, topology_file: Path | None) -> None:
    """Build, run, break and measure a load-balanced web cluster with automatic failover.

    relevo reads the topology in ./relevo.yaml (or the file given with -f), the seed's layout when there
    is none: HAProxy `ha1` balancing `web1` and `web2` round-robin, with cold standbys `web1bck` and
    `web2bck` started by a failover controller when their primary fails.

    \b
    Start here:
      relevo up          bring the cluster up (real HAProxy and Apache on loopback)
      relevo status      what runs, and how HAProxy sees it
      relevo bench       measure it (JMeter's thread-group semantics, wrk's speed)
      relevo down        stop everything relevo started
    """
    ctx.obj = CliState(topology_file=topology_file)


for _module in COMMAND_MODULES:
    importlib.import_module(_module).register(cli)


def main() -> None:
    cli()

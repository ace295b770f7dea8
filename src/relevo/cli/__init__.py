"""The `relevo` command: a thin layer that parses arguments, calls the library and prints."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import click

from relevo import __version__
from relevo.cli.common import CliState
from relevo.errors import RelevoError
from relevo.grammar import did_you_mean

# Commands load their module only when run (or listed by --help): `relevo bench` pays for neither the
# controller's imports nor Jinja2, and its start-up CPU counts in its own measurements.
COMMANDS: dict[str, str] = {
    "init": "relevo.cli.cluster:init",
    "up": "relevo.cli.cluster:up_command",
    "status": "relevo.cli.cluster:status",
    "down": "relevo.cli.cluster:down_command",
    "destroy": "relevo.cli.cluster:destroy_command",
    "start": "relevo.cli.cluster:start",
    "stop": "relevo.cli.cluster:stop",
    "kill": "relevo.cli.cluster:kill",
    "render": "relevo.cli.cluster:render",
    "watch": "relevo.cli.controller:watch",
    "events": "relevo.cli.controller:events",
    "dashboard": "relevo.cli.dashboard:dashboard",
    "bench": "relevo.cli.bench:bench",
    "report": "relevo.cli.bench:report",
    "image": "relevo.cli.image:image",
    "doctor": "relevo.cli.doctor:doctor",
    "scenarios": "relevo.cli.scenarios:scenarios",
    "export": "relevo.cli.export:export",
    "box": "relevo.cli.box:box",
}


class RelevoGroup(click.Group):
    """Loads commands lazily, and turns relevo's own errors into one clear line on stderr and their exit
    status: no traceback."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, _, attribute = target.partition(":")
        command: click.Command = getattr(importlib.import_module(module_name), attribute)
        return command

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else ""
        if name and not name.startswith("-") and name not in COMMANDS:
            ctx.fail(f"no command {name!r}{did_you_mean(name, COMMANDS)}; commands: {', '.join(COMMANDS)}")
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except RelevoError as exc:
            click.secho(f"relevo: {exc}", fg="red", err=True)
            sys.exit(exc.exit_status)
        except KeyboardInterrupt:
            # Ctrl-C means the same on every command: stopped by the user, exit status 130 (128 + SIGINT).
            click.echo("relevo: interrupted", err=True)
            sys.exit(130)


@click.group(cls=RelevoGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-f",
    "--file",
    "topology_file",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="RELEVO_FILE",
    help="Topology file (default: relevo.yaml here or in a parent directory, else the seed's layout). "
    "Accepted after the subcommand too.",
)
@click.version_option(__version__, prog_name="relevo")
@click.pass_context
def cli(ctx: click.Context, topology_file: Path | None) -> None:
    """Build, run, break and measure a load-balanced web cluster with automatic failover.

    relevo reads the topology in relevo.yaml, here or in the nearest parent directory (or the file given
    with -f), the seed's layout when there is none: HAProxy `ha1` balancing `web1` and `web2`
    round-robin, with cold standbys `web1bck` and `web2bck` started by a failover controller when their
    primary fails.

    \b
    Start here:
      relevo up          bring the cluster up (real HAProxy and Apache on loopback)
      relevo status      what runs, and how HAProxy sees it
      relevo bench       measure it (JMeter's thread-group semantics, wrk's speed)
      relevo down        stop everything relevo started
    """
    ctx.obj = CliState(topology_file=topology_file)


def main() -> None:
    cli()

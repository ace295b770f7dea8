"""What every command shares: the topology option, the console, JSON output, writing result files."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console

from relevo.model import Topology

console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(slots=True)
class CliState:
    topology_file: Path | None = None


def _remember_file(ctx: click.Context, param: click.Parameter, value: Path | None) -> None:
    if value is not None:
        ctx.ensure_object(CliState).topology_file = value


def file_option(command: F) -> F:
    """-f/--file on a subcommand too: `relevo status -f x.yaml` means `relevo -f x.yaml status`."""
    option = click.option(
        "-f",
        "--file",
        "topology_file",
        type=click.Path(path_type=Path, dir_okay=False),
        expose_value=False,
        is_eager=True,
        callback=_remember_file,
        help="Topology file (default: relevo.yaml here or in a parent directory).",
    )
    return option(command)


def get_topology(ctx: click.Context) -> Topology:
    """The topology named by -f/--file (or RELEVO_FILE); else relevo.yaml in this directory or the
    nearest parent (said on stderr when it is not this directory); else the built-in default."""
    from relevo.topology import find_topology_file, load_topology

    state = ctx.find_object(CliState)
    path = state.topology_file if state else None
    if path is None:
        cwd = Path.cwd()
        path = find_topology_file(cwd)
        if path is not None and path.parent != cwd:
            err_console.print(f"[dim]using {path}[/]", soft_wrap=True)
    return load_topology(path)


def say(text: str) -> None:
    """A step's line on stderr, the same on every command: on a terminal folded at its width (rich keeps
    words whole), in a pipe or a log whole, one line per step, whatever its length."""
    err_console.print(text, highlight=False, soft_wrap=not err_console.is_terminal)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def adopt_state_dir(state_dir: Path, fd: int) -> None:
    """Use the state directory the starting relevo passed at `fd` (an inherited descriptor), never
    whatever its name points to now; a bad descriptor is an error, exit 2."""
    from relevo import anchor

    try:
        anchor.adopt(state_dir, fd)
    except OSError as exc:
        raise click.UsageError(f"--state-fd {fd}: {exc.strerror or exc}") from None

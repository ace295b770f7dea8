"""What every command shares: the topology option, the console, JSON output."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from relevo.model import Topology

console = Console()
err_console = Console(stderr=True)


@dataclass(slots=True)
class CliState:
    topology_file: Path | None = None


def get_topology(ctx: click.Context) -> Topology:
    """The topology named by -f/--file (or RELEVO_FILE), else ./relevo.yaml, else the built-in default."""
    from relevo.topology import load_topology

    state = ctx.find_object(CliState)
    return load_topology(state.topology_file if state else None)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))

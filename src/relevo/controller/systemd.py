"""The systemd unit that runs `relevo watch` on a host (`relevo render systemd`)."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

from relevo.controller.daemon import watch_arguments
from relevo.controller.service import unit_name
from relevo.model import Topology
from relevo.render import render_template
from relevo.render.haproxy import describe_source

# Characters systemd's command-line parser treats specially, besides quotes and backslashes.
_PLAIN_ARG = re.compile(r"^[A-Za-z0-9_@%+=:,./-]+$")


def default_exe() -> str:
    """The `relevo` beside the running interpreter (a venv), else the one on PATH, else /usr/local/bin."""
    beside = Path(sys.executable).with_name("relevo")
    if beside.exists():
        return str(beside)
    return shutil.which("relevo") or "/usr/local/bin/relevo"


def _specifiers(text: str) -> str:
    """systemd expands %x specifiers (and $VAR in ExecStart): double them to mean themselves."""
    return text.replace("%", "%%")


def quote_arg(arg: str) -> str:
    """One ExecStart argument, quoted the way systemd's own parser reads it back."""
    arg = _specifiers(arg).replace("$", "$$")
    if _PLAIN_ARG.match(arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_systemd_unit(topology: Topology, *, user: str = "relevo", exe: str | None = None) -> str:
    """The unit text: ExecStart runs `relevo watch` directly (no shell) for this topology's state dir."""
    if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", user):
        raise ValueError(f"not a valid system user name: {user!r}")
    state_dir = topology.state_dir.resolve()
    command = [exe or default_exe(), *watch_arguments(topology)]
    return render_template(
        "relevo-watch.service.j2",
        cluster=topology.name,
        source=describe_source(topology),
        user=user,
        home=quote_arg(str(state_dir)),
        unit_name=unit_name(topology),
        workdir=_specifiers(str(state_dir.parent)),
        state_dir=quote_arg(str(state_dir)),
        exec_start=" ".join(quote_arg(arg) for arg in command),
    )

"""The controller as a systemd service (the unit of `relevo render systemd`, enabled): where systemd runs
this cluster's controller, relevo starts and stops it through systemctl. A controller started beside it
would only wait for the lock, and one stopped under it would be back a second later (Restart=always).
The balancer's VM of `relevo export vagrant` runs its controller this way.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from relevo.errors import RelevoError
from relevo.model import Topology

# Present when systemd is the init (the test of sd_booted(3)): no systemctl call is made otherwise.
BOOTED = Path("/run/systemd/system")
SYSTEMCTL_TIMEOUT_S = 30.0


def unit_name(topology: Topology) -> str:
    """The cluster's unit, as `relevo render systemd` names it."""
    return f"relevo-watch-{topology.name}.service"


def service_of(topology: Topology) -> str | None:
    """The cluster's unit when systemd runs it here: enabled, and its ExecStart names this cluster's state
    directory (the unit of another cluster with the same name is not this one's)."""
    if not BOOTED.is_dir():
        return None
    unit = unit_name(topology)
    shown = _systemctl("show", "--property=UnitFileState,ExecStart", unit, check=False)
    if "UnitFileState=enabled" not in shown.splitlines():
        return None
    named = re.search(r"--state-dir (\S+)", shown)
    if named is None or Path(named.group(1)).resolve() != topology.state_dir.resolve():
        return None
    return unit


def start(unit: str) -> None:
    _systemctl("start", unit)


def main_pid(unit: str) -> int | None:
    """The unit's running process, as systemd knows it (None when it runs none)."""
    shown = _systemctl("show", "--property=MainPID", "--value", unit, check=False).strip()
    return int(shown) if shown.isdigit() and int(shown) > 0 else None


def stop(unit: str) -> None:
    _systemctl("stop", unit)


def _systemctl(*args: str, check: bool = True) -> str:
    argv = ["systemctl", *args]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=SYSTEMCTL_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        if not check:
            return ""
        raise RelevoError(f"{' '.join(argv)} failed: {exc}") from None
    if check and result.returncode != 0:
        raise RelevoError(f"{' '.join(argv)} failed: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout

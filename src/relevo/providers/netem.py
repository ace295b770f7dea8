"""Does this kernel have netem (the qdisc that delays and drops packets)? Many do; these machines' does not
(`CONFIG_NET_SCH_NETEM` not set: `tc qdisc add ... netem` says "Specified qdisc kind is unknown"). Asked
without touching any interface: the module already loaded, else the kernel's own configuration
(/proc/config.gz, /boot/config-RELEASE) and, for a module, its file. relevo's network faults use iptables
and a delaying TCP proxy everywhere, and say so in each fault's `means` with this answer beside it.
"""

from __future__ import annotations

import gzip
import platform
from dataclasses import dataclass
from functools import cache
from pathlib import Path

OPTION = "CONFIG_NET_SCH_NETEM"


@dataclass(frozen=True, slots=True)
class Netem:
    available: bool
    why: str  # how it was found out: "module loaded", "CONFIG_NET_SCH_NETEM is not set", ...

    def describe(self) -> str:
        return ("netem available" if self.available else "no netem") + f" ({self.why})"


def detect(
    sys_module: Path = Path("/sys/module/sch_netem"),
    configs: tuple[Path, ...] | None = None,
    modules: Path | None = None,
) -> Netem:
    release = platform.release()
    if sys_module.exists():
        return Netem(True, "the sch_netem module is loaded")
    for path in configs or (Path("/proc/config.gz"), Path(f"/boot/config-{release}")):
        text = _read(path)
        if text is None:
            continue
        for line in text.splitlines():
            if line.startswith(f"{OPTION}=y"):
                return Netem(True, f"{OPTION}=y in {path}")
            if line.startswith(f"{OPTION}=m"):
                where = modules or Path(f"/lib/modules/{release}")
                found = any(where.rglob("sch_netem.ko*")) if where.is_dir() else False
                return Netem(found, f"{OPTION}=m in {path}" + ("" if found else ", but no module file"))
            if line.startswith(f"# {OPTION} is not set"):
                return Netem(False, f"{OPTION} is not set in {path}")
        return Netem(False, f"no {OPTION} in {path}")
    return Netem(False, "the kernel's configuration is not readable here")


@cache
def this_kernel() -> Netem:
    return detect()


def _read(path: Path) -> str | None:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rt", errors="replace") as handle:
                return handle.read(4 << 20)
        if path.stat().st_size > 4 << 20:
            return None
        return path.read_text(errors="replace")
    except OSError:
        return None

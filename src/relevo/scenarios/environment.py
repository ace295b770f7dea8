"""Where a scenario run happened, for reading its numbers beside others' (the seed's ran on a laptop):
the host's cores, load and kernel, the HAProxy and Apache versions, the provider, and the topology's
settings that decide the results (capacity, health checks, standby mode and temperature)."""

from __future__ import annotations

import os
import platform
from typing import Any

from relevo.commands import run, which
from relevo.errors import ProviderError
from relevo.model import Topology
from relevo.providers import netem

VERSION_TIMEOUT_S = 10.0


def version(*names: str) -> str:
    """The first line of `NAME -v` for the first of `names` found ("not found" otherwise)."""
    found = which(*names)
    if found is None:
        return "not found"
    try:
        done = run([str(found), "-v"], timeout_s=VERSION_TIMEOUT_S, what=f"{found.name} -v")
    except ProviderError as exc:
        return f"unknown ({exc})"
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0].strip() if lines else "unknown"


def describe_environment(topology: Topology) -> dict[str, Any]:
    load = os.getloadavg()
    health = topology.health
    providers = sorted({topology.balancer.provider, *(n.provider for n in topology.nodes)})
    capacity = topology.capacity
    return {
        "host_cores": os.cpu_count(),
        "host_load_1_5_15": [round(x, 2) for x in load],
        "kernel": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "haproxy": version("haproxy"),
        "apache": version("apache2", "httpd"),
        "provider": ", ".join(providers),
        "capacity": f"{capacity.workers} workers per web node"
        + (f", CPU quota {capacity.cpu:g} cores" if capacity.cpu else ""),
        "health": (
            f"GET {health.path} every {health.interval_s * 1000:g} ms, timeout {health.timeout_s * 1000:g} "
            f"ms, rise {health.rise}, fall {health.fall}"
        ),
        "standby": f"{topology.standby.mode}, {topology.standby.temperature}",
        "controller_tick_ms": round(topology.controller.tick_s * 1000, 3),
        # Network faults use iptables and a delaying proxy here; whether this kernel also had netem.
        "netem": netem.this_kernel().describe(),
    }

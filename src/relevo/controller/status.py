"""The controller's view for `relevo status` (controller-state.json, rewritten every tick), and the
settings it applies, flat and comparable (what `relevo up` and a reload report)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from relevo.controller.events import EventLog
from relevo.controller.health import NodeHealth, Status
from relevo.controller.state import Memory, Observation
from relevo.model import Topology


@dataclass(frozen=True, slots=True, kw_only=True)
class Seen:
    """What the controller knows at one instant, for its status."""

    now: float  # monotonic
    wall: float
    observation: Observation | None
    health: Mapping[str, NodeHealth]
    memory: Memory
    balancer: str  # answering, not answering, hung, stopped
    vip_holder: str | None


def snapshot(
    topology: Topology,
    seen: Seen,
    *,
    started: float,
    ticks: int,
    events: EventLog,
    provider_wait_s: float = 0.0,
) -> dict[str, Any]:
    """The controller's view, for `relevo status`."""
    obs, now, memory = seen.observation, seen.now, seen.memory
    nodes: dict[str, Any] = {}
    for name, health in seen.health.items():
        view = obs.nodes.get(name) if obs else None
        server = view.server if view else None
        failed = memory.failed.get(name)
        nodes[name] = {
            "process": str(view.process) if view and view.process else None,
            "health": str(health.status),
            "for_s": round(now - health.since, 3) if health.status is not Status.UNKNOWN else None,
            "probe": health.detail,
            "overloaded": health.overloaded,
            "admin": str(server.admin) if server else None,
            "haproxy_up": server.up if server else None,
            "sessions": server.sessions if server else None,
            "busy": str(view.busy) if view and view.busy else None,
            "starting": name in memory.starting,
            "draining": name in memory.draining,
            "maintenance": name in memory.manual,
            "failing_over_s": round(now - memory.outage[name], 3) if name in memory.outage else None,
            "failed": {
                "attempts": failed.attempts,
                "retry_in_s": round(max(0.0, failed.next_at - now), 3),
            }
            if failed
            else None,
        }
    return {
        "pid": os.getpid(),
        "started": started,
        "last_tick": seen.wall,
        "ticks": ticks,
        "tick_s": topology.controller.tick_s,
        # How long a live tick may wait on its providers' APIs: `status` calls it stuck only past that.
        "provider_wait_s": provider_wait_s,
        "haproxy": obs.haproxy if obs else None,
        "balancer": seen.balancer,
        "vip_holder": seen.vip_holder,
        "journal": {
            "ok": events.error is None,
            "error": events.error,
            "pending": events.pending,
            "dropped": events.dropped,
        },
        "settings": settings(topology),
        "nodes": nodes,
    }


def settings(topology: Topology) -> dict[str, str]:
    """The settings a running controller applies, flat and comparable (what `relevo up` reports)."""
    out: dict[str, str] = {}
    for section, value in (
        ("health", topology.health),
        ("standby", topology.standby),
        ("controller", topology.controller),
    ):
        for field_name in value.__dataclass_fields__:
            out[f"{section}.{field_name.removesuffix('_s')}"] = str(getattr(value, field_name))
    balancer = topology.balancer
    out["balancer"] = f"{balancer.name} {balancer.provider} {balancer.frontend.url} {balancer.stats.url}"
    for node in topology.nodes:
        out[f"nodes.{node.name}"] = (
            f"{node.role} {node.provider} {node.endpoint.url} {node.standby_for or ''}"
        )
    return out


def diff_settings(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    return [
        f"{key} {before.get(key, '-')} -> {after.get(key, '-')}"
        for key in sorted(set(before) | set(after))
        if before.get(key) != after.get(key)
    ]

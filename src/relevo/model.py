"""The cluster as data: frozen, validated once by `relevo.topology`, then passed everywhere."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

OptionValue = str | int | float | bool


class Role(enum.StrEnum):
    BALANCER = "balancer"
    WEB = "web"
    STANDBY = "standby"


class StandbyMode(enum.StrEnum):
    # A standby replaces its own primary as soon as that primary fails (the seed's watchdog).
    PAIRED = "paired"
    # HAProxy's native `backup`: standbys serve only when every primary is down.
    POOL = "pool"


class Temperature(enum.StrEnum):
    COLD = "cold"  # stopped until needed
    WARM = "warm"  # running, kept in maint: failover is one Runtime API call


class RestartPolicy(enum.StrEnum):
    NEVER = "never"
    ON_FAILURE = "on-failure"


class Balance(enum.StrEnum):
    ROUNDROBIN = "roundrobin"
    STATIC_RR = "static-rr"
    LEASTCONN = "leastconn"
    FIRST = "first"
    SOURCE = "source"
    RANDOM = "random"


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    address: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.port}"


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthCheck:
    """HAProxy's L7 check and the controller's probe share these numbers."""

    path: str = "/health"
    interval_s: float = 0.25
    fastinter_s: float = 0.1
    downinter_s: float = 0.5
    timeout_s: float = 1.0
    rise: int = 2
    fall: int = 2
    expect_status: int = 200


@dataclass(frozen=True, slots=True, kw_only=True)
class StandbyPolicy:
    mode: StandbyMode = StandbyMode.PAIRED
    temperature: Temperature = Temperature.COLD
    restart: RestartPolicy = RestartPolicy.NEVER
    # A primary must stay healthy this long before traffic goes back to it (no start/stop loops on a flap).
    hold_s: float = 3.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ControllerSettings:
    tick_s: float = 0.1
    probe_timeout_s: float = 0.3
    drain_timeout_s: float = 10.0
    # A standby started but never answering is given up on after this long (reported, retried later).
    start_timeout_s: float = 10.0
    restart_backoff_s: float = 1.0
    restart_backoff_max_s: float = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Node:
    """One web server: a primary (`web`) or a `standby` paired with one primary."""

    name: str
    role: Role
    provider: str
    address: str
    port: int
    standby_for: str | None = None
    options: Mapping[str, OptionValue] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(address=self.address, port=self.port)


@dataclass(frozen=True, slots=True, kw_only=True)
class Balancer:
    name: str
    provider: str
    address: str
    frontend: Endpoint
    stats: Endpoint
    balance: Balance = Balance.ROUNDROBIN
    # Bounded so a hung server costs a retry elsewhere, not a hung client.
    timeout_server_s: float = 2.0
    timeout_connect_s: float = 0.5
    retries: int = 3
    options: Mapping[str, OptionValue] = field(default_factory=lambda: MappingProxyType({}))

    BACKEND = "web"
    FRONTEND = "www"


@dataclass(frozen=True, slots=True, kw_only=True)
class Topology:
    name: str
    balancer: Balancer
    nodes: tuple[Node, ...]
    health: HealthCheck = HealthCheck()
    standby: StandbyPolicy = StandbyPolicy()
    controller: ControllerSettings = ControllerSettings()
    # Where the topology came from (None: the built-in default) and where its state lives.
    source: Path | None = None
    state_dir: Path = Path(".relevo")

    @property
    def primaries(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.role is Role.WEB)

    @property
    def standbys(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.role is Role.STANDBY)

    def node(self, name: str) -> Node:
        for candidate in self.nodes:
            if candidate.name == name:
                return candidate
        raise KeyError(name)

    def standby_of(self, primary: str) -> Node | None:
        return next((n for n in self.standbys if n.standby_for == primary), None)

    @property
    def node_names(self) -> tuple[str, ...]:
        return (self.balancer.name, *(n.name for n in self.nodes))
